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
from pathlib import Path
from typing import BinaryIO

from minirun.errors import MinirunError
from minirun.fsutil import DIR_FLAGS, list_directory, walk
from minirun.images.tarball import CAPABILITY_XATTR, OPAQUE_XATTR, PAX_CAPABILITY, capability_as_v2
from minirun.userns import IdMap

OVERFLOW_ID = 65534  # what a user namespace shows for an unmapped id (user_namespaces(7))


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def is_opaque(dir_fd: int, name: str) -> bool:
    """The directory `name` in `dir_fd` has user.overlay.opaque=y. getxattr(2) has no dir_fd form:
    /proc/self/fd/N is the open directory itself, and the last component is not followed."""
    try:
        return os.getxattr(f"/proc/self/fd/{dir_fd}/{name}", OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def merged_children(fds: dict[int, int]) -> list[tuple[str, tuple[int, ...]]]:
    """The entries of one merged directory, whose copies in the layers are `fds` (layer index ->
    open fd, index 0 the TOP layer), sorted by name; for a directory, the layers whose copies
    merge into it (overlay's rules, top first), which fsutil.walk goes down into."""
    layers = sorted(fds)
    shown: dict[str, tuple[int, ...]] = {}
    hidden: set[str] = set()
    for position, layer in enumerate(layers):
        for entry in list_directory(fds[layer]):
            if entry.name in shown or entry.name in hidden:
                continue  # a higher layer already decided what this name is
            st = entry.stat(follow_symlinks=False)
            if is_whiteout(st):
                hidden.add(entry.name)
            elif stat.S_ISDIR(st.st_mode):
                shown[entry.name] = (layer, *_merged_below(fds, entry.name, layer, layers[position + 1:]))
            else:
                shown[entry.name] = ()
    return sorted(shown.items())


def _merged_below(fds: dict[int, int], name: str, top: int, lower: list[int]) -> list[int]:
    """The lower layers whose copies of directory `name` show through below layer `top`."""
    merged: list[int] = []
    last = top
    for layer in lower:
        if is_opaque(fds[last], name):
            break
        st = _lstat(fds[layer], name)
        if st is None:
            continue
        if not stat.S_ISDIR(st.st_mode):
            break  # a whiteout or a file below ends the merge
        merged.append(layer)
        last = layer
    return merged


def to_container(host_id: int, maps: list[IdMap]) -> int:
    for m in maps:
        if m.outside <= host_id < m.outside + m.count:
            return m.inside + host_id - m.outside
    return OVERFLOW_ID


def write_tar(layers: list[Path], out: BinaryIO, uids: list[IdMap], gids: list[IdMap]) -> None:
    """The merged view of `layers` (LOWEST first, as an image lists them) as a tar stream.

    Walked with fsutil.walk: no recursion and no path lookups, so a directory thousands of
    levels deep exports like any other, and a symlink in a layer is stored, never followed."""
    top_first = list(reversed(layers))
    fds: dict[int, int] = {}
    try:
        for index, layer in enumerate(top_first):
            fds[index] = os.open(layer, DIR_FLAGS)
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            links: Links = {}
            _add(tar, "./", fds[0], ".", links, uids, gids)  # the root directory: the top layer's metadata
            for visit in walk(fds, merged_children):
                if visit.kind == "entry":
                    provider = min(t for t in visit.parent_fds if _lstat(visit.parent_fds[t], visit.name))
                    _add(tar, "./" + "/".join(visit.path), visit.parent_fds[provider], visit.name, links,
                         uids, gids)
    finally:
        for fd in fds.values():
            os.close(fd)


# A file with several links is written once; its other names become hard links to the first.
Links = dict[tuple[int, int], str]  # (st_dev, st_ino) -> name in the archive


def _tarinfo(arcname: str, dir_fd: int, name: str, links: Links) -> tarfile.TarInfo | None:
    """TarFile.gettarinfo for `name` in `dir_fd` (gettarinfo only takes a path)."""
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    info = tarfile.TarInfo(arcname)
    info.mode, info.uid, info.gid, info.mtime = st.st_mode, st.st_uid, st.st_gid, int(st.st_mtime)
    if stat.S_ISREG(st.st_mode):
        inode = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and inode in links:
            info.type, info.linkname = tarfile.LNKTYPE, links[inode]
        else:
            links[inode] = arcname
            info.type, info.size = tarfile.REGTYPE, st.st_size
    elif stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISFIFO(st.st_mode):
        info.type = tarfile.FIFOTYPE
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dir_fd)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    else:
        return None  # a socket: tar has no type for it, as GNU tar says "socket ignored"
    return info


def _add(tar: tarfile.TarFile, arcname: str, dir_fd: int, name: str, links: Links,
         uids: list[IdMap], gids: list[IdMap]) -> None:
    try:
        info = _tarinfo(arcname, dir_fd, name, links)
        if info is None:
            return
        info.uid, info.gid = to_container(info.uid, uids), to_container(info.gid, gids)
        info.uname = info.gname = ""  # names mean nothing outside the container's /etc/passwd
        if info.isreg():
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            with open(fd, "rb") as f:
                if (caps := _capability(fd, arcname, uids)) is not None:
                    info.pax_headers = {**info.pax_headers,
                                        PAX_CAPABILITY: caps.decode("utf-8", "surrogateescape")}
                tar.addfile(info, f)
        else:
            tar.addfile(info)
    except PermissionError as e:
        raise MinirunError(f"export: cannot read {arcname.lstrip('.')}: {e.strerror} (a file only a "
                           "container user other than root may read; rootless export reads as you)") from e


def _capability(fd: int, what: str, uids: list[IdMap]) -> bytes | None:
    """The file's capabilities as the container sees them, as `tar --xattrs` would record them.

    A revision 3 value (capabilities(7)) carries the host uid of the root it works for: the user,
    for a rootless store, or the remapped root, for a file a rootful container setcap'ed itself.
    If that is the container's root (or host root, whose revision 2 values the image layers hold)
    they are written as revision 2, capabilities of the archive's root, as docker export shows
    them; capabilities that do not work in this container are not what it sees, and are left out.
    """
    try:
        raw = os.getxattr(fd, CAPABILITY_XATTR)  # the open file itself: no path, no link to follow
    except OSError:
        return None  # none (ENODATA), or a file system without xattrs
    if len(raw) >= 24 and raw[3] == 3:
        rootid = int.from_bytes(raw[20:24], "little")
        if rootid != 0 and to_container(rootid, uids) != 0:
            return None
    try:
        return capability_as_v2(raw, what)
    except MinirunError:
        return None


def export(layers: list[Path], out: BinaryIO, uids: list[IdMap], gids: list[IdMap]) -> None:
    """write_tar, with a missing layer reported as one line."""
    for layer in layers:
        if not layer.is_dir():
            raise MinirunError(f"export: layer {layer} is missing (was its image removed with rmi -f?)")
    write_tar(layers, out, uids, gids)
