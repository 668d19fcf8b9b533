"""`minirun exec`: one more process inside a running container, in the order it happens.

The container's PID 1 already lives in its namespaces and cgroup and runs under its security
plan. `exec` starts a new process there and holds it to the same plan:

  step  who             what
  ----  --------------  ------------------------------------------------------------------------
  1     minirun (CLI)   find the container; the security plan from its record (capabilities,
                        seccomp BPF from the cache, checked against the record, no_new_privs);
                        a pidfd of PID 1, checked against its recorded start time once open;
                        the `tasks` file of each v1 directory of its cgroup (found from its id,
                        not taken from its record), and its v2 directory
  2     minirun, helper the helper is born in the container's v2 cgroup (clone3 with
                        CLONE_INTO_CGROUP: no migration, see fork_helper); parent-death signal,
                        not dumpable; it moves itself into the v1 ones ("0" to each `tasks`,
                        cgroups.join_v1), so pids.max counts it and what it clones
  3     helper          setns(pidfd, USER|MNT|UTS|IPC|NET|PID|CGROUP): every namespace of PID 1
                        that is not the host's, in one call, the user namespace first (see join)
  4     helper          clone(CLONE_PARENT): the new process is in the PID namespace (setns only
                        changed where the helper's *children* go), in the helper's cgroups, and
                        is minirun's own child;
                        the helper sends its pid and exits; minirun reaps it and says "go"
  5     process         setresuid(0) in the user namespace, not dumpable, parent-death signal;
                        a new session; with -t a pty from the container's devpts, the master
                        sent to minirun; the user from the container's /etc/passwd
  6     process         the start's security steps (process.py, security/): bounding set,
                        seccomp, user, capabilities, no_new_privs, seccomp; cwd; signals; fds >= 3
                        close-on-exec; execve (EOF on the socket tells minirun it runs)
  7     minirun (CLI)   forward signals, relay its pipes or pty (monitor.relay_until_exit), wait:
                        the command's exit code, 126
                        (cannot execute), 127 (not found); with -d, return once it runs

Everything the process will need is imported and decided before step 3: after setns(MNT) the
file system is the container's, and an import would read the container's files.
"""

import contextlib
import errno
import os
import signal
import socket
import zlib
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

from minirun import (
    cgroups,
    container,
    helper,
    kernel,
    logfile,
    monitor,
    pid1,
    process,
    procfs,
    security,
    state,
    sync,
    trace,
    tty,
)
from minirun.errors import RUNTIME_ERROR, MinirunError
from minirun.security import SecurityPlan
from minirun.spec import env_dict

# The namespaces of PID 1 an exec'd process joins, as named in /proc/PID/ns.
NAMESPACES = {"user": kernel.CLONE_NEWUSER, "mnt": kernel.CLONE_NEWNS, "uts": kernel.CLONE_NEWUTS,
              "ipc": kernel.CLONE_NEWIPC, "net": kernel.CLONE_NEWNET, "pid": kernel.CLONE_NEWPID,
              "cgroup": kernel.CLONE_NEWCGROUP}


class ExecPlan(NamedTuple):
    """Everything the new process will do, decided by minirun before it forks."""

    argv: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    user: str | None
    hostname: str
    tty: bool
    interactive: bool
    detach: bool
    security: SecurityPlan
    stdio: process.Stdio | None = None  # without -t (and -d): pipes to minirun, which relays them
    rlimits: tuple[tuple[int, int, int], ...] = ()  # PID 1's (resource, soft, hard), as runc's exec


# --- what the record keeps for exec (written when the container starts) ------------------------


def security_record(plan: SecurityPlan, profile: str | None) -> dict[str, Any]:
    """HostConfig fields that let exec repeat the container's security plan exactly:
    the capability set (docker's HostConfig.Capabilities), the seccomp profile, a checksum of
    the very BPF program PID 1 loaded, and no_new_privs."""
    return {"Capabilities": sorted(plan.capabilities), "SeccompProfile": profile or "unconfined",
            "SeccompFilter": _checksum(plan.seccomp_filter), "NoNewPrivileges": plan.no_new_privileges}


def _checksum(bpf: bytes | None) -> str:
    return "" if bpf is None else f"crc32:{zlib.crc32(bpf):08x}:{len(bpf)}"


