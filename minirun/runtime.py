"""The story of one container, told from the parent's side: create, start, wait, clean up.

`minirun run` is the container's monitor for its whole life (there is no daemon): it records
the container, clones the child into new namespaces, finishes the set-up only the parent can
do (id maps, cgroup), lets the child go, then waits, forwards signals, relays the terminal,
and records the exit. The child's side of the same story is minirun/process.py; the protocol
between them is the table in minirun/sync.py.
"""

import contextlib
import os
import shutil
import signal
import socket
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from minirun import cgroups, images, kernel, paths, process, state, sync, tty, userns
from minirun.cgroups import Cgroup
from minirun.errors import MinirunError
from minirun.init import exit_code
from minirun.rootfs import RootfsPlan
from minirun.spec import ContainerSpec, env_dict
from minirun.state import Record

# Signals `minirun run` passes on to the container, as `docker run --sig-proxy` does.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def namespaces(spec: ContainerSpec) -> int:
    """The namespaces clone(2) creates. The cgroup namespace comes later (process.py)."""
    flags = (kernel.CLONE_NEWUSER | kernel.CLONE_NEWPID | kernel.CLONE_NEWNS | kernel.CLONE_NEWUTS
             | kernel.CLONE_NEWIPC)
    if spec.network != "host":
        flags |= kernel.CLONE_NEWNET
    return flags


def command_line(spec: ContainerSpec, config: images.ImageConfig) -> list[str]:
    """docker's rule: ENTRYPOINT + CMD, where `run IMAGE ARGS` replaces CMD and --entrypoint
    replaces ENTRYPOINT (and then also drops the image's CMD)."""
    entrypoint = config.entrypoint if spec.entrypoint is None else spec.entrypoint
    cmd = spec.command or (config.cmd if spec.entrypoint is None else [])
    argv = [*entrypoint, *cmd]
    if not argv:
        raise MinirunError("no command specified and the image has no default command")
    return argv


def merge_env(image_env: list[str], user_env: list[str]) -> list[str]:
    return [f"{k}={v}" for k, v in env_dict([*image_env, *user_env]).items()]


def check_user_mapped(spec: ContainerSpec, mapping: userns.IdMapping) -> None:
    """Refuse early a numeric --user the user namespace cannot represent."""
    if spec.user is None:
        return
    name, _, group = spec.user.partition(":")
    uid_unmapped = name.isdigit() and not mapping.maps_uid(int(name))
    gid_unmapped = group.isdigit() and not mapping.maps_gid(int(group))
    if uid_unmapped or gid_unmapped:
        raise MinirunError(f"--user {spec.user} is not mapped into the container: rootless containers need a "
                           "subordinate range in /etc/subuid and /etc/subgid (and newuidmap/newgidmap) for "
                           "ids other than 0")


# --- the container's directory ("bundle"): layer, scratch and /etc files ---------------------


def etc_files(bundle: Path, hostname: str, network: str) -> dict[str, str]:
    """Write the files docker provides in every container, and say where they go."""
    if network == "host":
        hosts = Path("/etc/hosts").read_text()
    else:
        hosts = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                 f"127.0.1.1\t{hostname}\n")
    resolv = ""
    with contextlib.suppress(OSError):
        for line in Path("/etc/resolv.conf").read_text().splitlines(keepends=True):
            # A loopback resolver (systemd-resolved's 127.0.0.53) is unreachable from a private
            # network namespace: its own lo has nothing listening.
            if network != "host" and line.split()[:1] == ["nameserver"] and line.split()[1:2] and (
                    line.split()[1].startswith("127.") or line.split()[1] == "::1"):
                continue
            resolv += line
    files = {"/etc/hostname": f"{hostname}\n", "/etc/hosts": hosts, "/etc/resolv.conf": resolv}
    for target, content in files.items():
        (bundle / Path(target).name).write_text(content)
    return {target: str(bundle / Path(target).name) for target in files}


def make_bundle(record: Record) -> Path:
    """The container's directory, under a 0700 parent: host users must not reach setuid
    programs or secrets in a container's layer (CVE-2021-41091, docker's data-root mode)."""
    bundle = Path(record.bundle)
    bundle.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(bundle.parent, 0o700)
    for name in ("upper", "work", "merged"):
        (bundle / name).mkdir(parents=True, exist_ok=True)
    return bundle


def remove_bundle(bundle: Path) -> None:
    """Remove the container's directory. overlay's work dir keeps a `work/work` directory with
    mode 000 that even its owner must chmod before it can be removed."""
    if not bundle.exists():
        return
    for root, dirs, _ in os.walk(bundle):
        for d in dirs:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(root, d), 0o700, follow_symlinks=False)
    shutil.rmtree(bundle, ignore_errors=True)


# --- the run ----------------------------------------------------------------------------------


