"""A container's file system as one tarball, read from its layers without mounting anything.

What the container sees at / is an overlayfs merge (Documentation/filesystems/overlayfs.rst) of
its own upper directory over the image's layers. The same rules, applied while walking the
directories from the top layer down, give the same view:

 - a name in a higher layer hides the same name below (the highest one wins);
 - a whiteout (a 0/0 character device) hides the name below and is itself not shown;
 - a directory present in several layers is *merged*: its entries are the union, unless a
   higher one is *opaque* (xattr user.overlay.opaque=y: it was deleted and made again, or a
   layer said `.wh..wh..opq`), which hides everything below it in that directory;
 - a directory over a non-directory (or the reverse) is not merged: the higher one wins.

Owners are written as the *container* sees them: host ids are mapped back through the
container's id map (rootless: the user's uid is 0, the subordinate range is 1..).
"""

import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from minirun.errors import MinirunError
from minirun.images.tarball import CAPABILITY_XATTR, OPAQUE_XATTR, PAX_CAPABILITY, capability_as_v2
from minirun.userns import IdMap

OVERFLOW_ID = 65534  # what a user namespace shows for an unmapped id (user_namespaces(7))


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def merged_entries(sources: list[Path], relative: str = "") -> Iterator[tuple[str, Path]]:
    """(path inside the container, file that provides it) for everything below the merged
    directory made of `sources` (directories, TOP layer first), depth first, parents first."""
    seen: set[str] = set()
    for depth, source in enumerate(sources):
        for name in sorted(os.listdir(source)):
            if name in seen:
                continue  # a higher layer already decided what this name is
            seen.add(name)
            path = source / name
            st = os.lstat(path)
            if is_whiteout(st):
                continue
            inside = f"{relative}/{name}"
            yield inside, path
            if stat.S_ISDIR(st.st_mode):
                yield from merged_entries(_merged_dir(path, name, sources[depth + 1:]), inside)


def _merged_dir(top: Path, name: str, lower: list[Path]) -> list[Path]:
    """The layers' copies of directory `name` that show through below `top`, top first."""
    stack = [top]
    for layer in lower:
        if is_opaque(stack[-1]):
            break
        candidate = layer / name
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            break  # a whiteout or a file below ends the merge
        stack.append(candidate)
    return stack


def to_container(host_id: int, maps: list[IdMap]) -> int:
    for m in maps:
        if m.outside <= host_id < m.outside + m.count:
            return m.inside + host_id - m.outside
    return OVERFLOW_ID


def write_tar(layers: list[Path], out: BinaryIO, uids: list[IdMap], gids: list[IdMap]) -> None:
    """The merged view of `layers` (LOWEST first, as an image lists them) as a tar stream."""
    top_first = list(reversed(layers))
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "./", top_first[0], uids, gids)  # the root directory: the top layer's metadata
        for inside, path in merged_entries(top_first):
            _add(tar, "." + inside, path, uids, gids)


def _add(tar: tarfile.TarFile, name: str, path: Path, uids: list[IdMap], gids: list[IdMap]) -> None:
    try:
        info = tar.gettarinfo(str(path), arcname=name)
        if info is None:
            return  # a socket: tar has no type for it, as GNU tar says "socket ignored"
        info.uid, info.gid = to_container(info.uid, uids), to_container(info.gid, gids)
        info.uname = info.gname = ""  # names mean nothing outside the container's /etc/passwd
        if info.isreg() and (caps := _capability(path, uids)) is not None:
            info.pax_headers = {**info.pax_headers, PAX_CAPABILITY: caps.decode("utf-8", "surrogateescape")}
        if info.isreg():
            with open(path, "rb") as f:
                tar.addfile(info, f)
        else:
            tar.addfile(info)
    except PermissionError as e:
        raise MinirunError(f"export: cannot read {name.lstrip('.')}: {e.strerror} (a file only a "
                           "container user other than root may read; rootless export reads as you)") from e


def _capability(path: Path, uids: list[IdMap]) -> bytes | None:
    """The file's capabilities as the container sees them, as `tar --xattrs` would record them.

    A revision 3 value (capabilities(7)) carries the host uid of the root it works for: the user,
    for a rootless store, or the remapped root, for a file a rootful container setcap'ed itself.
    If that is the container's root (or host root, whose revision 2 values the image layers hold)
    they are written as revision 2, capabilities of the archive's root, as docker export shows
    them; capabilities that do not work in this container are not what it sees, and are left out.
    """
    try:
        raw = os.getxattr(path, CAPABILITY_XATTR, follow_symlinks=False)
    except OSError:
        return None  # none (ENODATA), or a file system without xattrs
    if len(raw) >= 24 and raw[3] == 3:
        rootid = int.from_bytes(raw[20:24], "little")
        if rootid != 0 and to_container(rootid, uids) != 0:
            return None
    try:
        return capability_as_v2(raw, str(path))
    except MinirunError:
        return None


def export(layers: list[Path], out: BinaryIO, uids: list[IdMap], gids: list[IdMap]) -> None:
    """write_tar, with a missing layer reported as one line."""
    for layer in layers:
        if not layer.is_dir():
            raise MinirunError(f"export: layer {layer} is missing (was its image removed with rmi -f?)")
    write_tar(layers, out, uids, gids)
