"""Stragglers: what `exec` started in a container that has neither a cgroup nor a PID namespace
of its own, found and ended when the container ends (container.teardown, rm, prune).

Rootless without a delegated cgroup, with --pid=host or --pid=container:NAME: when PID 1 ends,
nothing in the kernel ends the rest. docker and podman end them through the container's cgroup
(minirun too, where it has one: cgroups.remove); here the kernel's word is the container's mount
namespace and the file bound in it (`kill`). Without a freezer, they are frozen by hand: each one
found is stopped (SIGSTOP: a stopped process forks nothing and keeps its pid), /proc is looked at
again until it shows no process not seen before, and then they all get SIGKILL.
"""

import contextlib
import os
import signal
import time
from pathlib import Path

from minirun import procfs

LOOK_FOR = 10.0  # seconds of sweeps at most: `rm` ends, even if something outruns them that long
BATCH = 256  # processes stopped (a pidfd each) before they are killed: RLIMIT_NOFILE is often 1024


def kill(own_file: Path) -> bool:
    """SIGKILL every process of the container: those whose /etc/hostname is its own file.

    That file is the bundle's `hostname` (derived from the id), bound over /etc/hostname in the
    container's mount namespace, which every process of the container is in (exec joins it,
    children inherit it, and leaving it takes unshare(2) or setns(2), which the seccomp profile
    allows only with CAP_SYS_ADMIN), and stat(2) shows the file's own inode (a bind mount is the
    same inode). So the kernel says it, as with a cgroup: not the record (it may lie), not a list
    of pids the monitor keeps (it may be SIGKILLed). After a crash of minirun, `rm -f` and
    `prune` find them all the same. Not a death-signal chain: PR_SET_PDEATHSIG is not inherited
    by children (fork(2)), a shell's background job would outlive it. Not a process group or
    session: a process leaves those (setsid(2)).

    One look at /proc is not enough: a process that forks a successor and exits, again and
    again, is at a pid no list read before shows. So a round (`_round`) stops each process as
    it finds it and reads /proc again until it lists nothing new, then kills them all. Then one
    more round: one that finds none ends it (a stopped process may have been let go meanwhile:
    SIGCONT from one not stopped yet, or a tracer that swallowed the SIGSTOP).

    True once a round found none; False if LOOK_FOR ran out first (the caller says so: the
    container's files are about to go, and with them the way to find what may be left)."""
    try:
        own, host = os.stat(own_file), os.stat("/proc/self/ns/mnt").st_ino
    except OSError:
        return True  # no bundle: no process can have its file
    deadline = time.monotonic() + LOOK_FOR
    while _round(Found(own, host), deadline):
        if time.monotonic() >= deadline:
            return False
    return True


class Found:
    """What one round of `kill` has found so far: not a value but its notebook, filled as the
    round goes (_stop adds to it, _end empties `stopped` into `ended`), a fresh one each round."""

    def __init__(self, own: os.stat_result, host: int) -> None:
        self.own = own  # the container's hostname file
        self.host = host  # the host's mount namespace (its inode): the host's file system, not a container's
        self.held: dict[int, int] = {}  # mount namespace (inode) where the file was seen -> an fd of it
        self.stopped: dict[int, int] = {}  # pid -> pidfd of the container's processes found, SIGSTOPped
        self.ended: list[int] = []  # pids of those already SIGKILLed (_end)


def _round(found: Found, deadline: float) -> bool:
    """SIGSTOP each process of the container /proc lists, and read it again until it lists no pid
    not looked at (or the deadline); then SIGKILL them. Did it find any?"""
    seen: set[int] = set()
    try:
        while (listed := {int(e) for e in os.listdir("/proc") if e.isdigit()}) - seen:
            new = sorted(listed - seen, reverse=True)  # newest first: where a hopping process is
            later = [pid for pid in new if _stop(found, pid) is None]
            for pid in later:  # the file may be shown in their namespace by one later in the list
                _stop(found, pid)
            seen = listed
            if time.monotonic() > deadline:
                break
    finally:
        _end(found)
        for fd in found.held.values():
            os.close(fd)
    return bool(found.ended)


