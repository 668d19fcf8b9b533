"""One container on disk and in its record: where its files are, and how its record changes.

Every verb that touches a container goes through here: run and create make it, start marks it
running, its monitor marks it exited and tears it down, stop/kill/rm signal it, rm and prune
remove it, inspect shows it. The record itself is stored by minirun/state.py (ids and names
under flock, atomic JSON); this module knows what the record's fields mean.

On disk (the "bundle", one directory per container under the store, derived from the id):

  STORE/containers/ID/           the container's directory (mode 0700-ish, its root's)
                      upper/     overlay's upper layer: what the container wrote
                      work/      overlay's scratch directory
                      merged/    the overlay's mount point (inside the container's mount ns)
                      lower/N    rootful remapped: mount points of the idmapped image layers
                      hostname, hosts, resolv.conf      bound over the container's /etc files
                      ID-json.log[.1, .2 ...]           its stdout/stderr (docker's json-file)

The life of a record (docker's states):

  created --start--> running --PID 1 exits--> exited --start--> running ...
     |                                           |
     +------------- rm / prune ------------------+---> (gone: bundle, cgroup, network, record)
"""

import contextlib
import os
import re
import select
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from minirun import fsutil, logfile, paths, procfs, state
from minirun.errors import MinirunError
from minirun.state import Record

if TYPE_CHECKING:
    from minirun import idranges

ID_RULE = re.compile(r"^[0-9a-f]{64}$")
DEFAULT_STOP_TIMEOUT = 10  # seconds between the stop signal and SIGKILL, as docker's


class Options(NamedTuple):
    """How a container is run and stopped, beyond what it is (spec.ContainerSpec)."""

    detach: bool = False  # -d
    stop_signal: str = ""  # --stop-signal; "": the image's StopSignal, else SIGTERM (docker's rule)
    stop_timeout: int = DEFAULT_STOP_TIMEOUT  # --stop-timeout
    log: logfile.Options = logfile.Options()  # --log-driver, --log-opt
    args: tuple[str, ...] = ()  # the `run`/`create` arguments, kept for `start` and `restart`
    detach_keys: bytes = b"\x10\x11"  # --detach-keys of `run -it` / `start -ai` (tty.parse_detach_keys)

    def log_config(self) -> dict[str, object]:
        """docker inspect's HostConfig.LogConfig."""
        config = {}
        if self.log.max_size:
            config = {"max-size": str(self.log.max_size), "max-file": str(self.log.max_files)}
        return {"Type": self.log.driver, "Config": config}


def image_stop_signal(value: str) -> str:
    """The image config's StopSignal ("SIGQUIT", "QUIT" or "3") by name; SIGTERM if it has none
    or one that names no signal (an image is somebody else's data: it must not break `run`)."""
    try:
        return signal.Signals(parse_signal(value)).name if value else "SIGTERM"
    except MinirunError:
        return "SIGTERM"


def parse_signal(value: str) -> int:
    """A signal as docker takes it: KILL, SIGKILL or 9."""
    name = value.upper()
    if name.isdigit():
        number = int(name)
        if number in {s.value for s in signal.valid_signals() if isinstance(s, signal.Signals)}:
            return number
    else:
        with contextlib.suppress(AttributeError):
            sig = getattr(signal.Signals, name if name.startswith("SIG") else f"SIG{name}")
            return int(sig)
    raise MinirunError(f"invalid signal: {value}")


# --- where its files are ------------------------------------------------------------------------


class Layout(NamedTuple):
    """Every path of one container, derived from the store and its id, never read from the
    record: a record names a container, it does not get to name directories to delete."""

    bundle: Path

    @property
    def upper(self) -> Path:
        return self.bundle / "upper"

    @property
    def work(self) -> Path:
        return self.bundle / "work"

    @property
    def merged(self) -> Path:
        return self.bundle / "merged"

    def lower(self, index: int) -> Path:
        return self.bundle / "lower" / str(index)

    def etc_file(self, target: str) -> Path:
        """Where the host side of /etc/hostname, /etc/hosts, /etc/resolv.conf is kept."""
        return self.bundle / Path(target).name

    @property
    def log(self) -> Path:
        """docker's json-file log: containers/ID/ID-json.log, rotated to .1, .2 ..."""
        return self.bundle / f"{self.bundle.name}-json.log"


def layout(store: Path, container_id: str) -> Layout:
    if not ID_RULE.match(container_id):
        raise MinirunError(f"not a container id: {container_id!r}")
    return Layout(store / "containers" / container_id)


