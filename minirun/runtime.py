"""The story of one container's start, told from the parent's side, top to bottom.

prepare (flags, image, id maps: nothing created yet) -> create_record ("created") -> start:
attached (`minirun run`) this process becomes the container's monitor; detached (`run -d`,
`start`) it forks one that leaves the caller's session (become_monitor). Either way `launch`
makes the bundle and the cgroup, clones the child into new namespaces, finishes the set-up
only the parent can do (id maps, cgroup, network), lets the child go and waits until the
command runs. What follows, until the container exits, is minirun/monitor.py. The child's side
of the same story is minirun/process.py; the protocol between them is the table in
minirun/sync.py; what a container is on disk and in its record, minirun/container.py.
"""

import contextlib
import fcntl
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from minirun import (
    cgroups,
    container,
    idranges,
    images,
    kernel,
    monitor,
    network,
    paths,
    process,
    sharing,
    state,
    sync,
    trace,
    userns,
)
from minirun.cgroups import Cgroup
from minirun.enter import security_record
from minirun.errors import RUNTIME_ERROR, MinirunError
from minirun.rootfs import RootfsPlan
from minirun.security import plan as security_plan
from minirun.spec import ContainerSpec, env_dict
from minirun.state import Record

# Signals `minirun run` passes on to the container, as `docker run --sig-proxy` does.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def command_line(spec: ContainerSpec, config: images.ImageConfig) -> list[str]:
    """docker's rule: ENTRYPOINT + CMD, where `run IMAGE ARGS` replaces CMD and --entrypoint
    replaces ENTRYPOINT (and then also drops the image's CMD)."""
    entrypoint = config.entrypoint if spec.entrypoint is None else spec.entrypoint
    cmd = spec.command or (config.cmd if spec.entrypoint is None else [])
    argv = [*entrypoint, *cmd]
    if not argv:
        raise MinirunError("no command specified and the image has no default command")
    return argv


def merge_env(image_env: Sequence[str], user_env: Sequence[str]) -> list[str]:
    return [f"{k}={v}" for k, v in env_dict([*image_env, *user_env]).items()]


def check_user_mapped(spec: ContainerSpec, mapping: userns.IdMapping) -> None:
    """Refuse early a numeric --user the user namespace cannot represent."""
    if spec.user is None:
        return
    name, _, group = spec.user.partition(":")
    uid_unmapped = name.isdigit() and not mapping.maps_uid(int(name))
    gid_unmapped = group.isdigit() and not mapping.maps_gid(int(group))
    if (uid_unmapped or gid_unmapped) and mapping.idmap_layers:  # rootful, remapped: ids 0-65535
        raise MinirunError(f"--user {spec.user} is not mapped into the container: a remapped root maps ids "
                           f"0-{mapping.uids[0].count - 1} (use --userns=auto:size=N or --userns=host "
                           "for others)")
    if uid_unmapped or gid_unmapped:
        raise MinirunError(f"--user {spec.user} is not mapped into the container: rootless containers need a "
                           "subordinate range in /etc/subuid and /etc/subgid (and newuidmap/newgidmap) for "
                           "ids other than 0")


def limits_json(spec: ContainerSpec) -> dict[str, object]:
    """The limits in `docker inspect`'s HostConfig fields (0: not set)."""
    limits = spec.limits
    return {"Memory": limits.memory or 0, "MemorySwap": limits.memory_swap or 0,
            "NanoCpus": round((limits.cpus or 0) * 1e9), "CpuShares": limits.cpu_shares or 0,
            "CpusetCpus": limits.cpuset_cpus or "", "CpusetMems": limits.cpuset_mems or "",
            "PidsLimit": limits.pids or 0, "CgroupnsMode": spec.cgroupns}


# --- the container's directory ("bundle"): layer, scratch and /etc files ---------------------


