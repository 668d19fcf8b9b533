"""Stragglers: what `exec` started in a container that has neither a cgroup nor a PID namespace
of its own, found and ended when the container ends (container.teardown, rm, prune).

Rootless without a delegated cgroup, with --pid=host or --pid=container:NAME: when PID 1 ends,
nothing in the kernel ends the rest. docker and podman end them through the container's cgroup
(minirun too, where it has one: cgroups.remove); here the kernel's word is the container's mount
namespace and the file bound in it (`kill`).
"""

import contextlib
import os
import signal
from pathlib import Path
from typing import NamedTuple

from minirun import procfs


def kill(own_file: Path) -> None:
    """SIGKILL what `exec` started in a container that has neither a cgroup nor a PID namespace
    of its own (rootless without a delegated cgroup, and --pid=host or --pid=container:NAME):
    when its PID 1 ends, nothing in the kernel ends them. docker and podman end them with the
    container, through its cgroup (minirun too, where it has one: cgroups.remove).

    Which processes: those whose /etc/hostname is the container's own file. It is the bundle's
    `hostname` (derived from the id), bound over /etc/hostname in the container's mount
    namespace, which every process of the container is in (exec joins it, children inherit it,
    and leaving it takes unshare(2) or setns(2), which the seccomp profile allows only with
    CAP_SYS_ADMIN), and stat(2) shows the file's own inode (a bind mount is the same inode). So
    the kernel says it, as with a cgroup: not the record (it may lie), not a list of pids the
    monitor keeps (it may be SIGKILLed). After a crash of minirun, `rm -f` and `prune` find them
    all the same. Not a death-signal chain: PR_SET_PDEATHSIG is not inherited by children
    (fork(2)), a shell's background job would outlive it. Not a process group or session: a
    process leaves those (setsid(2)). Each pid is pinned by a pidfd before it is looked at
    (pidfd_open(2)): a reused pid is never hit.

    chroot(2) (CAP_SYS_CHROOT is in the default set) changes a process's root, not its mount
    namespace: its file is looked for at the top of the mount tree its root is in (_top), and
    one whose root left that tree (chroot into /proc/PID/root of a host process) dies with the
    others of its mount namespace. A mount namespace counts only while a process that shows the
    file is alive in it (_same_namespace): a namespace's inode number is reused once it is gone."""
    try:
        own = os.stat(own_file)
        host = os.readlink("/proc/self/ns/mnt")
    except OSError:
        return  # no bundle: no process can have its file
    shows: dict[str, Witness] = {}  # mount namespace -> a process there that shows the file
    others: list[tuple[int, str]] = []  # (pid, mount namespace) of the rest, outside the host's
    try:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                pidfd = os.pidfd_open(int(entry))
            except OSError:  # gone
                continue
            try:
                namespace = os.readlink(f"/proc/{entry}/ns/mnt")  # pinned: the process the pidfd names
                if namespace == host:
                    continue  # (the host's file system: not a container's)
                if namespace not in shows and _shows(int(entry), own):
                    shows[namespace], pidfd = Witness(int(entry), pidfd), -1
                else:
                    others.append((int(entry), namespace))
            except OSError:  # gone, or not ours to look at (ptrace access mode, proc(5))
                pass
            finally:
                if pidfd >= 0:
                    os.close(pidfd)
        for pid, namespace in others:  # first the rest of each namespace, while its witness lives
            if namespace in shows:
                _kill_if(pid, shows[namespace], namespace)
        for witness in shows.values():
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(witness.pidfd, signal.SIGKILL)
                procfs.wait_pidfd(witness.pidfd, 5)
    finally:
        for witness in shows.values():
            os.close(witness.pidfd)


MAX_CLIMB = 1 << 16  # a hostile chroot deeper than this still dies with its mount namespace


def _top(pid: int) -> int:
    """An O_PATH fd of the top of the mount tree that `pid`'s root is in: ".." from its root until
    ".." is the same directory. A walk through /proc/PID/root stops only at the walker's own root
    (path_resolution(7)), which is not in the container's tree, so ".." climbs out of a chroot."""
    here = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for _ in range(MAX_CLIMB):
            up = os.open("..", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=here)
            a, b = os.fstat(here), os.fstat(up)
            if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino):
                os.close(up)
                return here
            os.close(here)
            here = up
    except BaseException:
        os.close(here)
        raise
    os.close(here)
    raise OSError(f"more than {MAX_CLIMB} directories above the root of {pid}")


def _shows(pid: int, own: os.stat_result) -> bool:
    """Is the container's hostname file at etc/hostname at the top of `pid`'s mount tree?"""
    try:
        top = _top(pid)
    except OSError:
        return False
    try:
        seen = os.stat("etc/hostname", dir_fd=top, follow_symlinks=False)
    except OSError:
        return False
    finally:
        os.close(top)
    return (seen.st_dev, seen.st_ino) == (own.st_dev, own.st_ino)


class Witness(NamedTuple):
    """A process that shows the container's file, pinned by a pidfd, and kept alive (killed last)."""

    pid: int
    pidfd: int

    def still_with(self, pid: int, namespace: str) -> bool:
        """`pid` is in `namespace` now, and the witness, seen there before, still is and lives:
        the namespace lived all along, so it is one and the same (not a reused inode number)."""
        if os.readlink(f"/proc/{pid}/ns/mnt") != namespace:
            return False
        return os.readlink(f"/proc/{self.pid}/ns/mnt") == namespace and not procfs.wait_pidfd(self.pidfd, 0)


def _kill_if(pid: int, witness: Witness, namespace: str) -> None:
    """SIGKILL `pid` if, once pinned by a pidfd, it is in the witness's `namespace`; wait for its end."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        ours = witness.still_with(pid, namespace)
    except OSError:  # gone
        ours = False
    if not ours:
        os.close(pidfd)
        return
    with contextlib.suppress(OSError):
        procfs.kill(pidfd, 5)  # (closes the pidfd)