def make_bundle(where: Layout, state_dir: Path | None = None) -> Path:
    """The container's directory, 0700, under a parent that is root's alone (0700): host users
    must not reach setuid programs or secrets in a container's layer (CVE-2021-41091, docker's
    data-root mode). Docker opens the parent to its one remapped root's group (0710); with a
    range per container there is no one group, and none is needed: a remapped root is handed its
    own directory as an fd (rootfs.enter_bundle) and owns it (userns.give_bundle_to_root).
    Its first entry says whose records it belongs to (`owner`): the store is shared by every
    state directory, and `prune` sweeps only its own leftovers."""
    bundle = where.bundle
    bundle.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(bundle.parent, 0o700)
    bundle.mkdir(mode=0o700, exist_ok=True)
    os.chmod(bundle, 0o700)
    if state_dir is not None:
        with contextlib.suppress(FileExistsError):
            os.symlink(os.path.abspath(state_dir), bundle / OWNER)
    for path in (where.upper, where.work, where.merged):
        path.mkdir(parents=True, exist_ok=True)
    return bundle


def remove_bundle(bundle: Path) -> None:
    """Remove the container's directory, however deep and whatever links the container made in
    it (fsutil.remove_tree; it also opens overlay's mode-000 `work/work`)."""
    fsutil.remove_tree(bundle, ignore_errors=True)


# --- how its record changes ---------------------------------------------------------------------


def started(state_dir: Path, record: Record, pid: int) -> None:
    """created -> running: the command has been exec'd (sync step 6)."""
    state.update(state_dir, record, status="running", pid=pid, pid_start=state.process_start_time(pid) or 0,
                 started_at=state.now(), exit_code=0, error="", oom_killed=False, finished_at="")


def failed(state_dir: Path, record: Record, error: MinirunError) -> None:
    """The container never ran: keep why, with docker's code, in its record ("Created")."""
    state.update(state_dir, record, status="created", exit_code=error.code, error=str(error))


def exited(state_dir: Path, record: Record, code: int, oom_killed: bool) -> None:
    """running -> exited, with the code a shell would report (128+N for signal N)."""
    state.update(state_dir, record, status="exited", pid=0, exit_code=code, finished_at=state.now(),
                 oom_killed=oom_killed)


def teardown(state_dir: Path, record: Record, remove_all: bool) -> None:
    """After the container's PID 1 exits: the kernel has already killed the rest of its PID
    namespace and unmounted its mount namespace; what is left is ours to remove."""
    from minirun import cgroups, network, trace  # the teardown's modules, loaded when it happens

    if record.cgroup_paths:
        cgroups.remove(cgroups.of_container(record.id, record.cgroup_paths))
        state.update(state_dir, record, cgroup_paths=[])
        trace.mark("teardown: cgroup")
    else:
        kill_stragglers(paths.store_dir(), record.id)
    if record.network_settings:
        network.disconnect(state_dir, record.id, record.network_settings)
        state.update(state_dir, record, network_settings={})
        trace.mark("teardown: network")
    if remove_all:
        remove(state_dir, record)
        trace.mark("teardown: --rm")


def remove(state_dir: Path, record: Record) -> None:
    """Everything a container leaves: cgroups and network (if its monitor died), layer, logs, record."""
    from minirun import cgroups, network

    if record.network_settings:  # its monitor died before it could disconnect
        network.disconnect(state_dir, record.id, record.network_settings)
    cgroup = cgroups.of_container(record.id, record.cgroup_paths)  # from the id (issue 12)
    cgroups.remove(cgroup)
    if not cgroup.paths:  # (its monitor died: nothing killed what exec started)
        kill_stragglers(paths.store_dir(), record.id)
    remove_bundle(layout(paths.store_dir(), record.id).bundle)
    state.delete(state_dir, record)
    release_ids(state_dir, record.id)  # last: its files and processes are gone (a kill before: prune)


def kill_stragglers(store: Path, container_id: str) -> None:
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
        own = os.stat(layout(store, container_id).etc_file("/etc/hostname"))
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
                wait_pidfd(witness.pidfd, 5)
    finally:
        for witness in shows.values():
            os.close(witness.pidfd)


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


MAX_CLIMB = 1 << 16  # a hostile chroot deeper than this still dies with its mount namespace


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
        return os.readlink(f"/proc/{self.pid}/ns/mnt") == namespace and not wait_pidfd(self.pidfd, 0)