def run(spec: ContainerSpec) -> int:
    rootless = paths.is_rootless()
    userns.check_kernel_allows(rootless)
    store, state_dir = paths.store_dir(), paths.state_dir()
    image = images.resolve(store, spec.image)
    mapping = userns.plan(rootless)
    check_user_mapped(spec, mapping)
    argv = command_line(spec, image.config)
    env = merge_env(image.config.env, spec.env)
    cwd = spec.workdir or image.config.working_dir or "/"
    user = spec.user or image.config.user or None

    def new_record(container_id: str, name: str) -> Record:
        hostname = spec.hostname or (os.uname().nodename if spec.network == "host" else container_id[:12])
        return Record(
            id=container_id, name=name, image=spec.image, image_id=image.id, command=argv,
            created=state.now(), rootless=rootless, bundle=str(store / "containers" / container_id),
            monitor_pid=os.getpid(), monitor_start=state.process_start_time(os.getpid()) or 0,
            config={"Hostname": hostname, "Env": env, "Cmd": argv, "Image": spec.image, "User": user or "",
                    "WorkingDir": cwd, "Tty": spec.tty, "OpenStdin": spec.interactive},
            host_config={"Binds": [f"{b.source}:{b.target}{':ro' if b.readonly else ''}" for b in spec.binds],
                         "NetworkMode": spec.network, "AutoRemove": spec.remove, "Init": spec.init},
        )

    record = state.create(state_dir, new_record, spec.name)
    cgroup: Cgroup | None = None
    try:
        bundle = make_bundle(record)
        hostname = record.config["Hostname"]
        plan = process.ProcessPlan(
            argv=argv, env=env, cwd=cwd, user=user, hostname=hostname,
            rootfs=RootfsPlan(
                layers=[str(p) for p in image.layers], upper=str(bundle / "upper"), work=str(bundle / "work"),
                merged=str(bundle / "merged"), binds=spec.binds,
                etc_files=etc_files(bundle, hostname, spec.network), own_netns=spec.network != "host",
                tty_gid=5 if mapping.maps_gid(5) else None),
            own_netns=spec.network != "host", tty=spec.tty, interactive=spec.interactive, init=spec.init)
        cgroup = cgroups.create(record.id, rootless)
        if cgroup is not None:
            state.update(state_dir, record, cgroup_paths=[str(p) for p in cgroup.paths])
        return start_and_wait(state_dir, record, plan, mapping, cgroup, namespaces(spec))
    finally:
        teardown(state_dir, record, cgroup, remove=spec.remove)


def start_and_wait(state_dir: Path, record: Record, plan: process.ProcessPlan, mapping: userns.IdMapping,
                   cgroup: Cgroup | None, flags: int) -> int:
    parent_end, child_end = sync.channel()
    pid = kernel.clone(flags)
    if pid == 0:
        parent_end.close()
        process.run_child(plan, child_end)  # never returns
    child_end.close()
    with parent_end, forwarding_signals(pid), _kill_on_error(pid):
        # sync step 2: what only the parent can do, then let the child go.
        userns.write_maps(pid, mapping)
        if cgroup is not None:
            cgroups.add_process(cgroup, pid)
        sync.send(parent_end, sync.GO)
        master = wait_until_started(parent_end, pid, state_dir, record)
        state.update(state_dir, record, status="running", pid=pid, started_at=state.now())
        if master is not None:
            try:
                tty.relay(master, stdin_open=plan.interactive)
            finally:
                os.close(master)
        _, status = os.waitpid(pid, 0)
    code = exit_code(status)
    state.update(state_dir, record, status="exited", exit_code=code, finished_at=state.now(),
                 oom_killed=False)
    return code


def wait_until_started(sock: socket.socket, pid: int, state_dir: Path, record: Record) -> int | None:
    """sync steps 4-6: receive the pty (with -t), then EOF (exec done) or an error."""
    master = None
    while True:
        message, fd = sync.receive(sock)
        if message == sync.PTY and fd is not None:
            master = fd
        elif message.startswith(sync.ERROR):
            error = sync.parse_error(message)
            os.waitpid(pid, 0)
            if master is not None:
                os.close(master)
            state.update(state_dir, record, status="created", exit_code=error.code, error=str(error))
            raise error
        elif message == b"":
            return master


@contextlib.contextmanager
def forwarding_signals(pid: int) -> Iterator[None]:
    """While the container runs, signals sent to minirun go to the container's PID 1."""
    def forward(number: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, number)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _kill_on_error(pid: int) -> Iterator[None]:
    """If the parent fails half-way, the child must not outlive the failure."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        raise


def teardown(state_dir: Path, record: Record, cgroup: Cgroup | None, remove: bool) -> None:
    """After the container's PID 1 exits: the kernel has already killed the rest of its PID
    namespace and unmounted its mount namespace; what is left is ours to remove."""
    if cgroup is not None:
        cgroups.remove(cgroup)
    if remove:
        remove_container(state_dir, record)


def remove_container(state_dir: Path, record: Record) -> None:
    """Everything a container leaves on disk: cgroups (if its monitor died), layer, record."""
    if record.cgroup_paths:
        cgroups.remove(cgroups.from_paths(record.cgroup_paths))
    remove_bundle(Path(record.bundle))
    state.delete(state_dir, record)


def kill(record: Record, sig: int = signal.SIGKILL) -> None:
    """Signal a running container's PID 1 (SIGKILL ends the whole PID namespace)."""
    if record.status == "running" and record.pid and record.monitor_alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, sig)


def record_json(record: Record) -> dict[str, object]:
    """A record in the shape of `docker inspect`."""
    raw = asdict(record)
    return {
        "Id": record.id, "Name": "/" + record.name, "Created": record.created,
        "Path": record.command[0] if record.command else "", "Args": record.command[1:],
        "Image": record.image_id, "ImageName": record.image,
        "State": {"Status": record.status, "Running": record.status == "running",
                  "Pid": record.pid if record.status == "running" else 0, "ExitCode": record.exit_code,
                  "OOMKilled": record.oom_killed, "Error": record.error, "StartedAt": record.started_at,
                  "FinishedAt": record.finished_at, "Dead": record.dead},
        "Config": raw["config"], "HostConfig": raw["host_config"],
        "GraphDriver": {"Name": "overlay", "Data": {"UpperDir": f"{record.bundle}/upper",
                                                   "WorkDir": f"{record.bundle}/work"}},
        "Rootless": record.rootless,
    }