def security_from_record(record: state.Record, store: Path) -> SecurityPlan:
    """The container's own plan again: same capabilities, same filter (from the cache, compiled
    again if it is gone), or a refusal if the profile file has changed since the start."""
    config = record.host_config
    if "Capabilities" not in config:
        raise MinirunError(f"container {record.name} was started by a minirun without exec; start it again")
    profile = config["SeccompProfile"]
    plan = security.plan(frozenset(config["Capabilities"]), None if profile == "unconfined" else profile,
                         bool(config["NoNewPrivileges"]), store)
    if _checksum(plan.seccomp_filter) != config["SeccompFilter"]:
        raise MinirunError(f"the seccomp profile {profile} has changed since container {record.name} "
                           "started: exec will not run under another filter than the container's")
    return plan


def plan(record: state.Record, argv: list[str], *, env: list[str], user: str | None, workdir: str | None,
         tty: bool, interactive: bool, detach: bool, store: Path) -> ExecPlan:
    config = record.config
    environment = env_dict([*config.get("Env", []), *env])
    return ExecPlan(argv=tuple(argv), env=tuple(f"{k}={v}" for k, v in environment.items()),
                    cwd=workdir or config.get("WorkingDir") or "/", user=user or config.get("User") or None,
                    hostname=config.get("Hostname", ""), tty=tty and not detach,
                    interactive=interactive and not detach, detach=detach,
                    security=security_from_record(record, store), rlimits=limits_of(record.pid))


def limits_of(pid: int) -> tuple[tuple[int, int, int], ...]:
    """PID 1's resource limits, from /proc/PID/limits (world-readable, proc(5)): its lines are the
    RLIMIT_* resources in the kernel's order, 0 to 15. exec gives its process the same ones, not
    those of the shell `minirun exec` was typed in (attack review of issue 11)."""
    import resource  # noqa: F401  exec's only (enter is on run's path): its child uses it after setns

    limits = []
    try:
        with open(f"/proc/{pid}/limits") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return ()
    for number, line in enumerate(lines):
        values = line[26:].split()[:2]  # "Max open files            1024     1048576  files"
        if len(values) == 2:
            soft, hard = (-1 if v == "unlimited" else int(v) for v in values)  # -1: RLIM_INFINITY
            limits.append((number, soft, hard))
    return tuple(limits)


# --- step 1: the container's PID 1, as a pidfd ----------------------------------------------


def open_pid1(record: state.Record) -> int:
    """A pidfd for the container's PID 1 (container.open_pid1: checked against the pid's start
    time after opening, so that a reused pid is never taken for it), or a one-line refusal."""
    pidfd = container.open_pid1(record)
    if pidfd is None:
        raise MinirunError(f"container {record.name} is not running")
    if container.paused(record):  # the new process would be frozen at birth, and exec wait forever
        os.close(pidfd)
        raise MinirunError(f"container {record.name} is paused: unpause it first "
                           f"(minirun unpause {record.name})")
    return pidfd


def open_target(record: state.Record) -> int:
    """A pidfd of the process whose namespaces exec joins: PID 1, except rootless with --init.

    setns(2) on a pidfd asks for the access ptrace would need to read the process
    (PTRACE_MODE_READ), as the /proc/PID/ns files do. With --init, PID 1 stays minirun's python
    and is never dumpable, so only CAP_SYS_PTRACE in the host's user namespace (root) gets that
    access. The command init runs (its child) lives in the very same namespaces and is dumpable
    since its execve: an unprivileged user joins through it. Its pidfd names it for good once
    its parent, checked after opening, is the container's PID 1."""
    pidfd = open_pid1(record)
    target = target_pid(record)
    if target == record.pid:
        return pidfd
    try:
        child_fd = os.pidfd_open(target)
    except ProcessLookupError:
        return pidfd  # setns will say why
    if procfs.parent(target) != record.pid:
        os.close(child_fd)
        return pidfd
    os.close(pidfd)
    return child_fd


def target_pid(record: state.Record) -> int:
    """PID 1, or rootless with --init, the command init runs (see open_target)."""
    if not record.host_config.get("Init") or os.geteuid() == 0:
        return record.pid
    return next(iter(_children(record.pid)), record.pid)


def _children(pid: int) -> list[int]:
    return [int(entry) for entry in os.listdir("/proc")
            if entry.isdigit() and procfs.parent(int(entry)) == pid]