def etc_files(where: container.Layout, hostname: str, network: str,
              add_hosts: Sequence[tuple[str, str]] = (), dns: Sequence[str] = (),
              join_bundle: str = "") -> dict[str, str]:
    """Write the files docker provides in every container, and say where they go."""
    if network == "host":
        hosts = Path("/etc/hosts").read_text()
    else:
        hosts = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                 f"127.0.1.1\t{hostname}\n")
    if join_bundle:  # container:NAME shares the other container's network, and its view of it
        with contextlib.suppress(OSError):
            hosts = (Path(join_bundle) / "hosts").read_text()
    hosts += "".join(f"{ip}\t{name}\n" for name, ip in add_hosts or [])  # --add-host
    resolv = ""
    with contextlib.suppress(OSError):
        for line in Path("/etc/resolv.conf").read_text().splitlines(keepends=True):
            # A loopback resolver (systemd-resolved's 127.0.0.53) is unreachable from a private
            # network namespace: its own lo has nothing listening.
            if network != "host" and line.split()[:1] == ["nameserver"] and line.split()[1:2] and (
                    line.split()[1].startswith("127.") or line.split()[1] == "::1"):
                continue
            resolv += line
    if dns:  # --dns replaces the host's nameservers, keeps its search and options lines
        resolv = "".join(f"nameserver {ip}\n" for ip in dns) + "".join(
            line for line in resolv.splitlines(keepends=True) if line.split()[:1] != ["nameserver"])
    elif network == "slirp4netns" and "nameserver" not in resolv:
        resolv += "nameserver 10.0.2.3\n"  # slirp4netns's DNS forwarder reaches the host's resolver
    if join_bundle:
        with contextlib.suppress(OSError):
            resolv = (Path(join_bundle) / "resolv.conf").read_text()
    files = {"/etc/hostname": f"{hostname}\n", "/etc/hosts": hosts, "/etc/resolv.conf": resolv}
    for target, content in files.items():
        where.etc_file(target).write_text(content)
    return {target: str(where.etc_file(target)) for target in files}


def add_own_address(hosts_file: str, hostname: str, address: str) -> None:
    """Once the network has given the container an address, its host name resolves to it
    (before "go": the child bind-mounts the file only after it)."""
    path = Path(hosts_file)
    path.write_text(path.read_text().replace(f"127.0.1.1\t{hostname}\n", f"{address}\t{hostname}\n"))


# --- the run: decide, record, start, watch --------------------------------------------------------


class Prepared(NamedTuple):
    """Everything decided before anything is created: a bad flag or image fails here (125)."""

    spec: ContainerSpec
    image: images.Image
    mapping: userns.IdMapping
    net: network.NetworkPlan
    argv: list[str]
    env: list[str]
    cwd: str
    user: str | None
    rootless: bool
    store: Path
    state_dir: Path
    share: sharing.SharePlan  # the namespaces clone creates, the host's, or joined (sharing.py)
    cgroup_places: tuple[Path, ...]  # where its cgroup goes (cgroups.find_places), found once a run


def prepare(spec: ContainerSpec) -> Prepared:
    rootless = paths.is_rootless()
    userns.check_kernel_allows(rootless)
    store, state_dir = paths.store_dir(), paths.state_dir()
    net = network.choose(spec, rootless, state_dir)  # checked before anything is created
    spec = spec._replace(network=net.mode)  # "default" resolved to bridge, slirp4netns or none
    share = sharing.plan(spec, state_dir)  # the namespaces clone creates, the host's, or joined
    image = images.get(store, spec.image, spec.pull, spec.platform)  # pulls only if not local (--pull)
    trace.mark("image lookup")
    mapping = sharing.id_mapping(share, rootless) or userns.plan(rootless, spec.security.userns,
                                                                 spec.security.userns_size)
    check_user_mapped(spec, mapping)
    cgroup_places = cgroups.find_places(rootless)
    cgroups.check_limits_possible(spec.limits, rootless, cgroup_places)
    cgroups.check_not_frozen(cgroup_places)
    return Prepared(spec, image, mapping, net, command_line(spec, image.config),
                    merge_env(image.config.env, spec.env), spec.workdir or image.config.working_dir or "/",
                    spec.user or image.config.user or None, rootless, store, state_dir, share, cgroup_places)


