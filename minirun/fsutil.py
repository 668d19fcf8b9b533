"""Small file-system helpers shared by the image store and the container records.

Two rules keep concurrent minirun processes from seeing half-written data:
 - a record is written to a temporary file in the same directory and rename(2)d over the old
   one: rename within a file system is atomic, so readers see the old or the new, never half;
 - a read-modify-write of a shared file happens under flock(2) on a separate lock file.
"""

import contextlib
import errno
import fcntl
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple


def on_path(program: str, path: str | None = None) -> str | None:
    """Where the shell would find `program`: the first executable file of that name in a $PATH
    directory (or `path`'s), or None. What shutil.which does, without importing shutil, which
    brings bz2, lzma and fnmatch (~2 ms) to every rootless start that asks."""
    for directory in (path or os.environ.get("PATH", os.defpath)).split(os.pathsep):
        candidate = os.path.join(directory, program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def atomic_write_json(path: Path, value: Any, mode: int = 0o644) -> None:
    """Write `value` as JSON to `path` so that readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid in the name: a SIGKILLed writer's file is found and removed by
    # remove_abandoned_tmp (what `prune` does), never one that a live writer is still writing.
    # O_EXCL with 32 random bits: what tempfile.mkstemp does, without importing tempfile (and its
    # random, hashlib, bisect, math) on the start path.
    tmp = path.parent / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(value, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fchmod(f.fileno(), mode)
        os.rename(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not e.filename:  # say which file (ENOSPC, EIO ...)
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


ABANDONED_TMP = r"^\..+\.(\d+)\.[a-z0-9_]+\.tmp$"


def remove_abandoned_tmp(directory: Path) -> list[Path]:
    """Remove atomic_write_json's temporary files whose writer has died; return them."""
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            match = re.fullmatch(ABANDONED_TMP, entry.name)
            if match and not os.path.exists(f"/proc/{match.group(1)}"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def read_json(path: Path) -> Any:
    """The JSON in `path`, never read through a symbolic link planted in its place (ELOOP): minirun
    writes these files itself (atomic_write_json), as files."""
    with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)) as f:
        return json.load(f)