def namespaces_to_join(record: state.Record) -> int:
    """Every namespace of PID 1 that is not the host's, as its record says (HostConfig's modes).
    setns(2) into the host's network namespace (--network host) from the container's user
    namespace would need CAP_SYS_ADMIN over the host's, which it has not. (Comparing
    /proc/PID/ns/* with our own would not do: with --init, PID 1 stays minirun's python, not
    dumpable, and an unprivileged user may not look at those files.) Its user and mount
    namespaces are never the host's."""
    config = record.host_config
    on_host = {"net": config.get("NetworkMode") == "host", "pid": config.get("PidMode") == "host",
               "ipc": config.get("IpcMode") == "host", "uts": config.get("UTSMode") == "host",
               "cgroup": config.get("CgroupnsMode") == "host"}
    return sum(flag for name, flag in NAMESPACES.items() if not on_host.get(name, False))


# --- the run --------------------------------------------------------------------------------------


def run(record: state.Record, exec_plan: ExecPlan) -> int:
    pidfd = open_target(record)
    stdio = _pipes(exec_plan)  # (the process's ends, ours): never our own 0/1/2 (issue 12)
    exec_plan = exec_plan._replace(stdio=stdio[0] if stdio else None)
    tasks: tuple[int, ...] = ()
    v2_dir = None
    try:
        flags = namespaces_to_join(record)
        # The container's cgroup from its id (a record's claim only if it has that shape,
        # cgroups.of_container), as rm finds it: the record's paths as written would let an
        # edited record put the process in any cgroup, a frozen one (exec hangs) or the root
        # (out of the container's limits), or in none ([]) (issue 12: records are not trusted).
        found = cgroups.of_container(record.id, record.cgroup_paths)
        cgroup = found if found.paths else None
        tasks = cgroups.open_v1_tasks(cgroup)  # the helper moves itself in with them (cgroups.join_v1)
        v2_dir = cgroups.open_v2(cgroup)
        trace.mark("exec: plan", flags=flags, cgroup=cgroup, security=exec_plan.security, argv=exec_plan.argv)
        ours, theirs = sync.channel()
        report_r, report_w = os.pipe2(os.O_CLOEXEC)  # helper -> minirun: the new process's pid
        helper_pid, born_in_v2 = fork_helper(v2_dir)
        if helper_pid == 0:
            ours.close()
            os.close(report_r)
            cgroups.close_all([] if v2_dir is None else [v2_dir])  # it is in there now, or never will be
            # What is left to write (a v2 directory, and no clone3 here): its cgroup.procs.
            v2_left = cgroup is not None and not born_in_v2 and cgroup.v2_path() is not None
            move_into = cgroup if v2_left else None
            helper_main(exec_plan, pidfd, flags, tasks, move_into, theirs, report_w)  # never returns
        trace.mark("exec: helper", pid=helper_pid, born_in_v2=born_in_v2)
    finally:
        os.close(pidfd)
        cgroups.close_all([*tasks, *([] if v2_dir is None else [v2_dir])])
        if stdio:
            for fd in (stdio[0].stdin, stdio[0].stdout, stdio[0].stderr):
                if fd >= 0:
                    os.close(fd)
    theirs.close()
    os.close(report_w)
    with ours:
        pid = _receive_pid(ours, report_r, helper_pid)
        pidfd = kernel.pidfd_open(pid)
        with sync.killed_on_error(pid, pidfd):
            master = sync.receive_exec(ours)  # steps 5-6
    if exec_plan.detach:
        return 0
    stdout, stderr, stdin = (master, -1, -1) if master is not None else (stdio[1] if stdio else (-1, -1, -1))
    watch = monitor.Watch(state_dir="", container_id="", pid=pid, pidfd=pidfd, stdout=stdout,
                          stderr=stderr, stdin=stdin, tty=exec_plan.tty, log=logfile.Options("none"),
                          log_path="", remove=False, attached=True, interactive=exec_plan.interactive,
                          cgroup_places=())  # only relayed: the container's monitor tears down
    try:
        return monitor.relay_until_exit(watch)  # forwards signals too, as docker's CLI does
    finally:
        for fd in (watch.pidfd, stdout, stderr, stdin):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)


def _pipes(exec_plan: ExecPlan) -> tuple[process.Stdio, tuple[int, int, int]] | None:
    """Without -t: a pipe for stdout, one for stderr, one for stdin with -i; -d: none at all."""
    if exec_plan.tty or exec_plan.detach:
        return None
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    in_r, in_w = os.pipe2(os.O_CLOEXEC) if exec_plan.interactive else (-1, -1)
    ours = (out_r, err_r, in_w)
    return process.Stdio(in_r, out_w, err_w, tuple(fd for fd in ours if fd >= 0)), ours


