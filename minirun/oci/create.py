"""`minirun-oci create [--bundle B] [--pid-file F] [--console-socket S] ID`: everything up to the
user's program, which then waits at the exec fifo until `start` (the table in __init__.py).

The parent's side of minirun/runtime.py's launch, for a bundle: decide (config.json, seccomp
filter), make the record and the cgroup, clone, do what only the parent can (id maps, cgroup,
oom_score_adj), "go", wait for the child's EOF, record, hooks, exit. On any failure nothing
is left: the child is killed, the cgroup and the record removed.
"""

import contextlib
import json
import os
import resource
import signal
import socket
import time
from pathlib import Path
from typing import Any

from minirun import helper, kernel, paths, state, sync, trace, userns
from minirun.errors import MinirunError
from minirun.oci import cgroup, child, config, hooks, record
from minirun.oci.config import NAMESPACE_FLAGS, Config


def seccomp_filter(cfg: Config, where: Path) -> bytes | None:
    """linux.seccomp compiled to BPF by minirun/security/seccomp.py (the OCI form is Docker's,
    with a list of architectures instead of Docker's archMap)."""
    if cfg.seccomp is None:
        return None
    from minirun.security import seccomp
    from minirun.security.capabilities import NUMBERS

    profile: dict[str, Any] = dict(cfg.seccomp)
    profile.setdefault("syscalls", [])
    arches = profile.pop("architectures", None) or []
    if arches:
        native = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}.get(os.uname().machine, "")
        profile["archMap"] = [
            {"architecture": native, "subArchitectures": [a for a in arches if a != native]}
        ]
    # Several conditions on one argument mean "any of them" in the spec, while libseccomp takes
    # the conditions of one rule together and refuses two on the same argument: one rule each.
    split = []
    for rule in profile["syscalls"]:
        args = rule.get("args") or []
        if len({a.get("index") for a in args}) < len(args):
            split += [{**rule, "args": [a]} for a in args]
        else:
            split.append(rule)
    profile["syscalls"] = split
    for key in ("flags", "listenerPath", "listenerMetadata"):
        profile.pop(key, None)
    path = where / "seccomp.json"
    path.write_text(json.dumps(profile))
    caps = cfg.process.capabilities.bounding if cfg.process.capabilities else frozenset(NUMBERS)
    return seccomp.compiled(str(path), caps, paths.store_dir() / "seccomp")  # minirun's own cache


def open_join_fds(cfg: Config) -> dict[str, int]:
    fds = {}
    for kind, path in cfg.namespaces.items():
        if path:
            try:
                fds[kind] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                for fd in fds.values():
                    os.close(fd)
                raise MinirunError(f"namespace {kind} path {path}: {e.strerror}") from None
    return fds


def connect_console(path: str | None) -> int:
    if not path:
        return -1
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise MinirunError(f"--console-socket {path}: {e.strerror}") from None
    return sock.detach()


