"""`minirun-oci exec [--process P.json | ID CMD...] [--detach] [--tty --console-socket S]
[--pid-file F] ID`: one more process in a running container (runtime.md leaves exec to runtimes;
this is runc's command line, which conmon uses for `podman exec`).

The same steps as minirun/enter.py, for a container without a minirun record:
  1 exec     pidfd of the container's process (checked against its start time)
  2 helper   (forked) not dumpable; process.oomScoreAdj (what it clones inherits it); joins the
             container's cgroups, then setns(pidfd, every namespace of the process that differs
             from ours) in one call (Linux 5.8; the user namespace first)
  3 helper   clone(CLONE_PARENT): the PID namespace applies to children only, and the new
             process becomes exec's own child; the helper reports its pid and exits
  4 process  root in the user namespace; a new session (with --tty a pty from the container's
             devpts, its master sent to --console-socket); rlimits; the container's seccomp,
             process.json's user and capabilities; cwd; signals reset; fds >= 3 close-on-exec
             but --preserve-fds N's 3 .. 3+N-1;
             execve (EOF on the sync socket) or "error CODE MESSAGE"
  5 exec     --pid-file; with --detach return now (conmon, the subreaper, reaps it), else wait
             and exit with its code (128+N for signal N)
"""

import argparse
import contextlib
import json
import os
import resource
import signal
import socket
from pathlib import Path
from typing import NoReturn

from minirun import helper, kernel, pid1, process, state, sync, trace, tty
from minirun.cgroups import Cgroup
from minirun.errors import RUNTIME_ERROR, MinirunError
from minirun.oci import child, config, create, record
from minirun.oci.config import NAMESPACE_FLAGS, PROC_NS, Process


def process_of(args: argparse.Namespace, cfg: config.Config) -> Process:
    if args.process:
        try:
            raw = json.loads(Path(args.process).read_text())
        except (OSError, ValueError) as e:
            raise MinirunError(f"--process {args.process}: {e}") from None
        return config.parse_process(raw)
    if not args.command:
        raise MinirunError("exec: --process or a command is needed")
    base = cfg.process
    env = [*base.env, *args.env]
    uid, gid = base.uid, base.gid
    if args.user:
        name, _, group = args.user.partition(":")
        if not name.isdigit() or (group and not group.isdigit()):
            raise MinirunError(f"exec --user {args.user!r}: numeric UID[:GID] expected")
        uid = config.check_user_id(int(name), "exec --user")
        gid = config.check_user_id(int(group or 0), "exec --user")
    return Process(
        args=list(args.command),
        env=env,
        cwd=args.cwd or base.cwd,
        uid=uid,
        gid=gid,
        additional_gids=[],
        umask=base.umask,
        capabilities=base.capabilities,
        rlimits=base.rlimits,
        no_new_privileges=base.no_new_privileges,
        oom_score_adj=base.oom_score_adj,  # (runc: config.json's process, with the flags over it)
        terminal=args.tty,
    )


def namespaces_to_join(pid: int) -> int:
    flags = 0
    for kind, name in PROC_NS.items():
        try:
            theirs, ours = os.stat(f"/proc/{pid}/ns/{name}"), os.stat(f"/proc/self/ns/{name}")
        except OSError:
            continue
        if (theirs.st_dev, theirs.st_ino) != (ours.st_dev, ours.st_ino):
            flags |= NAMESPACE_FLAGS[kind]
    return flags


