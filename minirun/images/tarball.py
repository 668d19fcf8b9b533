"""Safe extraction of a root file system tarball into a directory.

A tarball is data from somebody else, and a naive `tar -x` of it as root can write anywhere on
the host: a member named `../../etc/cron.d/x` or `/etc/passwd`, a symlink `etc -> /etc` followed
by a member `etc/passwd` that is then written *through* the link, or a hard link to `/etc/shadow`
(CVE-2007-4559 is Python's own `tarfile.extractall` doing exactly this; Docker had the same class
of bugs, e.g. CVE-2014-6407). Python 3.12 added extraction filters (`filter="data"`), but the
Python this project targets (Debian 12's 3.11.2) has none, so the rules are written out here:

 - every member name is made relative (leading "/" and "./" dropped, as Docker does) and any
   ".." component refuses the whole archive;
 - no path is ever looked up by name from the top: each directory on the way to a member is
   opened from the one before with O_NOFOLLOW (openat(2)), so a symlink in the middle of a path
   is seen and refused instead of followed, and the final name is created relative to its
   parent's file descriptor with flags that never follow a link either;
 - device nodes are not created at all (a container gets a fresh /dev anyway).

The archive is read as a stream ("r|*"), one member after another, so it can come from a pipe
(`minirun import - NAME`) and may be plain, gzip, bzip2 or xz compressed.
"""

import errno
import io
import os
import stat
import sys
import tarfile
from pathlib import Path
from typing import IO, BinaryIO, Self

from minirun.errors import MinirunError
from minirun.fsutil import remove_tree_at, walk

# Open a directory without following a symlink at the last step, and keep the fd out of any
# program we might exec later. O_NOFOLLOW on a symlink with O_DIRECTORY fails with ENOTDIR.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_EXCL makes open(2) fail if anything (including a dangling symlink) already has the name.
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_COPY_CHUNK = 1 << 20
_HOLE_BLOCK = 64 * 1024  # a block of zeros this large becomes a hole instead of being written
_ZEROS = bytes(_HOLE_BLOCK)
MAX_SIZE_VARIABLE = "MINIRUN_MAX_LAYER_SIZE"


def safe_extract(source: BinaryIO, dest: Path, *, chown: bool, whiteouts: bool = False,
                 max_size: int | None = None) -> int:
    """Extract the tar stream `source` into the directory `dest`; return the bytes of file data written.

    `max_size` caps the uncompressed size of the files (their sizes added up): a few megabytes of
    gzip can hold a terabyte of zeros, and nothing else stops it before the disk is full.

    `chown` gives files the numeric owners recorded in the archive (user and group names are
    ignored: they mean nothing inside the container); it needs root. Unprivileged imports keep
    the importing user as owner, who is root inside a rootless container's user namespace.

    `whiteouts` reads the archive as an image *layer* (OCI image-spec layer.md): `.wh.NAME`
    deletes NAME of the layers below, `.wh..wh..opq` hides everything below in its directory.
    They become what overlayfs understands (see _whiteout). A plain rootfs tarball has none.

    On a refused or broken archive this raises MinirunError and leaves `dest` partly filled:
    extract into a fresh temporary directory and throw it away on error (the image store does).
    """
    dest.mkdir(parents=True, exist_ok=True)
    root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # `dest` is the image's "/": 0755 unless the archive's "./" entry says otherwise. Set
        # explicitly, as mkdir(2) modes are cut by the umask (a umask of 077 would make "/"
        # unreadable to every user but root in the container).
        os.fchmod(root_fd, 0o755)
        written = 0
        skipped_devices: set[tuple[str, ...]] = set()
        # A directory's own mode is applied after everything in it exists: a read-only directory
        # (say 0555) must not stop its later members from being created. See _finish_directories.
        directories: dict[tuple[str, ...], tarfile.TarInfo] = {}
        # File capabilities to set once every member is in place (see _set_capabilities).
        capabilities: dict[tuple[str, ...], bytes] = {}

        root = _Root(root_fd)
        tar = _open_stream(source)
        with root, tar:
            while (member := _next_member(tar)) is not None:
                parts = _member_path(member.name)
                if (
                    member.ischr()
                    or member.isblk()
                    or (member.islnk() and _member_path(member.linkname) in skipped_devices)
                ):
                    skipped_devices.add(parts)
                    continue
                capabilities.pop(parts, None)  # a member that replaces a file replaces its caps
                try:
                    if whiteouts and parts and parts[-1].startswith(WHITEOUT_PREFIX):
                        _whiteout(member, parts, root)
                        continue
                    if max_size is not None and member.isreg() and written + member.size > max_size:
                        raise MinirunError(
                            f"refusing archive: its files add up to more than {max_size} bytes "
                            f"uncompressed (at {member.name!r}); {MAX_SIZE_VARIABLE} raises the limit")
                    written += _extract_member(tar, member, parts, root, chown, directories)
                    if member.isreg() and (caps := file_capability(member)) is not None:
                        capabilities[parts] = caps
                except (OSError, ValueError, OverflowError) as e:
                    reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                    raise MinirunError(f"cannot extract {member.name!r}: {reason}") from e
            _set_capabilities(root_fd, capabilities, as_root=os.geteuid() == 0)
            _finish_directories(root_fd, directories, chown)

        if skipped_devices:
            # Device nodes in an image would be a way into host devices; the container's /dev
            # is built fresh at run time, and a user namespace could not open them anyway.
            print(
                f"minirun: warning: skipped {len(skipped_devices)} device node(s) in the archive "
                "(containers get a fresh /dev)",
                file=sys.stderr,
            )
        return written
    finally:
        os.close(root_fd)


WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
# Because the overlay is mounted with `userxattr` (see rootfs.py), its xattrs live in user.*.
OPAQUE_XATTR = "user.overlay.opaque"


def _whiteout(member: tarfile.TarInfo, parts: tuple[str, ...], root: "_Root") -> None:
    """Turn a layer's whiteout file into overlayfs's form of it (Documentation/filesystems/overlayfs.rst).

    `.wh.NAME` becomes a character device 0/0 named NAME: overlay hides NAME of every lower
    layer. Since Linux 5.8 any user may mknod(2) exactly that device (a "whiteout"), so this
    works rootless too. `.wh..wh..opq` becomes the xattr user.overlay.opaque=y on its
    directory: overlay then shows nothing of that directory from the layers below.
    """
    if not member.isreg():
        raise MinirunError(f"refusing layer: whiteout {member.name!r} is not a regular file")
    parent_fd = root.open_directory(parts[:-1], member.name)
    try:
        if parts[-1] == OPAQUE_MARKER:
            os.setxattr(parent_fd, OPAQUE_XATTR, b"y")
            return
        name = parts[-1].removeprefix(WHITEOUT_PREFIX)
        if name in ("", ".", "..") or name.startswith(WHITEOUT_PREFIX):
            raise MinirunError(f"refusing layer: bad whiteout {member.name!r}")
        _remove(parent_fd, name, root)
        os.mknod(name, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=parent_fd)
    finally:
        os.close(parent_fd)


# --- file capabilities (capabilities(7), "File capabilities") --------------------------------------

CAPABILITY_XATTR = "security.capability"
# GNU tar --xattrs, bsdtar and docker write xattrs as PAX records named SCHILY.xattr.NAME
# (the convention of Jörg Schilling's star), with the raw bytes as the value.
PAX_CAPABILITY = "SCHILY.xattr." + CAPABILITY_XATTR
# struct vfs_cap_data / vfs_ns_cap_data (include/uapi/linux/capability.h): a little-endian
# magic_etc (revision in the top byte, bit 0 = "effective"), then permitted/inheritable pairs
# for capabilities 0-31 and 32-63; revision 3 adds the rootid.
_CAP_REVISION_MASK, _CAP_REVISION_2, _CAP_REVISION_3 = 0xFF000000, 0x02000000, 0x03000000
_CAP_V2_SIZE, _CAP_V3_SIZE = 20, 24