def _end(found: Found) -> None:
    """SIGKILL the processes stopped (so they started nothing since they were found), and wait
    for their end. Also in the middle of a round, once BATCH are stopped: a pidfd each, and the
    sweep may open only so many files (RLIMIT_NOFILE, often 1024). The round goes on through the
    pids it has listed, the oldest too (beginning again at the newest, it might never reach a
    process that starts new ones faster than a batch is killed); one of theirs taken by a new
    process is left to the next round."""
    for pidfd in found.stopped.values():
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    until = time.monotonic() + 5
    for pid, pidfd in found.stopped.items():
        procfs.wait_pidfd(pidfd, max(0.0, until - time.monotonic()))
        os.close(pidfd)
        found.ended.append(pid)
    found.stopped.clear()


def _stop(found: Found, pid: int) -> bool | None:
    """SIGSTOP `pid` if it is the container's; None if its namespace is not known to be yet.

    The pid is pinned by a pidfd before it is looked at (pidfd_open(2)): the signal goes to the
    process the pidfd names, never to one that got its pid since. A namespace is held open once a
    process showed the file there: its inode number is not reused while it is (an open
    /proc/PID/ns file keeps the namespace alive, namespaces(7))."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # gone
        return False
    try:
        task = _live_task(pid)
        namespace = os.stat(f"{task}/ns/mnt").st_ino
        if namespace == found.host:
            return False
        if namespace not in found.held:
            if not _shows(task, found.own):
                return None
            fd = os.open(f"{task}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            if os.fstat(fd).st_ino != namespace or procfs.wait_pidfd(pidfd, 0):  # moved or gone
                os.close(fd)
                return None
            found.held[namespace] = fd
        signal.pidfd_send_signal(pidfd, signal.SIGSTOP)
        found.stopped[pid], pidfd = pidfd, -1
        if len(found.stopped) >= BATCH:
            _end(found)
        return True
    except OSError:  # gone (a zombie has no namespace), or not ours to look at (ptrace access mode, proc(5))
        return False
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def _live_task(pid: int) -> str:
    """/proc/PID, or /proc/PID/task/TID of a thread still alive if its main thread has ended.

    A main thread that ends with exit(2) (not exit_group(2)) leaves the process running in its
    other threads, and /proc lists it still; but /proc/PID shows the leader, whose namespaces and
    root went with it (kernel/exit.c: exit_fs, exit_task_namespaces): ENOENT. The threads of a
    process share both (CLONE_THREAD takes CLONE_FS; setns(2) and unshare(2) of a mount
    namespace refuse a process whose fs is shared), so any live one shows where it is."""
    try:
        os.stat(f"/proc/{pid}/ns/mnt")
        return f"/proc/{pid}"
    except FileNotFoundError:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(FileNotFoundError):
                os.stat(f"/proc/{pid}/task/{tid}/ns/mnt")
                return f"/proc/{pid}/task/{tid}"
        raise


MAX_CLIMB = 1 << 16  # a hostile chroot deeper than this still dies with its mount namespace


def _top(task: str) -> int:
    """An O_PATH fd of the top of the mount tree that the root of `task` (a /proc dir) is in: ".."
    from its root until ".." is the same directory. A walk through /proc/PID/root stops only at
    the walker's own root (path_resolution(7)), which is not in the container's tree, so ".."
    climbs out of a chroot."""
    here = os.open(f"{task}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
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
    raise OSError(f"more than {MAX_CLIMB} directories above the root of {task}")


def _shows(task: str, own: os.stat_result) -> bool:
    """Is the container's hostname file at etc/hostname at the top of the mount tree of `task`?

    chroot(2) (CAP_SYS_CHROOT is in the default set) changes a process's root, not its mount
    namespace: its file is looked for at the top of the mount tree its root is in (_top), and
    one whose root left that tree (chroot into /proc/PID/root of a host process) is stopped with
    the others of its mount namespace."""
    try:
        top = _top(task)
    except OSError:
        return False
    try:
        seen = os.stat("etc/hostname", dir_fd=top, follow_symlinks=False)
    except OSError:
        return False
    finally:
        os.close(top)
    return (seen.st_dev, seen.st_ino) == (own.st_dev, own.st_ino)