def run(root: str, args: argparse.Namespace) -> int:
    preserve = create.preserved_fds(args.preserve_fds)  # before this process opens anything
    data = record.load(root, args.id)
    current = record.status(root, args.id, data)
    if current not in ("running", "created"):
        raise MinirunError(f"cannot exec in container {args.id}: it is {current}")
    cfg = config.load(data["bundle"])
    proc = process_of(args, cfg)
    if proc.terminal and not args.console_socket:
        raise MinirunError("exec --tty needs --console-socket")
    bpf = create.seccomp_filter(cfg, record.directory(root, args.id))
    pid = data["pid"]
    pidfd = os.pidfd_open(pid)
    if state.process_start_time(pid) != data.get("start_time"):
        raise MinirunError(f"container {args.id}: its process is gone")
    flags = namespaces_to_join(pid)
    trace.mark("oci: exec plan", pid=pid, flags=flags, process=proc, bpf=bpf)
    console = create.connect_console(args.console_socket if proc.terminal else None)
    ours, theirs = sync.channel()
    report_r, report_w = os.pipe()
    helper_pid = os.fork()
    if helper_pid == 0:
        ours.close()
        os.close(report_r)
        paths = data.get("cgroup_paths", [])
        helper_main(proc, bpf, pidfd, flags, paths, console, theirs, report_w, args.detach, preserve)
    theirs.close()
    os.close(report_w)
    if console >= 0:
        os.close(console)
    text = helper.answer(report_r, helper_pid)
    if not text.isdigit():
        message = sync.receive(ours)
        raise (
            sync.error_of(message)
            if message.name == "error"
            else MinirunError(f"exec: {text or 'helper died'}")
        )
    target = int(text)
    with ours:
        message = sync.receive(ours)
    if message.name == "error":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(target, 0)
        raise sync.error_of(message)
    if args.pid_file:
        create.write_pid_file(args.pid_file, target)
    if args.detach:
        return 0
    while True:
        try:
            _, status = os.waitpid(target, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def helper_main(
    proc: Process,
    bpf: bytes | None,
    pidfd: int,
    flags: int,
    cgroup_paths: list[str],
    console: int,
    sock: socket.socket,
    report: int,
    detach: bool,
    preserve_fds: int,
) -> NoReturn:
    try:
        kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)
        # Not dumpable before it joins anything (helper.not_dumpable; CVE-2016-9962 too): the
        # process it clones next is born in the container's namespaces with this flag.
        helper.not_dumpable()
        create.set_oom_score_adj("self", proc.oom_score_adj)  # still the runtime's privileges
        host_proc = child.open_host_proc(proc.apparmor_profile)  # before the container's /proc
        for path in cgroup_paths:
            with contextlib.suppress(OSError):
                Path(path, "cgroup.procs").write_text(str(os.getpid()))
        kernel.setns(pidfd, flags)
        helper.not_dumpable()  # again: a change of credentials may have reset it
        trace.mark("exec: cgroup, setns", "helper", flags=flags,
                   cgroup=Cgroup(tuple(Path(p) for p in cgroup_paths)))
        pid = kernel.clone(kernel.CLONE_PARENT)
        if pid == 0:
            os.close(report)
            process_main(proc, bpf, flags, console, sock, detach, preserve_fds, host_proc)
        os.write(report, str(pid).encode())
        os._exit(0)
    except BaseException as e:
        with contextlib.suppress(OSError):
            sync.send_error(sock, RUNTIME_ERROR, f"exec: cannot enter the container: {e}")
        os._exit(RUNTIME_ERROR)


def process_main(proc: Process, bpf: bytes | None, flags: int, console: int, sock: socket.socket,
                 detach: bool, preserve_fds: int, host_proc: int) -> NoReturn:
    code = RUNTIME_ERROR
    try:
        if flags & kernel.CLONE_NEWUSER:
            process.become_namespace_root()
        else:
            process.guard_process()
        os.setsid()
        if proc.terminal:
            tty.make_controlling_terminal(child.pty_to_console_socket(console))
        for kind, soft, hard in proc.rlimits:
            resource.setrlimit(kind, (soft, hard))
        process.reset_signals()
        child.close_inherited_fds(preserve_fds)
        child.apparmor_on_exec(host_proc, proc.apparmor_profile)
        child.apply_security(proc, bpf)
        trace.mark("oci: capabilities, seccomp, user", "child", bpf=bpf, nnp=proc.no_new_privileges)
        try:
            os.chdir(proc.cwd)
        except OSError as e:
            raise MinirunError(f"process.cwd {proc.cwd}: {e.strerror}") from None
        if detach:  # exec returns at once: the process outlives it (conmon, the subreaper, reaps it)
            kernel.prctl(kernel.PR_SET_PDEATHSIG, 0)
        trace.mark("oci: execve", "child", argv=proc.args, preserved=preserve_fds)
        pid1.execute(proc.args, proc.env)
    except MinirunError as e:
        code = e.code
        with contextlib.suppress(OSError):
            sync.send_error(sock, code, str(e))
    except BaseException as e:
        with contextlib.suppress(OSError):
            sync.send_error(sock, code, f"exec failed: {e}")
    os._exit(code)
