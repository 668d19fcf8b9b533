"""`minirun export [-o FILE] CONTAINER > rootfs.tar`: the container's file system as a tarball.

Like `docker export` (seed 004): the image's layers with the container's own changes on top,
deletions applied, as the container sees them; read straight from the layer directories, so it
works for stopped containers too and mounts nothing (minirun/images/export.py).
"""

import argparse
import contextlib
import os
import sys
from pathlib import Path

from minirun import paths, state, userns
from minirun.errors import ImageNotFound, MinirunError
from minirun.images import resolve
from minirun.images.export import export


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("export", help="export a container's file system as a tar archive")
    p.add_argument("-o", "--output", help="write to a file instead of stdout")
    p.add_argument("container", metavar="CONTAINER")


def id_maps(record: state.Record) -> tuple[list[userns.IdMap], list[userns.IdMap]]:
    """How host owners translate back to the container's. Rootless: the user is 0, the
    subordinate range 1... Rootful: image layers are stored with the image's own ids, and a
    remapped container's files land in its range (the record's id_range, idranges.py; the
    shared one without), so that range first, then everything else as is."""
    if record.rootless:
        mapping = userns.plan(True)
        return list(mapping.uids), list(mapping.gids)
    remapped, identity = userns.with_range(userns.plan(False), record.id_range), userns.plan(False, "host")
    return list(remapped.uids + identity.uids), list(remapped.gids + identity.gids)


def run(args: argparse.Namespace) -> int:
    record = state.find(paths.state_dir(), args.container)
    try:
        image = resolve(paths.store_dir(), record.image_id)
    except ImageNotFound as e:
        raise MinirunError(f"export: the image of container {record.name} was removed (rmi -f)") from e
    layers = [*image.layers, Path(record.bundle) / "upper"]
    uids, gids = id_maps(record)
    if args.output is None and sys.stdout.isatty():
        raise MinirunError("export: refusing to write a tar archive to a terminal; redirect it, or -o FILE")
    if args.output is None:
        export(layers, sys.stdout.buffer, uids, gids)
        sys.stdout.buffer.flush()
        return 0
    if os.path.exists(args.output) and not os.path.isfile(args.output):
        # A device or a pipe (-o /dev/null, -o /dev/stdout) is written to, never replaced.
        with open(args.output, "wb") as f:
            export(layers, f, uids, gids)
        return 0
    tmp = f"{args.output}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            export(layers, f, uids, gids)
        os.rename(tmp, args.output)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return 0