def _receive_pid(sock: socket.socket, report: int, helper_pid: int) -> int:
    """Step 4 from minirun's side: the new process's pid (the helper's error comes on the sync
    socket instead); reap the helper, then let the process go on."""
    answer = helper.answer(report, helper_pid)
    if not answer.isdigit():
        message = sync.receive(sock)
        if message.name == "error":
            raise sync.error_of(message)
        raise MinirunError("exec: the helper process ended without starting the command")
    pid = int(answer)
    sync.send(sock, "go")
    return pid


# --- steps 2-4: the helper ------------------------------------------------------------------------


def fork_helper(v2_dir: int | None) -> tuple[int, bool]:
    """Step 2: fork the helper (0 in it, its pid in minirun), born in the container's v2 cgroup
    where it has one; and whether it was.

    Why born, not moved: a pid written to a cgroup.procs takes the kernel's global
    cgroup_threadgroup_rwsem for writing, and its first taker waits for an RCU grace period
    (0.3-31 ms here, README "Start-up time"); clone3(2) with CLONE_INTO_CGROUP (Linux 5.7) puts
    the child there at birth, under the lock's read side only. minirun clones it, from the
    host's cgroup namespace, not the helper after its setns: where cgroup2 is mounted with
    nsdelegate (systemd mounts it so), the kernel lets a process clone into (or move to) a cgroup
    only if its own cgroup and the target are both visible from its cgroup namespace
    (cgroup_procs_write_permission; cgroup-v2.rst, "Delegation Containment"), and the helper's,
    the host's, is not visible from the container's. Born there, the helper joins the cgroup
    namespace with the others (step 3) and its child inherits both. The permission check is the
    one a write to the directory's cgroup.procs meets, with minirun's credentials: root, or
    rootless the user a delegated cgroup belongs to.

    clone3 answers ENOSYS where a seccomp filter above minirun refuses it (docker's default
    profile, minirun's own): then a plain fork, and the helper writes itself into cgroup.procs
    (helper_main). Any other refusal is the kernel's answer, not a missing call: EAGAIN when
    pids.max is reached, which a moved helper would only dodge."""
    if v2_dir is not None:
        try:
            return kernel.clone_into_cgroup(0, v2_dir), True
        except OSError as e:
            if e.errno != errno.ENOSYS:
                raise MinirunError(f"exec: into the container's cgroup: {e.strerror}") from None
    return os.fork(), False


def helper_main(exec_plan: ExecPlan, pidfd: int, flags: int, tasks: tuple[int, ...],
                move_into: cgroups.Cgroup | None, sock: socket.socket, report: int) -> NoReturn:
    """Steps 2-4 in the helper: `tasks` are the v1 cgroups' files minirun opened; `move_into` the
    cgroup whose v2 directory it still has to write itself into (fork_helper could not clone3)."""
    code = RUNTIME_ERROR
    try:
        # If minirun dies, so does the helper; nothing in the container may ptrace it
        # (helper.not_dumpable) - although it is never in the container's PID namespace, its
        # children will be.
        kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)
        helper.not_dumpable()
        # "0" (itself) to each v1 `tasks`: a single thread moving itself takes no global lock
        # since Linux 6.0 (cgroups.join_v1); the permission check is minirun's, who opened them.
        cgroups.join_v1(tasks)
        if move_into is not None:  # the host's /sys/fs/cgroup is still in sight (before setns(MNT))
            cgroups.add_process(move_into, os.getpid(), v1_joined=True)
        trace.mark("exec: into its cgroups", "helper", v1_joined=len(tasks),
                   moved_into_v2=move_into is not None)
        join(pidfd, flags)
        trace.mark("exec: setns", "helper", flags=flags)
        os.close(pidfd)
        helper.not_dumpable()  # again: a change of credentials may have reset it
        pid = kernel.clone(kernel.CLONE_PARENT)
        if pid == 0:
            os.close(report)
            # Wait until minirun knows our pid and has reaped the helper (so that it no longer
            # counts in pids.max): then "go".
            sync.expect(sock, "go")
            process_main(exec_plan, sock)  # never returns
        os.write(report, str(pid).encode())
        code = 0
    except MinirunError as e:
        code = e.code
        _report(sock, code, str(e))
    except BaseException as e:  # one line for the user, never a traceback
        _report(sock, code, f"exec: {e}")
    os._exit(code)