def file_capability(member: tarfile.TarInfo) -> bytes | None:
    """The member's `security.capability` from its PAX header, as a revision 2 value.

    Revision 3 ("namespaced", Linux 4.14) records the host uid of the root of the user namespace
    the capabilities were set in (its rootid), and the kernel applies them only to processes in
    a namespace whose root that uid is. A rootid in an archive is a uid of the machine that made
    it (for example the user whose rootless container was exported), which means nothing here:
    in an image, capabilities belong to the image's root, whoever that will be. So the rootid is
    dropped, which makes a revision 2 value; the kernel turns that into whatever revision this
    store needs when it is written (_set_capabilities). Anything else is not a capability set.
    """
    raw = member.pax_headers.get(PAX_CAPABILITY)
    if raw is None:
        return None
    # tarfile decodes PAX values as UTF-8, falling back to surrogateescape: this undoes either.
    value = raw.encode("utf-8", "surrogateescape")
    return capability_as_v2(value, member.name)


def capability_as_v2(value: bytes, what: str) -> bytes:
    revision = int.from_bytes(value[:4], "little") & _CAP_REVISION_MASK if len(value) >= 4 else 0
    if (revision, len(value)) not in ((_CAP_REVISION_2, _CAP_V2_SIZE), (_CAP_REVISION_3, _CAP_V3_SIZE)):
        raise MinirunError(f"refusing archive: {what!r} has a malformed {CAPABILITY_XATTR} "
                           f"({len(value)} bytes, revision {revision >> 24})")
    magic = (int.from_bytes(value[:4], "little") & ~_CAP_REVISION_MASK) | _CAP_REVISION_2
    return magic.to_bytes(4, "little") + value[4:_CAP_V2_SIZE]


def _set_capabilities(root_fd: int, capabilities: dict[tuple[str, ...], bytes], as_root: bool) -> None:
    """Set the file capabilities the archive asked for, after every member is in place (a later
    member may still replace a file; writing data or chown(2) would clear them anyway).

    Who may set them (cap_convert_nscap in security/commoncap.c): CAP_SETFCAP over the file.
    Root, in the initial user namespace, writes the revision 2 value as it is: capabilities for
    the image's root, which is host root with --userns=host and, through the idmapped layers,
    the remapped root too (the kernel maps a v2 value's root uid 0 through the idmapped mount).
    A user has no CAP_SETFCAP on the host, so a child process enters a user namespace of its
    own where the user is root (as `unshare -r` does) and writes it there: the kernel stores
    it as revision 3 with the user's uid as rootid, which is exactly the root of the user's
    rootless containers, so there (and only there) the capabilities work, as in podman.
    """
    if not capabilities:
        return
    error = _write_capabilities(root_fd, capabilities, as_root)
    if error:
        # The image still works, without them; a file system without xattrs (some NFS and FUSE
        # homes) is the usual reason. One line, as for the device nodes above.
        example = "/" + "/".join(next(iter(capabilities)))
        print(f"minirun: warning: file capabilities not kept ({len(capabilities)} file(s), e.g. "
              f"{example}): {error}", file=sys.stderr)


def _write_capabilities(root_fd: int, capabilities: dict[tuple[str, ...], bytes], as_root: bool) -> str:
    """Write them all (see _set_capabilities); "" if that worked, else the error."""

    def write_all() -> None:
        for parts, value in capabilities.items():
            # The same no-follow walk as extraction: a later member may have replaced a directory
            # on the way by a symlink (then the file is gone from the image, and so are its caps).
            try:
                parent = _open_directory(root_fd, parts[:-1], "/".join(parts), create=False)
            except (FileNotFoundError, MinirunError):
                continue
            try:
                fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            except FileNotFoundError:
                continue
            finally:
                os.close(parent)
            try:
                os.setxattr(fd, CAPABILITY_XATTR, value)
            finally:
                os.close(fd)

    if as_root:
        try:
            write_all()
        except (OSError, MinirunError) as e:
            return str(e)
        return ""
    from minirun import probes  # rootless archives with capabilities only

    def in_own_namespace() -> None:
        probes.enter_own_userns()
        write_all()

    return probes.in_child(in_own_namespace)


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # RFC 8878, 3.1.1: every zstd frame starts with it