def create_record(p: Prepared, options: container.Options) -> Record:
    """The "created" record, its id and name allocated under the lock (state.create)."""
    spec = p.spec

    def new_record(container_id: str, name: str) -> Record:
        id_range = claim_ids(p, container_id)  # under the state lock: a claim never outlives a kill
        on_host = spec.network == "host" or spec.uts == "host"
        hostname = spec.hostname or (os.uname().nodename if on_host else container_id[:12])
        return Record(
            id=container_id, name=name, image=spec.image, image_id=p.image.id, command=p.argv,
            created=state.now(), rootless=p.rootless, id_range=id_range,
            bundle=str(container.layout(p.store, container_id).bundle),
            monitor_pid=os.getpid(), monitor_start=state.process_start_time(os.getpid()) or 0,
            create_args=list(options.args),
            config={"Hostname": hostname, "Env": p.env, "Cmd": p.argv, "Image": spec.image,
                    "User": p.user or "", "WorkingDir": p.cwd, "Tty": spec.tty, "OpenStdin": spec.interactive,
                    "StopSignal": options.stop_signal
                    or container.image_stop_signal(p.image.config.stop_signal),
                    "StopTimeout": options.stop_timeout},
            host_config={"Binds": [f"{b.source}:{b.target}{':ro' if b.readonly else ''}" for b in spec.binds],
                         "NetworkMode": spec.network, "AutoRemove": spec.remove, "Init": spec.init,
                         "LogConfig": options.log_config(), "LayersMode": userns.shown_layers(p.mapping),
                         **limits_json(spec), **sharing.host_config(spec),
                         "UsernsMode": "" if p.rootless else userns_mode(spec),
                         "IDMappings": idranges.IdRange(*id_range).maps() if id_range else {}},
        )

    record = state.create(p.state_dir, new_record, spec.name, lambda cid: container.in_use(p.store, cid))
    trace.mark("state record")
    return record


def claim_ids(p: Prepared, container_id: str) -> list[int]:
    """The host ids of a rootful remapped container (the record's id_range): a range of its own
    claimed in the book (--userns=auto, minirun/idranges.py), the range of the container whose
    namespaces it joins (held by both), or the shared one."""
    if p.mapping.per_container:
        return idranges.allocate(p.state_dir, container_id, p.mapping.uids[0].count, p.store).as_list()
    if p.share.joins and not p.rootless and p.share.donors[0].record.id_range:
        donor_range = p.share.donors[0].record.id_range
        idranges.join(p.state_dir, container_id, idranges.IdRange(*donor_range))
        return list(donor_range)
    return userns.range_of(p.mapping)


def userns_mode(spec: ContainerSpec) -> str:
    """HostConfig.UsernsMode: auto:size=N, shared, host, or the container joined."""
    joined = next((m for m in (spec.network, spec.pid, spec.ipc) if m.startswith("container:")), "")
    if joined:
        return joined
    if spec.security.userns == "auto":
        return f"auto:size={spec.security.userns_size}"
    return spec.security.userns


def start(p: Prepared, record: Record, options: container.Options, attach: bool) -> int:
    """Start a created (or exited) container. Attached, this process is its monitor until it
    exits; detached, a monitor of its own is forked off, and we return once the command runs."""
    p = p._replace(mapping=userns.with_range(p.mapping, record.id_range))  # its own ids, kept for restarts
    if not attach:
        return start_detached(p, record, options)
    if p.spec.tty and p.spec.interactive and os.isatty(0):
        return start_on_terminal(p, record, options)
    hold_signals()
    try:
        if record.monitor_pid != os.getpid():  # `run` and `start` (state.claim) saved us as its monitor
            state.update(p.state_dir, record, monitor_pid=os.getpid(),
                         monitor_start=state.process_start_time(os.getpid()) or 0)
        started = launch(p, record, attached=True)
    except BaseException as e:
        # It never ran, and everything is torn down: a signal that came meanwhile decides the code.
        pending = held_signals()
        if pending:
            raise MinirunError(f"interrupted by {signal.Signals(pending[0]).name} before the container "
                               "started", 128 + pending[0]) from e
        raise
    watch = started.watch(p, record, options, attached=True)
    try:
        return monitor.supervise(watch)
    except BaseException:
        with contextlib.suppress(OSError):  # the monitor failed: the container must not outlive it
            signal.pidfd_send_signal(started.pidfd, signal.SIGKILL)
        raise


def hold_signals() -> None:
    """From the record until the command runs, the forwarded signals wait (pthread_sigmask(3)):
    one that arrived in between would be lost, or would interrupt the set-up half-way (a
    KeyboardInterrupt in the clone child: 125 "container setup failed:"). The clone child
    inherits the mask and clears it just before execve (process.reset_signals); the monitor
    clears it once it forwards (monitor.supervise), and then the pending signal reaches PID 1."""
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)