def _kill_if(pid: int, witness: Witness, namespace: str) -> None:
    """SIGKILL `pid` if, once pinned by a pidfd, it is in the witness's `namespace`; wait for its end."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if witness.still_with(pid, namespace):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            wait_pidfd(pidfd, 5)
    except OSError:
        pass
    finally:
        os.close(pidfd)


def release_ids(state_dir: Path, container_id: str) -> None:
    """Give the container's id range back (idranges.py), with its shifted layer copies if any."""
    from minirun import idranges

    if not paths.is_rootless():
        try:
            idranges.release(state_dir, container_id, remove_shifted_copies)
        except MinirunError as e:  # a corrupt book: the container still goes (new claims stop there)
            print(f"minirun: warning: {e}", file=sys.stderr)


def remove_shifted_copies(claim: "idranges.Claim") -> None:
    """A range's shifted copies of the image layers go with the range (userns.layer_dirs). The
    store's module (subprocess, tempfile...) is loaded only if there are any: usually none."""
    name = f"rootfs-shifted-{claim.uid}-{claim.gid}-{claim.count}"
    if any((Path(claim.store) / "layers").glob(f"*/{name}")):
        from minirun.images import store

        store.remove_shifted(Path(claim.store), claim.uid, claim.gid, claim.count)


# --- signalling it --------------------------------------------------------------------------------


def open_pid1(record: Record) -> int | None:
    """A pidfd for the container's PID 1, or None if it does not run.

    Never signal a bare pid from a record: the process may be gone and its pid reused. A pidfd
    (pidfd_open(2), Linux 5.3) names one process for good; it is the container's if, *after*
    it is open, that pid still has the start time the monitor recorded, and the monitor lives.
    """
    if record.status != "running" or record.pid <= 1 or not record.monitor_alive():
        return None
    try:
        fd = os.pidfd_open(record.pid)
    except ProcessLookupError:
        return None
    if state.process_start_time(record.pid) != record.pid_start or not in_container(record, record.pid):
        os.close(fd)
        return None
    return fd


def send_signal(record: Record, sig: int) -> bool:
    """Signal PID 1 through a pidfd (pidfd_send_signal(2)). False if it does not run."""
    fd = open_pid1(record)
    if fd is None:
        return False
    try:
        signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)
    return True


def open_monitor(record: Record) -> int | None:
    """A pidfd for the container's monitor, proven to be it as open_pid1 does; None if gone."""
    if record.monitor_pid <= 1:
        return None
    try:
        fd = os.pidfd_open(record.monitor_pid)
    except ProcessLookupError:
        return None
    if state.process_start_time(record.monitor_pid) != record.monitor_start:
        os.close(fd)
        return None
    return fd


def wait_pidfd(fd: int, timeout: float | None) -> bool:
    """Wait until the process behind a pidfd has exited (it polls readable then, pidfd_open(2))."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None or timeout < 0 else int(timeout * 1000)))


def wait_monitor(state_dir: Path, record: Record, timeout: float | None = None) -> Record | None:
    """Wait until the container's monitor has ended, which records the exit before it ends;
    return the record as it left it (None if it was removed: --rm, or rm -f)."""
    fd = open_monitor(record)
    if fd is not None:
        try:
            wait_pidfd(fd, timeout)
        finally:
            os.close(fd)
    return state.load(state_dir, record.id)


def stop(state_dir: Path, stops: list[tuple[Record, float, int]]) -> None:
    """docker stop, for several containers at once: each one's stop signal now, then SIGKILL
    to each PID 1 that has not exited after its timeout (seconds; -1: wait forever); then
    wait until their monitors have recorded the exits."""
    pending = []
    for record, timeout, stop_signal in stops:
        fd = open_pid1(record)
        if fd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, stop_signal)
            pending.append((record, fd, None if timeout < 0 else time.monotonic() + timeout))
    for _, fd, deadline in pending:
        try:
            if not wait_pidfd(fd, None if deadline is None else max(0.0, deadline - time.monotonic())):
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
        finally:
            os.close(fd)
    for record, _, _ in pending:
        wait_monitor(state_dir, record, 30)


def in_container(record: Record, pid: int) -> bool:
    """Is `pid` (already pinned by a pidfd) the container's? The record's word is not enough:
    a hostile record can name any process with its start time. With a cgroup (derived from the
    id) the kernel says it: /proc/PID/cgroup names it (cgroups(7)). Without one (rootless and
    no delegated subtree) it must be the live monitor's child (and PID 1 of its PID namespace)."""
    from minirun import cgroups

    cgroup = cgroups.of_container(record.id, record.cgroup_paths)
    if cgroup.paths:
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                return any(line.rstrip("\n").split(":", 2)[2].endswith(f"/{record.id}") for line in f)
        except OSError:
            return False
    try:
        parent = procfs.parent(pid)
        with open(f"/proc/{pid}/status") as f:
            nspid = next((line.split()[1:] for line in f if line.startswith("NSpid:")), [])
    except OSError:
        return False
    # The live monitor's child, and with a PID namespace of its own, PID 1 there (proc(5), NSpid:
    # its pid in each namespace it is in). With --pid=host or --pid=container:NAME it has none:
    # its pid there is any number, and being the monitor's child is what proves it.
    own_pid_namespace = record.host_config.get("PidMode", "") in ("", "private")
    if own_pid_namespace and not (len(nspid) > 1 and nspid[-1] == "1"):
        return False
    return parent == record.monitor_pid and record.monitor_alive()


