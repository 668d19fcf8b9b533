"""The child: from clone(2) to execve(2) of the container's command, in the order it happens.

Everything here runs in the cloned process, which is already in its new user, PID, mount,
UTS, IPC (and network) namespaces. It never returns: it either execs the command or reports
an error on the sync socket and exits (os._exit: the parent's Python state, which this
process shares a copy of, must not run any cleanup here).
"""

import contextlib
import os
import select
import signal
import socket
from collections.abc import Sequence
from typing import NamedTuple, NoReturn

from minirun import cgroups, kernel, pid1, rootfs, security, sync, trace, tty
from minirun.errors import RUNTIME_ERROR, MinirunError
from minirun.rootfs import RootfsPlan
from minirun.security import SecurityPlan


class Stdio(NamedTuple):
    """Without -t: the pipe ends the child puts on 0, 1, 2 (stdin -1: /dev/null), and the
    monitor's ends, which the child closes (a --init PID 1 never execs, so close-on-exec alone
    would leave it holding its own stdin's write end: `cat` would never see EOF)."""

    stdin: int
    stdout: int
    stderr: int
    monitor_ends: tuple[int, ...]


class ProcessPlan(NamedTuple):
    """Everything the child needs, decided by the parent before clone."""

    argv: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    user: str | None
    hostname: str
    rootfs: RootfsPlan  # also says whether the network and cgroup namespaces are our own
    tty: bool
    interactive: bool
    init: bool
    security: SecurityPlan
    stdio: Stdio | None = None  # None with -t: a pty from the container's devpts
    uts_host: bool = False  # --uts=host: the host's name, which the container may not change
    # The `tasks` files of its v1 cgroup directories, opened by the parent (cgroups.join_v1).
    cgroup_tasks: tuple[int, ...] = ()


class User(NamedTuple):
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def peer_gone(sock: socket.socket) -> bool:
    """Has the other end of the sync socket closed (the parent died: POLLHUP, unix(7))?"""
    poller = select.poll()
    poller.register(sock, select.POLLRDHUP)
    return any(events & (select.POLLHUP | select.POLLRDHUP) for _, events in poller.poll(0))


def run_child(plan: ProcessPlan, sock: socket.socket) -> NoReturn:
    code = RUNTIME_ERROR
    try:
        # Parent-death signal now; "not dumpable" only after "go" (guard_process, from
        # become_namespace_root): until then the parent's helpers (newuidmap, slirp4netns), which
        # run as the same unprivileged user when rootless, must open /proc/PID/ns/*, and the
        # /proc files of a non-dumpable process belong to root (proc(5)).
        kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)
        # A parent that died before that prctl sends no death signal; it may even have sent
        # "go" first. Its end of the socket is closed then (POLLHUP, unix(7)): never run alone.
        if peer_gone(sock):
            os._exit(RUNTIME_ERROR)
        # Into its v1 cgroups by itself (a single thread moving itself skips the kernel's global
        # lock, cgroups.join_v1), before anything else and before its cgroup namespace is made.
        if plan.cgroup_tasks:
            cgroups.join_v1(plan.cgroup_tasks)
            trace.mark("into its v1 cgroups", "child", count=len(plan.cgroup_tasks))
            sync.send(sock, "joined")
        mount_fds = sync.expect(sock, "go").fds  # rootful remapped: idmapped layers, -v clones
        trace.mark("waited for go", "child")
        bundle_fd = rootfs.open_bundle(plan.rootfs)  # while still host uid 0: see RootfsPlan.bundle
        become_namespace_root()
        # Only now are we in the container's cgroup, so the new cgroup namespace is rooted
        # there: unsharing at clone time would have rooted it at minirun's own cgroup.
        if not plan.rootfs.cgroupns_host:
            kernel.unshare(kernel.CLONE_NEWCGROUP)
        if not plan.uts_host:
            kernel.sethostname(plan.hostname)
        if plan.rootfs.own_netns:
            kernel.set_link_up("lo")
        trace.mark("cgroupns, hostname, lo", "child")
        rootfs.build(plan.rootfs, mount_fds, bundle_fd)
        setup_stdio(plan, sock)
        user = find_user(plan.user)
        make_workdir(plan.cwd)
        trace.mark("stdio, passwd, workdir", "child")
        security.before_user_switch(plan.security)  # the order matters: minirun/security/__init__.py
        trace.mark("bounding set, seccomp", "child", security=plan.security)
        switch_user(user)
        security.after_user_switch(plan.security, user.uid)
        os.chdir(plan.cwd)
        os.umask(0o022)  # docker's default umask, whatever the shell that ran minirun had
        trace.mark("user, capabilities, cwd", "child")
        env = with_defaults(plan.env, user, plan)
        reset_signals()
        # Only 0, 1 and 2 may reach the container; any other inherited descriptor could be a
        # door to the host (CVE-2024-21626 leaked a host directory fd into runc containers).
        kernel.close_range_cloexec(3)
        trace.mark("signals, fds: exec", "child", argv=plan.argv)
        if plan.init:
            pid1.run_init(plan.argv, env, sock)
        pid1.execute(plan.argv, env)
    except MinirunError as e:
        code = e.code
        _report(sock, code, str(e))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else RUNTIME_ERROR
    except BaseException as e:  # any failure must reach the user as one line, not a traceback
        _report(sock, code, f"container setup failed: {e}")
    os._exit(code)