def start_detached(p: Prepared, record: Record, options: container.Options) -> int:
    """`run -d` / `start`: fork the monitor, let it start the container, and wait only for its
    word that the command was exec'd (or why not: then we exit with that code, 125/126/127)."""
    fork_monitor(p, record, options)
    return 0  # the monitor lives on; it was never ours to wait for


def fork_monitor(p: Prepared, record: Record, options: container.Options, listener: int = -1) -> int:
    """Fork the monitor (become_monitor), and return its pid once it says the command runs;
    raise its error (125/126/127, or 128+N if a held signal came) if it never did."""
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    child = os.fork()
    if child == 0:
        os.close(report_r)
        os._exit(become_monitor(p, record, options, report_w, listener))  # only returns on failure
    os.close(report_w)
    if listener >= 0:
        os.close(listener)  # the monitor's now
    with os.fdopen(report_r, "rb") as report:
        word = report.read().decode(errors="replace")
    if word == "running":
        # A signal held meanwhile stays pending here: the caller passes it on to the monitor
        # (interrupted_detached; start_on_terminal's handlers), in the one place that checks.
        record.monitor_pid, record.monitor_start = child, state.process_start_time(child) or 0
        return child
    os.waitpid(child, 0)  # it has recorded why and torn down: now say it
    code, _, message = word.partition(" ")
    pending = held_signals()
    if pending:  # as an attached start does (start)
        raise MinirunError(f"interrupted by {signal.Signals(pending[0]).name} before the container "
                           "started", 128 + pending[0])
    raise MinirunError(message or "the container's monitor died while starting it",
                       int(code) if code.isdigit() else RUNTIME_ERROR)


def held_signals() -> list[int]:
    """The forwarded signals that arrived while hold_signals held them, lowest first."""
    return sorted(signal.sigpending() & set(FORWARDED))


def interrupted_detached(record: Record) -> None:
    """`run -d` / `start` after its container runs: a signal held during the start (hold_signals;
    the monitor inherited the mask, so it holds one sent to it as well, until it forwards) goes
    to the monitor, which forwards it to PID 1 as it would have a moment later; then we leave
    with 128+N, as the foreground run's container would have, with the id printed (the container
    exists, to inspect or rm). One check, here: a signal that came after an earlier check
    would have been reported as the container's without reaching it. One that comes after this
    stays held until we exit: we were done before it, and the container runs on, unsignalled."""
    pending = held_signals()
    for number in pending:  # the monitor is our child (fork_monitor): its pid is not reused
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.monitor_pid, number)
    if pending:
        raise MinirunError(f"interrupted by {signal.Signals(pending[0]).name} while starting "
                           f"{record.id[:12]}: the container got the signal", 128 + pending[0])