def preserved_fds(count: int) -> int:
    """--preserve-fds N (runc's): fds 3 .. 3+N-1 of this process go to the container's program
    as they are. Checked before this process opens anything: each must be open now, or a number
    in the range could become one of minirun's own fds and reach the program."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if count < 0 or 3 + count > limit:
        raise MinirunError(f"--preserve-fds {count}: a number from 0 to {limit - 3} is needed")
    for fd in range(3, 3 + count):
        try:
            os.fstat(fd)
        except OSError:
            raise MinirunError(f"--preserve-fds {count}: fd {fd} is not open") from None
    return count


def run(root: str, container_id: str, bundle: str, pid_file: str | None, console_socket: str | None,
        preserve_fds: int = 0, systemd_cgroup: bool = False) -> int:
    preserve = preserved_fds(preserve_fds)
    cfg = config.load(bundle)
    trace.mark("oci: config.json", config=cfg)
    if cfg.process.terminal and not console_socket:
        raise MinirunError("process.terminal is true: --console-socket is required")
    where = record.directory(root, container_id)
    Path(root).mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        where.mkdir(mode=0o700)
    except FileExistsError:
        raise MinirunError(f"container {container_id} already exists") from None
    dirs: list[Path] = []
    made: list[Path] = []  # the cgroup directories this create made, as it makes them
    pid = pidfd = -1
    try:
        dirs = cgroup.places(cfg.cgroups_path, container_id, systemd_cgroup)
        to_make = cgroup.missing(dirs)
        base = {
            "ociVersion": "1.0.2",
            "id": container_id,
            "bundle": cfg.bundle,
            "rootfs": cfg.root,
            "created": state.now(),
            "annotations": cfg.annotations,
            "cgroup_paths": [str(p) for p in dirs],
            "cgroup_made": [str(p) for p in to_make],  # delete removes these, and only these
            "hooks": hooks.to_json(cfg.hooks),
            "default_cgroup": cfg.cgroups_path is None and not systemd_cgroup,
            "systemd_cgroup": systemd_cgroup,
            "has_process": cfg.has_process,
        }
        # Written before anything else exists, naming what will: if this process is SIGKILLed
        # half-way, `state` says "stopped" once we are gone and `delete` finds the cgroup.
        me = os.getpid()
        record.save(root, container_id, {**base, "pid": 0, "creator": me,
                                         "creator_start": state.process_start_time(me)})
        bpf = seccomp_filter(cfg, where)
        trace.mark("oci: seccomp", seccomp=cfg.seccomp, bpf=bpf)
        joined = cgroup.create(dirs, to_make, made)
        cgroup.apply(joined, cfg.resources)
        trace.mark("oci: cgroup", cgroup=joined, cgroups_path=cfg.cgroups_path, resources=cfg.resources,
                   systemd=systemd_cgroup)
        fifo_path = record.fifo(root, container_id)
        os.mkfifo(fifo_path, 0o622)
        os.chmod(fifo_path, 0o622)  # whoever the program runs as may open it for writing
        fifo_fd = os.open(fifo_path, os.O_PATH | os.O_CLOEXEC)
        trace.mark("oci: exec fifo", fifo=str(fifo_path))
        shown = {
            "ociVersion": "1.0.2",
            "id": container_id,
            "status": "creating",
            "pid": 0,
            "bundle": cfg.bundle,
            "annotations": cfg.annotations,
        }
        plan = child.ChildPlan(cfg, bpf, fifo_fd, connect_console(console_socket), open_join_fds(cfg), shown,
                               preserve, str(fifo_path), child.open_host_proc(cfg.process.apparmor_profile))
        parent_end, child_end = sync.channel()
        pid = clone_child(cfg, plan.join_fds)
        if pid == 0:
            parent_end.close()
            child.run(plan, child_end)
        child_end.close()
        trace.mark("clone", pid=pid, flags=cfg.clone_flags())
        pidfd = os.pidfd_open(pid)
        for fd in [*plan.join_fds.values(), plan.console_fd, fifo_fd, plan.host_proc]:
            if fd >= 0:
                os.close(fd)
        with parent_end:
            if cfg.namespaces.get("user") == "" and "user" in cfg.namespaces:
                maps = userns.IdMapping(tuple(cfg.uid_mappings), tuple(cfg.gid_mappings), helpers=False)
                userns.write_maps(pid, maps)
                trace.mark("id maps", pid=pid)
            for path in joined.paths:
                (path / "cgroup.procs").write_text(str(pid))
            trace.mark("join cgroup", pid=pid)
            set_oom_score_adj(pid, cfg.process.oom_score_adj)
            sync.send(parent_end, "go")
            trace.mark("oci: go")
            answer = sync.receive(parent_end)
            for fd in answer.fds:
                os.close(fd)
            if answer.name == "error":
                raise sync.error_of(answer)
            if answer.name != sync.EOF:
                raise MinirunError(f"sync: expected error or EOF, got {answer.name}")
            if os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                raise MinirunError("the container's process died while it was set up")
        data = {**base, "pid": pid, "start_time": state.process_start_time(pid)}
        record.save(root, container_id, data)
        public = record.public(root, container_id, data)
        hooks.run("createRuntime", cfg.hooks.get("createRuntime", []), public)
        if pid_file:
            write_pid_file(pid_file, pid)
        trace.mark("oci: created", pid=pid, record=str(where / "state.json"), pid_file=pid_file,
                   hooks=len(cfg.hooks.get("createRuntime", [])))
    except BaseException:
        if pidfd >= 0:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, 0)
        cgroup.remove([str(p) for p in dirs], [str(p) for p in made], kill=pid > 0)
        if systemd_cgroup:
            cgroup.remove_slices([str(p) for p in dirs])
        elif cfg.cgroups_path is None:
            remove_default_parent(dirs)
        record.remove(root, container_id)
        raise
    return 0


def clone_child(cfg: Config, join_fds: dict[str, int]) -> int:
    """clone(2) with config.json's new namespaces, from inside those it joins by path that must
    come first: 0 in the child, its pid here."""
    if cfg.namespaces.get("user"):  # joined: the new namespaces must be made inside it
        return clone_in_user_namespace(join_fds["user"], join_fds.get("pid"), cfg.clone_flags())
    if cfg.namespaces.get("pid"):  # joined: pid_for_children, so before clone (setns(2))
        kernel.setns(join_fds["pid"], NAMESPACE_FLAGS["pid"])
    return kernel.clone(cfg.clone_flags())


def clone_in_user_namespace(user_fd: int, pid_fd: int | None, flags: int) -> int:
    """clone(flags) from inside the user namespace `user_fd` names (a pod's, by path): a namespace
    belongs to the user namespace of the process that makes it (user_namespaces(7)), and the
    child, root of the joined one only, could not sethostname or mount in namespaces made by host
    root (EPERM). A helper joins it (create itself keeps the host's capabilities for the rest),
    and the PID namespace `pid_fd` for its children if given, and clones with CLONE_PARENT, so
    the child is create's own. The helper stays in our PID namespace, so the pid it reports is
    one of ours (a helper inside the joined one would give the pid there). 0 in the child, its
    pid here."""
    joins = [(user_fd, NAMESPACE_FLAGS["user"])]
    if pid_fd is not None:
        joins.append((pid_fd, NAMESPACE_FLAGS["pid"]))
    return helper.clone_joined(joins, flags, "join the user namespace")


def set_oom_score_adj(pid: int | str, value: int | None) -> None:
    """process.oomScoreAdj, written by the runtime, with its own privileges, never by the program:
    lowering it needs CAP_SYS_RESOURCE in the host's user namespace, which the program may lack
    (proc(5)). create writes its process's (pid); exec's helper its own ("self") before it joins
    the container and clones the process, which inherits the value (fork(2)), as runc's nsexec."""
    if value is not None:
        Path(f"/proc/{pid}/oom_score_adj").write_text(str(value))


def write_pid_file(path: str, pid: int) -> None:
    """Atomically, as runc: conmon reads it as soon as create returns."""
    path = os.path.abspath(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.replace(tmp, path)


def remove_default_parent(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # /minirun-oci goes with its last container


def wait_gone(data: dict[str, Any], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while record.alive(data):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