@contextlib.contextmanager
def locked(lock_path: Path, shared: bool = False) -> Iterator[None]:
    """Hold flock(2) on `lock_path` (created if missing) for the duration of the block.

    flock locks belong to the open file description, so they are released when the process
    dies, also by SIGKILL: a crashed minirun never leaves a lock held.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)  # not via a link
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# --- Walking and removing trees without recursion and without following links ----------------
#
# A container's layer and an imported archive are shaped by somebody else: a directory 5,000
# levels deep (`mkdir -p`), a symlink to /etc, a directory left mode 000 (overlay's work/work).
# Recursion in Python stops at about 1,000 levels (RecursionError), a path that long exceeds
# PATH_MAX (ENAMETOOLONG), and chmod(..., follow_symlinks=False) is not implemented on Linux
# (fchmodat(2) has no working AT_SYMLINK_NOFOLLOW). So trees are walked with a loop and an explicit
# stack, every directory is opened relative to its parent's fd with O_NOFOLLOW (openat(2)): a
# symlink is never entered, only unlinked or reported. Only the deepest directory of each tree is
# held open; the walk climbs back with openat(fd, "..") and checks that it arrived at the
# directory it came from (same st_dev/st_ino), so the number of open fds does not grow with depth.

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_directory(name: str, dir_fd: int) -> int:
    """Open the directory `name` in `dir_fd`; fails (ENOTDIR/ELOOP) on a symlink, never follows it.

    A directory of ours that we may not read or change (overlay leaves work/work mode 000, an
    image may have 0555 directories) is made 0700 first: through an O_PATH fd of the directory
    itself (/proc/self/fd/N names exactly that inode), since chmod by name could follow a symlink
    swapped in meanwhile. Root needs none of this (CAP_DAC_OVERRIDE).
    """
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except PermissionError:
        handle = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            os.chmod(f"/proc/self/fd/{handle}", 0o700)
        finally:
            os.close(handle)
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    if os.geteuid() != 0:  # entries are removed and created only with write permission on their directory
        st = os.fstat(fd)
        if st.st_uid == os.geteuid() and st.st_mode & 0o700 != 0o700:
            os.fchmod(fd, 0o700)
    return fd


class Visit(NamedTuple):
    """One step of walk(): `name` in the directory whose open fds (one per tree that has it) are
    `parent_fds`, at `path` (names from the top). kind "entry": seen, before anything below it;
    "left": a directory, after everything below it was visited (what a remover needs)."""

    kind: Literal["entry", "left"]
    path: tuple[str, ...]
    parent_fds: dict[int, int]
    down: tuple[int, ...] = ()  # for an entry: the trees the walk goes down into next

    @property
    def name(self) -> str:
        return self.path[-1]


# Given the open fds of one directory (by tree index), its children in the order to visit them,
# each with the trees in which the walk should go down into it (empty: do not go down).
Children = Callable[[dict[int, int]], list[tuple[str, tuple[int, ...]]]]


class _Level(NamedTuple):
    ids: dict[int, tuple[int, int]]  # (st_dev, st_ino) of this directory in each tree
    todo: list[tuple[str, tuple[int, ...]]]  # children still to visit, the next one last


def walk(top_fds: dict[int, int], children: Children, *, skip_unopenable: bool = False) -> Iterator[Visit]:
    """Depth first, parents before children, over one tree or several walked in step (export
    merges overlay layers this way); no recursion, fds only, never through a symlink.

    `top_fds` (tree index -> open directory fd) stay the caller's. The fds in a Visit are valid
    only until the next step. `skip_unopenable`: a directory that cannot be opened is not gone
    into (and gets no "left" visit) instead of ending the walk with the error.
    """
    fds = {tree: os.dup(fd) for tree, fd in top_fds.items()}  # the deepest open copy per tree
    stack: list[_Level] = []
    path: list[str] = []

    def enter(trees: dict[int, int]) -> None:
        ids = {t: (st.st_dev, st.st_ino) for t, fd in trees.items() for st in [os.fstat(fd)]}
        stack.append(_Level(ids, list(reversed(children(trees)))))

    try:
        enter(fds)
        while stack:
            level = stack[-1]
            if level.todo:
                name, down = level.todo.pop()
                here = {t: fds[t] for t in level.ids}
                yield Visit("entry", (*path, name), here, down)
                if down:
                    opened: dict[int, int] = {}
                    try:
                        for t in down:
                            opened[t] = open_directory(name, fds[t])
                    except BaseException as e:
                        for fd in opened.values():
                            os.close(fd)
                        if skip_unopenable and isinstance(e, OSError):
                            continue
                        raise
                    for t, fd in opened.items():  # the parent's fd is found again through ".."
                        os.close(fds[t])
                        fds[t] = fd
                    path.append(name)
                    enter(opened)
                continue
            stack.pop()
            if not stack:
                break
            parent = stack[-1]
            for t in level.ids:  # climb back up in the trees this directory came from
                up = os.open("..", DIR_FLAGS, dir_fd=fds[t])
                st = os.fstat(up)
                if (st.st_dev, st.st_ino) != parent.ids[t]:
                    os.close(up)
                    raise OSError(errno.ESTALE, "directory moved during the walk", "/".join(path))
                os.close(fds[t])
                fds[t] = up
            yield Visit("left", tuple(path), {t: fds[t] for t in parent.ids})
            path.pop()
    finally:
        for fd in fds.values():
            os.close(fd)


def list_directory(fd: int) -> list[os.DirEntry[str]]:
    """The entries of an open directory, sorted by name (os.scandir duplicates the fd)."""
    with os.scandir(fd) as entries:
        return sorted(entries, key=lambda e: e.name)


def _single_tree(fds: dict[int, int]) -> list[tuple[str, tuple[int, ...]]]:
    return [(e.name, (0,) if e.is_dir(follow_symlinks=False) else ()) for e in list_directory(fds[0])]


def remove_tree_at(dir_fd: int, name: str, *, ignore_errors: bool = False) -> None:
    """Remove `name` in `dir_fd` and everything below it, whatever its depth; a symlink (to a
    directory or anywhere) is unlinked, never followed. With `ignore_errors`, whatever cannot be
    removed stays and the rest goes (an unprivileged user cannot remove files a container's
    subordinate ids made in a directory it does not own)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=dir_fd)
            return
        top = open_directory(name, dir_fd)
    except FileNotFoundError:
        return
    except OSError:
        if ignore_errors:
            return
        raise
    try:
        for visit in walk({0: top}, _single_tree, skip_unopenable=ignore_errors):
            try:
                if visit.kind == "left":
                    os.rmdir(visit.name, dir_fd=visit.parent_fds[0])
                elif not visit.down:
                    os.unlink(visit.name, dir_fd=visit.parent_fds[0])
            except FileNotFoundError:
                continue
            except OSError:
                if not ignore_errors:
                    raise
    finally:
        os.close(top)
    try:
        os.rmdir(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError:
        if not ignore_errors:
            raise


def remove_tree(path: Path, *, ignore_errors: bool = False) -> None:
    """remove_tree_at for a path: its parent is opened normally (it is ours); below, no link is followed."""
    try:
        parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        remove_tree_at(parent, path.name, ignore_errors=ignore_errors)
    finally:
        os.close(parent)