def start_on_terminal(p: Prepared, record: Record, options: container.Options) -> int:
    """`run -it` / `start -ai` on a terminal: a detached monitor, and this process its first
    attach client, as docker's CLI is the daemon's. Then the detach keys (--detach-keys,
    ctrl-p ctrl-q) can leave the container running: a foreground monitor could not, since the
    container is its child and dies with it (PR_SET_PDEATHSIG). The client connects before the
    container exists (the listening socket is made here and handed to the monitor), and the
    monitor accepts it before it relays anything (monitor.Relay): no output is missed. It ends
    with the container, whose code is the monitor's own exit status: the monitor is our child."""
    import socket

    from minirun import tty
    from minirun.commands.attach import receive_pty

    listener = monitor.listen(str(p.state_dir), record.id)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(monitor.attach_socket(str(p.state_dir), record.id))  # in the listen backlog
        child = fork_monitor(p, record, options, listener)
        # Signals to us now go to the monitor, which forwards them to PID 1 (as `run` does);
        # one held during the start has gone there already (fork_monitor).
        for sig in FORWARDED:
            signal.signal(sig, lambda number, _frame: os.kill(child, number))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
        master = receive_pty(conn)
        try:
            detached = tty.attach(conn, stdin_open=True, tty=True, detach_keys=options.detach_keys,
                                  pty_master=master)
        finally:
            os.close(master)
    finally:
        conn.close()
    if detached:
        print("\r\nread escape sequence", file=sys.stderr)
        return 0
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def become_monitor(p: Prepared, record: Record, options: container.Options, report: int,
                   listener: int = -1) -> int:
    """In the forked monitor: leave the caller's session and terminal, start, report, exec.
    `listener`: the attach socket, made (and connected to) by start_on_terminal."""
    os.setsid()  # no controlling terminal: the starting shell's exit or SIGHUP never reaches us
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    paced = listener >= 0  # start_on_terminal's: its client is the user's terminal
    try:
        state.update(p.state_dir, record, monitor_pid=os.getpid(),
                     monitor_start=state.process_start_time(os.getpid()) or 0)
        started = launch(p, record, attached=False)
        watch = started.watch(p, record, options, attached=False)
        if listener < 0 and (p.spec.tty or p.spec.interactive):  # attach finds it once we say "running"
            listener = monitor.listen(str(p.state_dir), record.id)
        watch = watch._replace(listener=listener, first_client_paces=paced)
    except BaseException as e:
        if listener >= 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(monitor.attach_socket(str(p.state_dir), record.id))
        code = e.code if isinstance(e, MinirunError) else RUNTIME_ERROR
        os.write(report, f"{code} {e}".encode())
        return code
    os.write(report, b"running")
    os.close(report)
    with contextlib.suppress(OSError):  # on failure we exit: PID 1 dies with us (PDEATHSIG)
        monitor.exec_detached(watch, [])  # replaces this process
    return RUNTIME_ERROR


class Started(NamedTuple):
    """A container whose command runs: what its monitor needs to watch it."""

    pid: int
    pidfd: int
    stdout: int  # our ends of its pipes; with -t the pty master (and stderr -1)
    stderr: int
    stdin: int

    def watch(self, p: Prepared, record: Record, options: container.Options, attached: bool) -> monitor.Watch:
        return monitor.Watch(
            state_dir=str(p.state_dir), container_id=record.id, pid=self.pid, pidfd=self.pidfd,
            stdout=self.stdout, stderr=self.stderr, stdin=self.stdin, tty=p.spec.tty, log=options.log,
            log_path=str(container.layout(p.store, record.id).log), remove=p.spec.remove, attached=attached,
            interactive=p.spec.interactive, cgroup_places=tuple(str(place) for place in p.cgroup_places))


def launch(p: Prepared, record: Record, attached: bool) -> Started:
    """Steps 3-11: bundle, cgroup, clone, the parent's set-up, "go", until the command runs.
    On failure the record keeps why ("Created" with docker's code) and nothing is left running."""
    spec, state_dir = p.spec, p.state_dir
    try:
        where = container.layout(p.store, record.id)
        bundle = container.make_bundle(where, state_dir)
        stdio = Stdio.make(spec.tty, spec.interactive, p.rootless)
        plan = plan_process(spec, p.image, p.mapping, p.net, p.share, where, p.store, argv=p.argv, env=p.env,
                            cwd=p.cwd, user=p.user, hostname=record.config["Hostname"], stdio=stdio.child)
        # What `minirun exec` needs to repeat this plan exactly (minirun/enter.py), and where the
        # cgroup will be, written before it is made: a SIGKILL between the two never leaves a
        # cgroup that no record names.
        state.update(state_dir, record, host_config={
            **record.host_config, **security_record(plan.security, spec.security.seccomp_profile)},
            cgroup_paths=[str(c) for c in cgroups.planned(record.id, p.cgroup_places)])
        if p.mapping.idmap_layers:
            for target in plan.rootfs.layer_mounts:
                os.makedirs(target, exist_ok=True)
            userns.give_bundle_to_root(bundle, p.mapping)
        trace.mark("bundle, /etc files, seccomp filter (compiled or cached)",
                   profile=spec.security.seccomp_profile, capabilities=plan.security.capabilities,
                   bpf=plan.security.seccomp_filter)
        state.reserve_exit_file(state_dir, record.id)  # space for the exit code, taken now
        cgroup = cgroups.create(record.id, p.cgroup_places)
        made = [str(path) for path in cgroup.paths] if cgroup is not None else []
        if cgroup is not None and made != record.cgroup_paths:  # (written already when as planned)
            state.update(state_dir, record, cgroup_paths=made)
        # Limits are written before the first process is moved in: it never runs unlimited.
        cgroups.apply(cgroup, spec.limits)
        cgroups.apply_policy(cgroup, spec.limits, p.rootless)  # devices allowlist, default pids limit
        trace.mark("cgroup", cgroup=cgroup)
        # The child moves itself into its v1 directories, through files we open (cgroups.join_v1).
        plan = plan._replace(cgroup_tasks=cgroups.open_v1_tasks(cgroup))
        try:
            pid, pidfd, master = start_child(state_dir, record, plan, p.mapping, cgroup, p.share, p.net)
        finally:
            stdio.close_child_ends()
            cgroups.close_all(plan.cgroup_tasks)
    except MinirunError as e:
        container.failed(state_dir, record, e)
        container.teardown(state_dir, record, remove_all=spec.remove, cgroup_places=p.cgroup_places)
        raise
    except BaseException:
        container.teardown(state_dir, record, remove_all=spec.remove, cgroup_places=p.cgroup_places)
        raise
    if master is not None:
        return Started(pid, pidfd, master, -1, -1)
    return Started(pid, pidfd, stdio.stdout, stdio.stderr, stdio.stdin)