# --- a container without a (valid) record: what the kernel and the store still know ----------


def in_use(store: Path, container_id: str) -> bool:
    """Does anything of this container still exist: its directory or its cgroup?"""
    from minirun import cgroups

    return layout(store, container_id).bundle.is_dir() or bool(cgroups.of_container(container_id).paths)


def orphan_id(state_dir: Path, store: Path, ref: str) -> str | None:
    """The id of a container that has no valid record but still exists (its record file is
    garbage, empty or deleted), by its name's claim, full id or unique id prefix; else None."""
    from minirun import cgroups

    claims = state.name_claims(state_dir)
    if ref.lstrip("/") in claims and (in_use(store, claims[ref.lstrip("/")])
                                      or claims[ref.lstrip("/")] in state.record_ids(state_dir)):
        return claims[ref.lstrip("/")]
    known = state.record_ids(state_dir) | bundle_ids(store) | cgroups.container_ids()
    matches = [i for i in known if i.startswith(ref)] if ref else []
    return matches[0] if len(matches) == 1 else None


def find_detached_monitor(container_id: str) -> int | None:
    """A pidfd for the detached monitor of `container_id`, found by what the kernel shows of it
    (/proc/PID/cmdline: the lean monitor's argument is its Watch, in JSON, monitor.py), only
    among our own processes; None if there is none."""
    import json

    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if entry.stat().st_uid != os.geteuid():
                continue
            start = state.process_start_time(pid)
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if len(argv) < 6 or b"from minirun.monitor import main" not in argv[4]:
            continue
        try:
            watch = json.loads(argv[5])
        except ValueError:
            continue
        if not isinstance(watch, dict) or watch.get("container_id") != container_id:
            continue
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        if start is not None and state.process_start_time(pid) == start:
            return fd
        os.close(fd)
    return None


OWNER = "state"  # in the bundle: a symbolic link to the state directory that holds its record


def owner(store: Path, container_id: str) -> str | None:
    with contextlib.suppress(OSError):
        return os.readlink(layout(store, container_id).bundle / OWNER)
    return None


def sweep(state_dir: Path, store: Path) -> list[str]:
    """prune's second half: remove what minirun owns here that no valid record names, left by
    a SIGKILL at the wrong moment or by a broken record: cgroups and bundles (with their logs),
    record files no one can read, temporary files of dead writers, exit code files, monitor
    and slirp4netns sockets. A container that still runs is left alone (`rm -f` removes it).
    Returns the ids."""
    from minirun import cgroups, fsutil

    valid = {r.id for r in state.all_records(state_dir, warn=False)}
    mine = os.path.abspath(state_dir)
    bundles = bundle_ids(store)
    candidates = (state.record_ids(state_dir)
                  | {i for i in bundles if owner(store, i) == mine}
                  # a cgroup is made after its bundle and removed before it: one without a
                  # bundle is the rest of a removal that was killed
                  | {i for i in cgroups.container_ids() if i not in bundles}) - valid
    removed = []
    for container_id in sorted(candidates):
        with contextlib.suppress(MinirunError):
            remove_orphan(state_dir, store, container_id, force=False)
            removed.append(container_id)
    fsutil.remove_abandoned_tmp(state_dir)
    # Name claims of containers that never got a record (a SIGKILL between the claim and the
    # record, state.create) and of which nothing exists: the name is free already (state.create
    # replaces such a claim), the link is all that is left.
    records = state.record_ids(state_dir)
    for container_id in set(state.name_claims(state_dir).values()):
        if container_id not in records and not in_use(store, container_id):
            state.release_name(state_dir, container_id)
    if not paths.is_rootless():  # id ranges whose record is gone (a start killed between the two)
        from minirun import idranges

        try:
            idranges.sweep(state_dir, remove_shifted_copies)
        except MinirunError as e:  # a corrupt book: say so, sweep the rest
            print(f"minirun: warning: {e}", file=sys.stderr)
    short = {i[:12] for i in valid}
    for pattern, cut in (("*.attach", slice(0, -7)), ("slirp4netns-*.sock", slice(12, -5)),
                         ("*.exit", slice(0, 12))):
        for path in state_dir.glob(pattern):
            if path.name[cut] not in short:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
    return removed