def _open_stream(source: BinaryIO) -> tarfile.TarFile:
    """Open `source` as a forward-only tar stream; compression is detected from its first bytes.

    tarfile itself knows gzip, bzip2 and xz. zstd (OCI's `tar+zstd` layers) comes from the
    `zstandard` package, imported only when a zstd stream actually arrives.
    """
    try:
        if isinstance(source, io.BufferedReader) and source.peek(4)[:4] == ZSTD_MAGIC:
            return tarfile.open(fileobj=_zstd_reader(source), mode="r|", tarinfo=_StrictTarInfo)
        return tarfile.open(fileobj=source, mode="r|*", tarinfo=_StrictTarInfo)
    except (tarfile.TarError, EOFError) as e:
        raise MinirunError(f"not a tar archive ({e})") from e


def _zstd_reader(source: BinaryIO) -> BinaryIO:
    try:
        import zstandard
    except ImportError:
        raise MinirunError("this layer is zstd-compressed: install the `zstandard` package "
                           "(pip install 'minirun[zstd]')") from None
    reader: BinaryIO = zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True)
    return reader


class _StrictTarInfo(tarfile.TarInfo):
    """A header parser that tells a corrupt archive from a finished one.

    After the first member, tarfile takes any header it cannot parse (a bad checksum, a block
    cut short) for the end of the archive, which would turn a truncated or damaged download
    into a silently incomplete image. A real end is a block of zeros (POSIX tar writes two) or,
    leniently like GNU tar, no data at all at a block boundary.
    """

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        try:
            return super().frombuf(buf, encoding, errors)
        except tarfile.HeaderError as e:
            if not buf or buf == bytes(tarfile.BLOCKSIZE):
                raise  # the end of the archive: tarfile stops here
            raise MinirunError(f"not a tar archive, or a corrupt or truncated one ({e})") from e


def _next_member(tar: tarfile.TarFile) -> tarfile.TarInfo | None:
    """The next header of the stream, or None at its end; a broken header is one clear error."""
    try:
        return tar.next()
    except (tarfile.TarError, EOFError) as e:
        raise MinirunError(f"not a tar archive, or a corrupt or truncated one ({e})") from e


def _member_path(name: str) -> tuple[str, ...]:
    """The member's path as components relative to the extraction root.

    Absolute names are made relative, as Docker does for layers (a member `/etc/passwd` is
    `etc/passwd` of the image), and "." components and doubled slashes are dropped. A ".."
    component anywhere refuses the whole archive: no honest rootfs needs one, and it is the
    classic way out of the extraction directory (CVE-2007-4559).
    """
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise MinirunError(f"refusing archive: member {name!r} contains '..'")
    return parts


def _extract_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    parts: tuple[str, ...],
    root: "_Root",
    chown: bool,
    directories: dict[tuple[str, ...], tarfile.TarInfo],
) -> int:
    """Create one member below `root_fd`; return the bytes of file data written."""
    if not (member.isdir() or member.isreg() or member.issym() or member.islnk() or member.isfifo()):
        raise MinirunError(f"refusing archive: member {member.name!r} has unsupported type {member.type!r}")
    if not parts:
        # The archive's "./" entry describes the extraction root itself.
        if not member.isdir():
            raise MinirunError(f"refusing archive: member {member.name!r} would replace the root directory")
        directories[parts] = member
        return 0

    parent_fd = root.open_directory(parts[:-1], member.name)
    try:
        name = parts[-1]
        if member.isdir():
            _make_directory(parent_fd, name, root)
            directories[parts] = member
            return 0
        # Whatever has this name now (a file, a symlink, a directory tree) is removed first, and
        # the new entry is created in its place: writing *into* an existing name could write
        # through a symlink planted by an earlier member.
        _remove(parent_fd, name, root)
        if member.isreg():
            return _write_file(tar, member, parent_fd, name, chown)
        if member.issym():
            _make_symlink(member, parent_fd, name, chown)
        elif member.islnk():
            _make_hardlink(member, root.fd, parent_fd, name)
        else:
            _make_fifo(member, parent_fd, name, chown)
        return 0
    finally:
        os.close(parent_fd)


