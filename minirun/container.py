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
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from minirun import fsutil, logfile, paths, procfs, state, stragglers
from minirun.errors import MinirunError
from minirun.state import Record

if TYPE_CHECKING:
    from minirun import idranges

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
    if not re.fullmatch(state.ID_RULE, container_id):
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


def teardown(state_dir: Path, record: Record, remove_all: bool,
             cgroup_places: tuple[Path, ...] | None = None) -> None:
    """After the container's PID 1 exits: the kernel has already killed the rest of its PID
    namespace and unmounted its mount namespace; what is left is ours to remove. `cgroup_places`:
    where the run made its cgroup (cgroups.find_places), else found again."""
    from minirun import cgroups, network, trace  # the teardown's modules, loaded when it happens

    if remove_all:
        # --rm: all of it goes, the network from a second thread (mostly a wait in the kernel)
        # while this one removes the rest. If minirun dies meanwhile, the record may be gone and
        # the lease not: a lease of a dead monitor, which the next bridge set-up or `prune`
        # reclaims (leases.py).
        with (network.disconnecting(state_dir, record.id, record.network_settings)
              if record.network_settings else contextlib.nullcontext()):
            remove_all_but_network(state_dir, record, cgroup_places)
        trace.mark("teardown: --rm")  # cgroup, network, files
        return
    if record.cgroup_paths:
        cgroups.remove(cgroups.of_container(record.id, record.cgroup_paths, cgroup_places))
        state.update(state_dir, record, cgroup_paths=[])
        trace.mark("teardown: cgroup")
    else:
        kill_stragglers(paths.store_dir(), record.id)
        trace.mark("teardown: stragglers (no cgroup: a walk of every process)")
    if record.network_settings:
        network.disconnect(state_dir, record.id, record.network_settings)
        state.update(state_dir, record, network_settings={})
        trace.mark("teardown: network")


def remove(state_dir: Path, record: Record) -> None:
    """Everything a container leaves: cgroups and network (if its monitor died), layer, logs, record."""
    from minirun import network

    if record.network_settings:  # its monitor died before it could disconnect
        network.disconnect(state_dir, record.id, record.network_settings)
    remove_all_but_network(state_dir, record)


def clear_dead_run(state_dir: Path, record: Record) -> None:
    """Before `start` runs a container again: what its last run left when its monitor died
    (SIGKILL, OOM killer), as `remove` clears it: the network, and the cgroup with whatever
    still runs in it (a paused container's processes too: v1's freezer holds PID 1's death
    signal). A cgroup left there made the new run's mkdir fail with EEXIST. After a clean exit
    there is nothing: the teardown removed both."""
    from minirun import cgroups, network

    if record.network_settings:
        network.disconnect(state_dir, record.id, record.network_settings)
        state.update(state_dir, record, network_settings={})
    cgroups.remove(cgroups.of_container(record.id, record.cgroup_paths))


def remove_all_but_network(state_dir: Path, record: Record,
                           cgroup_places: tuple[Path, ...] | None = None) -> None:
    """cgroups (and without one, processes that `exec` left), layer, logs, record, id range."""
    from minirun import cgroups

    cgroup = cgroups.of_container(record.id, record.cgroup_paths, cgroup_places)  # from the id (issue 12)
    cgroups.remove(cgroup)
    if not cgroup.paths:  # no cgroup: nothing in the kernel ends what exec started (stragglers.py)
        kill_stragglers(paths.store_dir(), record.id)
    remove_files(state_dir, record)


def kill_stragglers(store: Path, container_id: str) -> None:
    """What exec started in a container with neither a cgroup nor a PID namespace (stragglers.py)."""
    if not stragglers.kill(layout(store, container_id).etc_file("/etc/hostname")):
        print(f"minirun: warning: processes of container {container_id[:12]} kept appearing for "
              f"{stragglers.LOOK_FOR:.0f} s; some may still run", file=sys.stderr)


def remove_files(state_dir: Path, record: Record) -> None:
    """What is left once nothing of the container runs: its layer, logs, record and id range."""
    remove_bundle(layout(paths.store_dir(), record.id).bundle)
    state.delete(state_dir, record)
    release_ids(state_dir, record.id)  # last: its files and processes are gone (a kill before: prune)


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


def paused(record: Record) -> bool:
    """Running, with its cgroup frozen (`minirun pause`). The kernel's word, not the record's:
    a freeze from outside (minirun-oci, by hand, a cgroup above) counts too."""
    from minirun import cgroups

    return record.status == "running" and cgroups.paused(cgroups.of_container(record.id, record.cgroup_paths))


def thaw_for_signal(record: Record) -> None:
    """After a stop signal or SIGKILL: a paused container acts on it only once thawed
    (cgroups.py, the freezer section), so thaw it, as docker's stop, kill and rm -f do."""
    from minirun import cgroups

    cgroup = cgroups.of_container(record.id, record.cgroup_paths)
    if cgroups.paused(cgroup):
        with contextlib.suppress(OSError, MinirunError):
            cgroups.thaw(cgroup)


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


def wait_monitor(state_dir: Path, record: Record, timeout: float | None = None) -> Record | None:
    """Wait until the container's monitor has ended, which records the exit before it ends;
    return the record as it left it (None if it was removed: --rm, or rm -f)."""
    fd = open_monitor(record)
    if fd is not None:
        try:
            procfs.wait_pidfd(fd, timeout)
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
            thaw_for_signal(record)
            pending.append((record, fd, None if timeout < 0 else time.monotonic() + timeout))
    for _, fd, deadline in pending:
        try:
            if not procfs.wait_pidfd(fd, None if deadline is None else max(0.0, deadline - time.monotonic())):
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
            # Its cgroup, or one the container made below it (systemd inside; cgroups.subtree).
            with open(f"/proc/{pid}/cgroup") as f:
                return any(record.id in line.rstrip("\n").split(":", 2)[2].split("/") for line in f)
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
    claimed = claims.get(ref.lstrip("/"))
    # A claim is a link anyone who can write the state directory can change (state.py): one
    # naming a container that has a valid record names a container with a name of its own,
    # which `find` did not give for this one; not an orphan, and not to be removed as one.
    if (claimed is not None and state.load(state_dir, claimed, warn=False) is None
            and (in_use(store, claimed) or claimed in state.record_ids(state_dir))):
        return claimed
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
                  # one whose state directory is gone (a MINIRUN_STATE removed with its records):
                  # no record anywhere can name it any more, so any prune may take it
                  | {i for i in bundles if (o := owner(store, i)) is not None and not os.path.isdir(o)}
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
        return {p.name for p in (store / "containers").iterdir() if re.fullmatch(state.ID_RULE, p.name)}
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
    procfs.kill(monitor, 10)


# --- how inspect shows it ---------------------------------------------------------------------------


def record_json(record: Record) -> dict[str, object]:
    """A record in the shape of `docker inspect`."""
    is_paused = paused(record)
    return {
        "Id": record.id, "Name": "/" + record.name, "Created": record.created,
        "Path": record.command[0] if record.command else "", "Args": record.command[1:],
        "Image": record.image_id, "ImageName": record.image,
        "State": {"Status": "paused" if is_paused else record.status, "Running": record.status == "running",
                  "Paused": is_paused,
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