def bundle_ids(store: Path) -> set[str]:
    """The ids of every container directory in the store."""
    try:
        return {p.name for p in (store / "containers").iterdir() if ID_RULE.match(p.name)}
    except OSError:
        return set()


def remove_orphan(state_dir: Path, store: Path, container_id: str, force: bool) -> None:
    """rm an orphan: kill what runs in its cgroup (cgroup.kill: the kernel knows what is the
    container's), remove its cgroup, directory, record file and name claim. Its monitor, if
    alive, sees PID 1 die and finds no record to write: it exits."""
    from minirun import cgroups

    cgroup = cgroups.of_container(container_id)
    if not force and cgroups.has_processes(cgroup):
        raise MinirunError(f"container {container_id[:12]} is running: stop it first, or use rm -f")
    # No cgroup to kill (rootless without a delegated subtree): the monitor's death kills PID 1
    # (PR_SET_PDEATHSIG), and with it the container's whole PID namespace.
    end_detached_monitor(container_id, force, container_id[:12])
    cgroups.remove(cgroup)
    if not cgroup.paths:
        kill_stragglers(store, container_id)
    remove_bundle(layout(store, container_id).bundle)
    state.delete_id(state_dir, container_id)
    release_ids(state_dir, container_id)


def end_detached_monitor(container_id: str, force: bool, name: str) -> None:
    """Before rm removes a container's files: if the kernel shows a detached monitor still
    watching it (whatever the record says: a pid field may be edited or corrupted), the container
    runs. Refuse without -f; with it, end the monitor first (its PID 1 dies with it)."""
    monitor = find_detached_monitor(container_id)
    if monitor is None:
        return
    if not force:
        os.close(monitor)
        raise MinirunError(f"container {name} is running: stop it first, or use rm -f")
    kill_monitor(monitor)


def kill_monitor(monitor: int) -> None:
    """SIGKILL a detached monitor through its pidfd and wait for its end (the pidfd is closed)."""
    try:
        signal.pidfd_send_signal(monitor, signal.SIGKILL)
        wait_pidfd(monitor, 10)
    except ProcessLookupError:
        pass
    finally:
        os.close(monitor)


# --- how inspect shows it ---------------------------------------------------------------------------


def record_json(record: Record) -> dict[str, object]:
    """A record in the shape of `docker inspect`."""
    return {
        "Id": record.id, "Name": "/" + record.name, "Created": record.created,
        "Path": record.command[0] if record.command else "", "Args": record.command[1:],
        "Image": record.image_id, "ImageName": record.image,
        "State": {"Status": record.status, "Running": record.status == "running",
                  "Pid": record.pid if record.status == "running" else 0, "ExitCode": record.exit_code,
                  "OOMKilled": record.oom_killed, "Error": record.error, "StartedAt": record.started_at,
                  "FinishedAt": record.finished_at, "Dead": record.dead},
        "Config": record.config, "HostConfig": record.host_config,
        "NetworkSettings": {"IPAddress": "", "IPPrefixLen": 0, "Gateway": "", "MacAddress": "", "Ports": {},
                            **record.network_settings},
        "GraphDriver": {"Name": "overlay", "Data": {"UpperDir": f"{record.bundle}/upper",
                                                   "WorkDir": f"{record.bundle}/work"}},
        "LogPath": str(Path(record.bundle) / f"{record.id}-json.log") if record.bundle else "",
        "Rootless": record.rootless,
    }