def _open_directory(root_fd: int, parts: tuple[str, ...], member: str, *, create: bool,
                    done: tuple[str, ...] = ()) -> int:
    """Open the directory `parts` below `root_fd` one component at a time, never following a symlink.

    Missing directories are created (0755, as tar and Docker do for parents an archive does not
    list) when `create` is true. `done`: the components above `root_fd` already walked (for the
    error message). Returns a new fd the caller closes.
    """
    fd = os.dup(root_fd)
    try:
        for depth, part in enumerate(parts):
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.fchmod(child, 0o755)  # not cut by the umask, see safe_extract
            except OSError as e:
                if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
                what = "a symlink" if _is_symlink(fd, part) else "not a directory"
                path = "/".join((*done, *parts[: depth + 1]))
                raise MinirunError(
                    f"refusing archive: member {member!r} lies below {path!r}, which is {what} "
                    "(extraction never follows links)"
                ) from e
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


class _Root:
    """The extraction root, and the directory the previous member went into, kept open.

    Archives list a directory's entries one after another, so most members go where the one
    before went, or just below: walking from the root for each member would make a chain 5,000
    directories deep cost 12 million openat(2) calls. The remembered fd is dropped as soon as
    anything is removed (_remove), the one way a directory on its path could be replaced.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._last: tuple[tuple[str, ...], int] | None = None

    def open_directory(self, parts: tuple[str, ...], member: str) -> int:
        """_open_directory(create=True) from the root, or from the remembered directory when
        `parts` lies below it. Returns a new fd the caller closes."""
        done: tuple[str, ...] = ()
        start = self.fd
        if self._last is not None and parts[: len(self._last[0])] == self._last[0]:
            done, start = self._last
        fd = _open_directory(start, parts[len(done):], member, create=True, done=done)
        self.forget()
        self._last = (parts, os.dup(fd))
        return fd

    def forget(self) -> None:
        if self._last is not None:
            os.close(self._last[1])
            self._last = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.forget()


def _is_symlink(dir_fd: int, name: str) -> bool:
    return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _make_directory(parent_fd: int, name: str, root: "_Root") -> None:
    """mkdir, keeping an existing directory (archives often list a directory after its contents)."""
    existing = _lstat(parent_fd, name)
    if existing is not None and stat.S_ISDIR(existing.st_mode):
        return
    _remove(parent_fd, name, root)
    os.mkdir(name, 0o755, dir_fd=parent_fd)


def _remove(parent_fd: int, name: str, root: "_Root") -> None:
    """Remove `name` in `parent_fd`, whatever it is, without following it if it is a symlink."""
    existing = _lstat(parent_fd, name)
    if existing is None:
        return
    root.forget()  # the directory it remembers may be this one, or below it
    if stat.S_ISDIR(existing.st_mode):
        remove_tree_at(parent_fd, name)  # any depth, openat/O_NOFOLLOW all the way (fsutil)
    else:
        os.unlink(name, dir_fd=parent_fd)


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, parent_fd: int, name: str, chown: bool) -> int:
    """Create a new regular file (never opening an existing one) and copy the member's data in."""
    data = tar.extractfile(member)
    assert data is not None  # extractfile only returns None for non-files
    fd = os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=parent_fd)
    with open(fd, "wb", buffering=0) as out:
        try:
            _copy_sparse(data, fd)
        except (tarfile.TarError, EOFError) as e:
            raise MinirunError(f"not a tar archive, or a truncated one: member {member.name!r} ({e})") from e
        os.ftruncate(fd, member.size)  # the size, also when the file ends in a hole
        _set_metadata(out.fileno(), member, chown)
    return member.size


def _copy_sparse(data: IO[bytes], fd: int) -> None:
    """Copy `data` to `fd`, skipping (lseek) every 64 KiB block of zeros, as `cp --sparse=auto` and
    `tar -S` do: a sparse file in the archive (GNU sparse or PAX) comes out of tarfile as its
    zeros, and a 1 GB disk image with 10 MB in it should take 10 MB, not 1 GB."""
    while chunk := data.read(_COPY_CHUNK):
        view = memoryview(chunk)
        for start in range(0, len(view), _HOLE_BLOCK):
            block = view[start:start + _HOLE_BLOCK]
            if block == _ZEROS[:len(block)]:
                os.lseek(fd, len(block), os.SEEK_CUR)
            else:
                while block:
                    block = block[os.write(fd, block):]