def join(pidfd: int, flags: int) -> None:
    """Join PID 1's namespaces, all of them in one setns(2) on its pidfd (Linux 5.8).

    The order is the kernel's, and it is the one that works: the user namespace first. The
    kernel switches the caller's credentials to the new user namespace (where it gains every
    capability: it is the namespace's owner, or root above it) before it checks the others
    (nsproxy.c, validate_nsset), so the mount, network, UTS, IPC and cgroup namespaces, owned by
    the container's user namespace, are judged by capabilities *there*. Joined one by one as
    an unprivileged user, the network namespace would come before the user namespace and be
    refused (rootless). The PID namespace applies only to children (pid_namespaces(7)), hence
    the clone after this. Either all of them are joined or none (the call is atomic).
    """
    try:
        kernel.setns(pidfd, flags)
    except ProcessLookupError:
        raise MinirunError("the container's PID 1 exited while exec was joining it") from None


# --- steps 5-6: the new process, inside ---------------------------------------------------------


def process_main(exec_plan: ExecPlan, sock: socket.socket) -> NoReturn:
    """The start's own steps (process.py), from "root in the user namespace" to execve."""
    code = RUNTIME_ERROR
    try:
        process.become_namespace_root()  # setresuid(0) inside; parent-death signal, not dumpable
        os.setsid()
        if exec_plan.tty:
            master, slave = tty.open_pty_in_container()
            sync.send(sock, "pty", fds=[master])
            os.close(master)
            tty.make_controlling_terminal(slave)
        elif exec_plan.stdio is None:  # -d: docker discards what a detached exec says
            _null_stdio()
        else:
            _pipe_stdio(exec_plan.stdio)
        import resource  # loaded by limits_of, before the mount namespace changed (sys.modules)

        for resource_, soft, hard in exec_plan.rlimits:
            # Raising a hard limit needs CAP_SYS_RESOURCE in the host's user namespace
            # (setrlimit(2)): where the caller's is lower, the caller's stays.
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource_, (soft, hard))
        os.umask(0o022)  # the container's umask, not the caller's (docker's default, as PID 1's)
        user = process.find_user(exec_plan.user)
        security.before_user_switch(exec_plan.security)  # the order matters: minirun/security/__init__.py
        process.switch_user(user)
        security.after_user_switch(exec_plan.security, user.uid)
        trace.mark("exec: bounding set, seccomp, user, capabilities", "child", security=exec_plan.security)
        # A parent-death signal set after the parent died sends nothing: minirun may have died
        # after "go" and before become_namespace_root, or while switch_user's setresuid had
        # cleared the signal (prctl(2)). Its end of the socket is closed then: never run alone.
        if process.peer_gone(sock):
            os._exit(code)
        if exec_plan.detach:
            # exec -d outlives `minirun exec`; it still dies with the container (its PID namespace,
            # its cgroup, or without either stragglers.py).
            kernel.prctl(kernel.PR_SET_PDEATHSIG, 0)
        try:
            os.chdir(exec_plan.cwd)
        except OSError as e:
            raise MinirunError(f"exec: chdir to {exec_plan.cwd}: {e.strerror}", 126) from None
        env = _with_defaults(exec_plan, user)
        process.reset_signals()
        kernel.close_range_cloexec(3)  # only 0, 1, 2 reach the command (CVE-2024-21626)
        trace.mark("exec: execve", "child", argv=exec_plan.argv)
        pid1.execute(exec_plan.argv, env)
    except MinirunError as e:
        code = e.code
        _report(sock, code, str(e))
    except BaseException as e:
        _report(sock, code, f"exec: {e}")
    os._exit(code)


def _null_stdio() -> None:
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def _pipe_stdio(stdio: process.Stdio) -> None:
    """minirun's pipes on 0, 1, 2 (stdin /dev/null without -i), its own ends closed."""
    stdin = stdio.stdin if stdio.stdin >= 0 else os.open("/dev/null", os.O_RDONLY)
    for fd, target in ((stdin, 0), (stdio.stdout, 1), (stdio.stderr, 2)):
        os.dup2(fd, target)
    for fd in {stdin, stdio.stdout, stdio.stderr, *stdio.monitor_ends} - {0, 1, 2}:
        os.close(fd)


def _with_defaults(exec_plan: ExecPlan, user: process.User) -> list[str]:
    """docker's exec environment: the container's, -e over it, HOSTNAME, HOME and TERM (-t)."""
    names = {e.split("=", 1)[0] for e in exec_plan.env}
    defaults = [f"HOSTNAME={exec_plan.hostname}", f"HOME={user.home}",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    if exec_plan.tty:
        defaults.append("TERM=xterm")
    return [d for d in defaults if d.split("=", 1)[0] not in names] + list(exec_plan.env)


def _report(sock: socket.socket, code: int, message: str) -> None:
    with contextlib.suppress(OSError):
        sync.send_error(sock, code, message)