def _report(sock: socket.socket, code: int, message: str) -> None:
    with contextlib.suppress(OSError):  # if the parent is gone, there is nobody to tell
        sync.send_error(sock, code, message)


def setup_stdio(plan: ProcessPlan, sock: socket.socket) -> None:
    """A new session, so the user's terminal signals reach minirun (which forwards them)
    rather than the container directly; then -t's pty, or the monitor's pipes (stdin
    /dev/null without -i). Nothing of the caller's own stdio reaches the container."""
    os.setsid()
    if plan.tty or plan.stdio is None:
        master, slave = tty.open_pty_in_container()
        sync.send(sock, "pty", fds=[master])
        os.close(master)
        tty.make_controlling_terminal(slave)
        return
    stdin = plan.stdio.stdin if plan.stdio.stdin >= 0 else os.open("/dev/null", os.O_RDONLY)
    for fd, target in ((stdin, 0), (plan.stdio.stdout, 1), (plan.stdio.stderr, 2)):
        os.dup2(fd, target)
    for fd in {stdin, plan.stdio.stdout, plan.stdio.stderr, *plan.stdio.monitor_ends} - {0, 1, 2}:
        os.close(fd)


def _read_db(path: str) -> list[list[str]]:
    try:
        with open(path) as f:
            return [line.rstrip("\n").split(":") for line in f if line.strip() and not line.startswith("#")]
    except OSError:
        return []


def find_user(spec: str | None) -> User:
    """Resolve --user in the *container's* /etc/passwd and /etc/group, as docker does."""
    passwd = [e for e in _read_db("/etc/passwd") if len(e) >= 7]
    groups = [e for e in _read_db("/etc/group") if len(e) >= 4]
    name, _, group = (spec or "0").partition(":")
    entry = next((e for e in passwd if e[0] == name or (name.isdigit() and e[2] == name)), None)
    if entry is None and not name.isdigit():
        raise MinirunError(f"unable to find user {name}: no matching entries in passwd file")
    uid = int(entry[2]) if entry else int(name)
    gid = int(entry[3]) if entry else 0
    home = entry[5] if entry else "/"
    if group:
        match = next((g for g in groups if g[0] == group or (group.isdigit() and g[2] == group)), None)
        if match is None and not group.isdigit():
            raise MinirunError(f"unable to find group {group}: no matching entries in group file")
        gid = int(match[2]) if match else int(group)
    user_name = entry[0] if entry else None
    supplementary = [int(g[2]) for g in groups if user_name and user_name in g[3].split(",")]
    return User(uid, gid, tuple(sorted({gid, *supplementary})) if not group else (gid,), home)


def guard_process() -> None:
    """Two process flags that must hold until execve, set again after every change of ids,
    because a change of effective uid or gid clears the first and resets the second to
    fs.suid_dumpable (prctl(2)):
     - the parent-death signal: if minirun (the monitor) dies, the container dies with it, and
       no orphan runs on with nobody to record its exit or clean up after it;
     - not dumpable: no process of the container may ptrace us or open /proc/<pid>/exe, the
       host's python, before execve replaces this program (CVE-2019-5736). A --init PID 1
       never execs, and stays protected (minirun/pid1.py).
    """
    kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)
    kernel.prctl(kernel.PR_SET_DUMPABLE, 0)


def become_namespace_root() -> None:
    """Take on the ids that are root *inside* the new user namespace.

    Writing uid_map does not change a process's ids: a child cloned by host root is still host
    uid 0, which a remapped namespace (0 -> 1000000) does not map, so it would run as "nobody"
    (65534). setresuid(0) inside the namespace makes it the namespace's root, i.e. host uid
    1000000 (user_namespaces(7)); with an identity map or rootless, it already is.
    """
    with contextlib.suppress(PermissionError):  # rootless without newgidmap: setgroups is denied
        os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    guard_process()


def make_workdir(cwd: str) -> None:
    """docker creates a missing working directory (-w or the image's WorkingDir)."""
    os.makedirs(cwd, exist_ok=True)


def switch_user(user: User) -> None:
    """Become the container user: groups first, while we still may change them."""
    # Rootless without newgidmap, setgroups is denied in this namespace: keep none.
    with contextlib.suppress(PermissionError):
        os.setgroups(user.groups)
    try:
        os.setresgid(user.gid, user.gid, user.gid)
        os.setresuid(user.uid, user.uid, user.uid)
    except OSError as e:
        raise MinirunError(f"cannot switch to uid {user.uid} gid {user.gid}: not mapped in the "
                           "container's user namespace (rootless needs a range in /etc/subuid "
                           "and /etc/subgid, and newuidmap/newgidmap)") from e
    guard_process()


def with_defaults(env: Sequence[str], user: User, plan: ProcessPlan) -> list[str]:
    """docker adds HOSTNAME, HOME (from passwd) and TERM (with -t) unless the user set them."""
    names = {e.split("=", 1)[0] for e in env}
    defaults = [f"HOSTNAME={plan.hostname}", f"HOME={user.home}"]
    if plan.tty:
        defaults.append("TERM=xterm")
    if "PATH" not in names:
        defaults.append("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    return [d for d in defaults if d.split("=", 1)[0] not in names] + list(env)


def reset_signals() -> None:
    """Give the command the signal dispositions a shell would: all default, nothing ignored.

    Python ignores SIGPIPE (and SIGXFSZ) at start-up, and ignored signals stay ignored across
    execve(2) (signal(7)): without this, `yes | head -1` in the container would never end.
    """
    for sig in signal.valid_signals():
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