def _set_metadata(fd: int, member: tarfile.TarInfo, chown: bool) -> None:
    """Owner, then mode, then times, all through an fd, so no name is looked up again.

    The order matters: chown(2) clears the setuid and setgid bits of a file, so the mode (with
    those bits) goes after it; and the times go last, as changing the mode would not touch mtime
    but writing data would.
    """
    if chown:
        os.fchown(fd, member.uid, member.gid)
    os.fchmod(fd, member.mode & 0o7777)
    os.utime(fd, (member.mtime, member.mtime))


def _make_symlink(member: tarfile.TarInfo, parent_fd: int, name: str, chown: bool) -> None:
    """Create the symlink exactly as recorded, even when it points outside (e.g. to /etc/passwd).

    That is harmless: extraction never follows a link (see _open_directory), and at run time the
    container resolves every link inside its own root, where the kernel treats "/.." as "/"
    after pivot_root(2), so "/etc/passwd" or "../../../etc" name the container's files.
    """
    os.symlink(member.linkname, name, dir_fd=parent_fd)
    if chown:
        os.chown(name, member.uid, member.gid, dir_fd=parent_fd, follow_symlinks=False)
    os.utime(name, (member.mtime, member.mtime), dir_fd=parent_fd, follow_symlinks=False)


def _make_hardlink(member: tarfile.TarInfo, root_fd: int, parent_fd: int, name: str) -> None:
    """Link to a file extracted earlier, found with the same no-follow walk from the root.

    A hard link shares the inode of its target, so a target outside the root (`/etc/shadow`,
    `../../x`, or through a symlink) would hand the container the host's file. Targets are
    member names of this same archive: they are made relative like any name, may not contain
    "..", and must already exist inside the root.
    """
    target = _member_path(member.linkname)
    if not target:
        raise MinirunError(f"refusing archive: hard link {member.name!r} points to the root directory")
    missing = MinirunError(
        f"refusing archive: hard link {member.name!r} points to {member.linkname!r}, "
        "which is not in the archive before it"
    )
    try:
        target_dir = _open_directory(root_fd, target[:-1], member.name, create=False)
    except FileNotFoundError as e:
        raise missing from e
    try:
        found = _lstat(target_dir, target[-1])
        if found is None:
            raise missing
        if stat.S_ISDIR(found.st_mode):
            raise MinirunError(f"refusing archive: hard link {member.name!r} points to a directory")
        os.link(target[-1], name, src_dir_fd=target_dir, dst_dir_fd=parent_fd, follow_symlinks=False)
    finally:
        os.close(target_dir)


def _make_fifo(member: tarfile.TarInfo, parent_fd: int, name: str, chown: bool) -> None:
    """A named pipe is just a file-system rendezvous point, safe to recreate."""
    os.mkfifo(name, 0o600, dir_fd=parent_fd)
    # Opening a FIFO for reading with O_NONBLOCK does not wait for a writer (fifo(7)).
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    try:
        _set_metadata(fd, member, chown)
    finally:
        os.close(fd)


def _finish_directories(
    root_fd: int, directories: dict[tuple[str, ...], tarfile.TarInfo], chown: bool
) -> None:
    """Give every directory the archive listed its owner, mode and times, deepest first.

    Deepest first, because a parent made read-only (or 0700 for another owner) must not stop us
    from reaching its children; and last of all, because creating an entry changes its parent's
    mtime. fsutil.walk visits a directory ("left") after everything below it, without recursion
    and never through a link: a directory that a later member replaced by a file or a symlink is
    not visited, so it is skipped.
    """
    for visit in walk({0: root_fd}, _subdirectories):
        info = directories.get(visit.path)
        if visit.kind == "left" and info is not None:
            fd = os.open(visit.name, _DIR_FLAGS, dir_fd=visit.parent_fds[0])
            try:
                _set_metadata(fd, info, chown)
            finally:
                os.close(fd)
    if () in directories:  # the archive's "./": the root itself, last
        _set_metadata(root_fd, directories[()], chown)


def _subdirectories(fds: dict[int, int]) -> list[tuple[str, tuple[int, ...]]]:
    """What _finish_directories walks: the directories only."""
    with os.scandir(fds[0]) as entries:
        return [(e.name, (0,)) for e in entries if e.is_dir(follow_symlinks=False)]