class Stdio(NamedTuple):
    """The container's stdin/stdout/stderr without -t: pipes, whose other ends the monitor
    holds (never the caller's own fds: a terminal given to a container lets it read what the
    user types and change the terminal's modes, issue 12)."""

    child: process.Stdio | None  # what the child dup2s onto 0, 1, 2 (None with -t: the pty)
    stdout: int  # our ends
    stderr: int
    stdin: int  # -1 without -i

    @staticmethod
    def make(tty: bool, interactive: bool, rootless: bool) -> "Stdio":
        if tty:
            return Stdio(None, -1, -1, -1)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        in_r, in_w = os.pipe2(os.O_CLOEXEC) if interactive else (-1, -1)
        if not rootless:
            # Bigger pipes, fewer wake-ups when a container writes a lot (fcntl(2), F_SETPIPE_SZ).
            # Not rootless: beyond fs.pipe-user-pages-soft every new pipe of the user gets one page.
            for fd in (out_w, in_w):
                with contextlib.suppress(OSError):
                    if fd >= 0:
                        fcntl.fcntl(fd, F_SETPIPE_SZ, 1 << 20)
        ours = tuple(fd for fd in (out_r, err_r, in_w) if fd >= 0)
        return Stdio(process.Stdio(in_r, out_w, err_w, ours), out_r, err_r, in_w)

    def close_child_ends(self) -> None:
        if self.child is not None:
            for fd in (self.child.stdin, self.child.stdout, self.child.stderr):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)


F_SETPIPE_SZ = 1031  # fcntl(2), Linux 2.6.35


def plan_process(spec: ContainerSpec, image: images.Image, mapping: userns.IdMapping,
                 net: network.NetworkPlan, share: sharing.SharePlan, where: container.Layout, store: Path,
                 *, argv: list[str], env: list[str], cwd: str, user: str | None, hostname: str,
                 stdio: process.Stdio | None) -> process.ProcessPlan:
    """Decide, before clone, everything the child will do (it cannot ask once it runs)."""
    rootfs = RootfsPlan(
        layers=tuple(str(p) for p in userns.layer_dirs(image.layers, mapping, store)),
        upper=str(where.upper), work=str(where.work),
        merged=str(where.merged), binds=spec.binds,
        etc_files=etc_files(where, hostname, spec.network, spec.add_hosts, spec.dns, net.join_bundle),
        own_netns=network.has_own_netns(spec.network),
        tty_gid=5 if mapping.maps_gid(5) else None, cgroupns_host=spec.cgroupns == "host",
        layer_mounts=tuple(str(where.lower(i)) for i in range(len(image.layers)))
        if mapping.idmap_layers else (), bundle=str(where.bundle) if mapping.idmap_layers else "",
        read_only=spec.security.read_only, tmpfs=spec.security.tmpfs,
        mask_system_paths=spec.security.mask_system_paths, pid_host=share.pid_host, ipc_host=share.ipc_host,
        ipc_donor=sharing.ipc_donor(share) is not None)
    return process.ProcessPlan(
        argv=tuple(argv), env=tuple(env), cwd=cwd, user=user, hostname=hostname, rootfs=rootfs, tty=spec.tty,
        interactive=spec.interactive, init=spec.init, stdio=stdio, uts_host=share.uts_host,
        security=security_plan(spec.security.capabilities, spec.security.seccomp_profile,
                               spec.security.no_new_privileges, store))


