"""`minirun rmi [-f] IMAGE...`: remove images (by name, id or id prefix), like `docker rmi`.

Removing a name deletes the image once no name points to it, with each of its layers that no
other image shares. Refused while any container record uses the image (`-f` overrides that for
stopped containers; an image under a *running* container is never removed).
"""

import argparse
import sys

from minirun import paths, state
from minirun.errors import MinirunError
from minirun.images.store import remove_image
from minirun.paths import store_dir


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("rmi", help="remove images")
    p.add_argument("-f", "--force", action="store_true", help="remove even if a stopped container uses it")
    p.add_argument("images", nargs="+", metavar="IMAGE")


def run(args: argparse.Namespace) -> int:
    code = 0
    records = state.all_records(paths.state_dir())
    in_use = frozenset(r.image_id for r in records)
    running = frozenset(r.image_id for r in records if r.status == "running")
    for ref in args.images:
        try:
            for line in remove_image(store_dir(), ref, force=args.force, in_use=in_use, running=running):
                print(line)
        except MinirunError as e:
            print(f"minirun: {e}", file=sys.stderr)
            code = 1
    return code