def start_child(state_dir: Path, record: Record, plan: process.ProcessPlan, mapping: userns.IdMapping,
                cgroup: Cgroup | None, share: sharing.SharePlan,
                net: network.NetworkPlan) -> tuple[int, int, int | None]:
    """Clone the child, do what only the parent can (sync step 2), let it go, and wait until its
    command runs. Returns its pid, a pidfd for it and, with -t, the pty's master."""
    parent_end, child_end = sync.channel()
    # Born in its v2 cgroup where the kernel can (clone3's CLONE_INTO_CGROUP), not moved there.
    cgroup_fd = cgroups.open_v2(cgroup)
    try:
        # container:NAME: born in the other's namespaces (sharing.py)
        pid, born_in_v2 = sharing.clone(share, cgroup_fd)
    finally:
        if cgroup_fd is not None:
            os.close(cgroup_fd)
    if pid == 0:
        parent_end.close()
        process.run_child(plan, child_end)  # never returns
    child_end.close()
    # A pidfd names this process for good (pidfd_open(2)): signals through it never reach a
    # stranger that got the pid after the container's end.
    pidfd = kernel.pidfd_open(pid)
    trace.mark("clone", pid=pid, flags=share.new)
    with parent_end, forwarding_signals(pid), sync.killed_on_error(pid, pidfd):
        # sync step 2: what only the parent can do, then let the child go.
        if not share.joins:  # a joined user namespace has its maps already
            userns.write_maps(pid, mapping)
        trace.mark("id maps", pid=pid)
        if cgroup is not None:  # a v2 directory it was not born in; the v1 ones it joins itself
            cgroups.add_process(cgroup, pid, born_in_v2, v1_joined=bool(plan.cgroup_tasks))
        settings = network.connect(net, record.id, pid, state_dir)
        state.update(state_dir, record, network_settings=settings)
        trace.mark("network, record", settings=settings)
        if plan.cgroup_tasks:  # meanwhile the child moved itself into its v1 cgroups (sync step 1)
            sync.expect(parent_end, "joined")
        trace.mark("join cgroup", pid=pid, born_in_v2=born_in_v2, v1_joined=bool(plan.cgroup_tasks))
        if settings.get("IPAddress"):
            add_own_address(plan.rootfs.etc_files["/etc/hosts"], plan.hostname, settings["IPAddress"])
        # Rootful remapped: "go" carries the idmapped layers + volumes; --ipc=container:NAME
        # the other container's /dev/shm, last (rootfs.build).
        mounts = []
        try:
            if plan.rootfs.layer_mounts:
                mounts += userns.idmapped_layers(pid, plan.rootfs.layers, idmap=not mapping.shifted_layers)
                mounts += userns.detached_binds(plan.rootfs.binds)
            if (donor := sharing.ipc_donor(share)) is not None:
                mounts.append(sharing.donor_shm(donor))
            sync.send(parent_end, "go", fds=mounts)
        finally:
            for fd in mounts:
                os.close(fd)
        trace.mark("go (with idmapped layers)" if plan.rootfs.layer_mounts else "go")
        master = sync.receive_exec(parent_end)  # sync steps 4-6
        trace.mark("exec (waited for the child's set-up)")
        container.started(state_dir, record, pid)
        trace.mark("record running")
    return pid, pidfd, master


@contextlib.contextmanager
def forwarding_signals(pid: int) -> Iterator[None]:
    """While the container runs, signals sent to minirun go to the container's PID 1."""
    owner = os.getpid()

    def forward(number: int, _frame: object) -> None:
        # A fork of ours inherits this handler (signal(7)): pyroute2's netns helper does, and
        # pyroute2 ends it with SIGTERM, which must not reach the container (it killed the
        # child before "go": `run -d` failed with "Broken pipe" about one time in two).
        if os.getpid() != owner:
            os._exit(128 + number)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, number)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
