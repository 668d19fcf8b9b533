"""Control groups: one per container, so its processes can be counted, limited and killed together.

Linux has two cgroup file systems (cgroups(7)):
 - v1: one hierarchy per controller, mounted at /sys/fs/cgroup/<controller> (memory, cpu, pids,
   ...). A process is in one cgroup *per hierarchy*, so a container has one directory in each.
 - v2: a single "unified" hierarchy at /sys/fs/cgroup (or, on "hybrid" hosts like systemd's
   older default, at /sys/fs/cgroup/unified next to the v1 ones). Controllers are switched on
   for children in the parent's cgroup.subtree_control.
A host is "v2" (unified only), "v1" (v1 only) or "hybrid" (v1 controllers plus a v2 tree,
usually without controllers). A controller is bound to one hierarchy at a time: on hybrid hosts
the memory, cpu, pids ... controllers live in v1, and the v2 tree only has what is left (often
nothing, or hugetlb). minirun uses every hierarchy: each limit goes to the one directory whose
hierarchy has that limit's controller, and the v2 tree is used for its teardown files
(cgroup.kill, cgroup.events).

The file names differ between the two versions; the `Driver` interface hides that: `V1` and
`V2` each say which files carry a limit (`limit_files`) and where usage and OOM kills are read.

Why not the `cgroupspy` package: it only knows v1 and has no pids controller; the few files
minirun writes are clearer written directly.

Rootless: writing to a cgroup needs the directory to be delegated to the user (systemd's
`Delegate=yes` chowns a subtree to the user). minirun looks, in each hierarchy, for the highest
directory above its own cgroup that belongs to the user, and puts its containers there. Without
such a place a rootless container runs without its own cgroup (like podman with
cgroup_manager=cgroupfs, rootless), unless it asked for limits: then it is refused.
"""

import contextlib
import errno
import os
import select
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

from minirun.errors import MinirunError
from minirun.spec import Limits

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT = os.environ.get("MINIRUN_CGROUP_PARENT", "minirun")  # configurable, like --cgroup-parent
# The v2 controllers minirun switches on for its containers (when the host offers them).
V2_CONTROLLERS = ("cpu", "cpuset", "memory", "pids")
CFS_PERIOD_US = 100_000  # the scheduler period a --cpus quota is a fraction of (100 ms, as docker)


class Hierarchy(NamedTuple):
    mountpoint: Path
    version: int  # 1 or 2
    controllers: tuple[str, ...]  # v1: the mount's controllers; v2: those in cgroup.controllers


class Cgroup(NamedTuple):
    """A container's cgroup: one directory per hierarchy it was created in."""

    paths: tuple[Path, ...]

    def v2_path(self) -> Path | None:
        return next((p for p in self.paths if (p / "cgroup.kill").exists()
                     or (p / "cgroup.events").exists()), None)

    def path_for(self, controller: str) -> tuple[Path, "Driver"] | None:
        """The directory (and its driver) where `controller`'s files are, if any."""
        for path in self.paths:
            if (path / "cgroup.controllers").exists():  # v2: what the parent switched on for us
                if controller in _read(path / "cgroup.controllers").split():
                    return path, V2()
            elif any(f.name.startswith(controller + ".") for f in _listdir(path)):
                return path, V1()
        return None


class Usage(NamedTuple):
    """What `minirun stats` shows, read from the cgroup files."""

    memory: int | None  # bytes in use (without reclaimable page cache, as docker shows it)
    memory_limit: int | None  # None: unlimited
    cpu_ns: int | None  # CPU time used by all the container's processes, in nanoseconds
    pids: int | None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _listdir(path: Path) -> list[Path]:
    try:
        return list(path.iterdir())
    except OSError:
        return []


def _keyed(text: str) -> dict[str, int]:
    """Files like memory.stat or memory.events: one `key value` per line."""
    pairs = (line.split() for line in text.splitlines())
    return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].lstrip("-").isdigit()}


# --- the two drivers: which file carries what ---------------------------------------------------


class Driver(Protocol):
    """What minirun needs from a cgroup directory, whichever cgroup version it belongs to."""

    version: int

    def limit_files(self, controller: str, limits: Limits) -> list[tuple[str, str]]:
        """(file, value) pairs that set `limits` for `controller`, in the order to write them."""
        ...

    def oom_kills(self, memory_dir: Path) -> int:
        """How many processes the kernel's OOM killer killed in this cgroup."""
        ...

    def memory(self, memory_dir: Path) -> tuple[int | None, int | None]:
        """(usage, limit) in bytes."""
        ...

    def cpu_ns(self, path: Path) -> int | None: ...


# Files that exist only when the kernel accounts swap (CONFIG_MEMCG_SWAP, swapaccount=1):
# without them there is no swap to limit, so they are skipped rather than failing the run.
OPTIONAL_FILES = {"memory.memsw.limit_in_bytes", "memory.swap.max"}


class V1:
    """cgroup v1: a hierarchy per controller, limits in files named after the controller."""

    version = 1

    def limit_files(self, controller: str, limits: Limits) -> list[tuple[str, str]]:
        files: list[tuple[str, str]] = []
        if controller == "memory" and limits.memory is not None:
            # memory.memsw is memory + swap together and must never be below memory.limit: write
            # the memory limit first (the new cgroup starts unlimited in both).
            files.append(("memory.limit_in_bytes", str(limits.memory)))
            files.append(("memory.memsw.limit_in_bytes", str(limits.memory_and_swap())))
        if controller == "cpu":
            if limits.cpus is not None:
                # CFS bandwidth control: at most quota microseconds of CPU time per period,
                # summed over all CPUs (so 0.5 CPUs = 50 ms per 100 ms).
                files.append(("cpu.cfs_period_us", str(CFS_PERIOD_US)))
                files.append(("cpu.cfs_quota_us", str(limits.cpu_quota_us(CFS_PERIOD_US))))
            if limits.cpu_shares is not None:
                files.append(("cpu.shares", str(limits.cpu_shares)))  # relative weight, 1024 = default
        if controller == "cpuset":
            # The new directory's cpus and mems were copied from its parent (_prepare_v1_cpuset),
            # so each may be narrowed alone.
            if limits.cpuset_cpus is not None:
                files.append(("cpuset.cpus", limits.cpuset_cpus))
            if limits.cpuset_mems is not None:
                files.append(("cpuset.mems", limits.cpuset_mems))  # memory is allocated on these nodes
        if controller == "pids" and limits.pids is not None:
            files.append(("pids.max", str(limits.pids) if limits.pids > 0 else "max"))
        return files

    def oom_kills(self, memory_dir: Path) -> int:
        # memory.oom_control: "oom_kill_disable 0 / under_oom 0 / oom_kill N" (oom_kill: Linux 4.13+).
        return _keyed(_read(memory_dir / "memory.oom_control")).get("oom_kill", 0)

    def memory(self, memory_dir: Path) -> tuple[int | None, int | None]:
        usage = _read(memory_dir / "memory.usage_in_bytes").strip()
        limit = _read(memory_dir / "memory.limit_in_bytes").strip()
        inactive = _keyed(_read(memory_dir / "memory.stat")).get("total_inactive_file", 0)
        # "No limit" in v1 is the largest page-aligned number, not a word.
        return (int(usage) - inactive if usage else None,
                int(limit) if limit and int(limit) < 2**62 else None)

    def cpu_ns(self, path: Path) -> int | None:
        usage = _read(path / "cpuacct.usage").strip()  # nanoseconds, from the cpuacct controller
        return int(usage) if usage else None


class V2:
    """cgroup v2: one hierarchy, generic file names, "max" for no limit."""

    version = 2

    def limit_files(self, controller: str, limits: Limits) -> list[tuple[str, str]]:
        files: list[tuple[str, str]] = []
        if controller == "memory" and limits.memory is not None:
            files.append(("memory.max", str(limits.memory)))
            # v2 limits swap on its own, not memory+swap together: subtract.
            total = limits.memory_and_swap()
            files.append(("memory.swap.max", "max" if total < 0 else str(total - limits.memory)))
        if controller == "cpu":
            if limits.cpus is not None:
                files.append(("cpu.max", f"{limits.cpu_quota_us(CFS_PERIOD_US)} {CFS_PERIOD_US}"))
            if limits.cpu_shares is not None:
                files.append(("cpu.weight", str(shares_to_weight(limits.cpu_shares))))
        if controller == "cpuset":
            # Empty means "the parent's" here; the kernel intersects what is asked with what the
            # parent has (cpuset.cpus.effective / cpuset.mems.effective, cgroup-v2.rst).
            if limits.cpuset_cpus is not None:
                files.append(("cpuset.cpus", limits.cpuset_cpus))
            if limits.cpuset_mems is not None:
                files.append(("cpuset.mems", limits.cpuset_mems))
        if controller == "pids" and limits.pids is not None:
            files.append(("pids.max", str(limits.pids) if limits.pids > 0 else "max"))
        return files

    def oom_kills(self, memory_dir: Path) -> int:
        # memory.events counts OOM kills in this cgroup and below (cgroup-v2.rst, "memory.events").
        return _keyed(_read(memory_dir / "memory.events")).get("oom_kill", 0)

    def memory(self, memory_dir: Path) -> tuple[int | None, int | None]:
        usage = _read(memory_dir / "memory.current").strip()
        limit = _read(memory_dir / "memory.max").strip()
        inactive = _keyed(_read(memory_dir / "memory.stat")).get("inactive_file", 0)
        return (int(usage) - inactive if usage else None,
                int(limit) if limit and limit != "max" else None)

    def cpu_ns(self, path: Path) -> int | None:
        # cpu.stat's usage_usec is a core file: present even without the cpu controller.
        usec = _keyed(_read(path / "cpu.stat")).get("usage_usec")
        return None if usec is None else usec * 1000


def shares_to_weight(shares: int) -> int:
    """v1 cpu.shares [2, 262144] (default 1024) onto v2 cpu.weight [1, 10000] (default 100),
    the linear mapping runc and crun use."""
    return 1 + ((shares - 2) * 9999) // 262142


# --- finding the hierarchies and where minirun may create cgroups -----------------------------


def hierarchies() -> list[Hierarchy]:
    """Read the mounted cgroup hierarchies from /proc/self/mountinfo (proc(5))."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, mountpoint, super_options = fields[sep + 1], fields[4], fields[sep + 3]
            if fstype == "cgroup2":
                try:
                    controllers = tuple(Path(mountpoint, "cgroup.controllers").read_text().split())
                except OSError:
                    controllers = ()
                found.append(Hierarchy(Path(mountpoint), 2, controllers))
            elif fstype == "cgroup":
                names = tuple(o for o in super_options.split(",") if o not in ("rw", "ro")
                              and not o.startswith(("release_agent", "clone_children", "xattr")))
                found.append(Hierarchy(Path(mountpoint), 1, names))
    return found


def mode() -> str:
    kinds = {h.version for h in hierarchies() if h.mountpoint.is_relative_to(CGROUP_ROOT)}
    if kinds == {2}:
        return "v2"
    return "hybrid" if kinds == {1, 2} else "v1"


def own_cgroup(h: Hierarchy) -> str:
    """This process's cgroup in hierarchy `h`, from /proc/self/cgroup (`ID:CONTROLLERS:PATH`;
    v2's line is `0::PATH`)."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if h.version == 2 and controllers == "":
                return path
            if h.version == 1 and controllers and set(controllers.split(",")) <= set(h.controllers):
                return path
    return "/"


def _delegated_base(h: Hierarchy) -> Path | None:
    """The highest directory above (or at) our own cgroup that belongs to us: what an
    administrator (or systemd's Delegate=yes) handed to this user. None if there is none."""
    base = None
    path = h.mountpoint / own_cgroup(h).lstrip("/")
    uid = os.getuid()
    while path != h.mountpoint and path.is_relative_to(h.mountpoint):
        try:
            if path.stat().st_uid != uid or not os.access(path, os.W_OK):
                break
        except OSError:
            break
        base = path
        path = path.parent
    return base


def find_places(rootless: bool) -> tuple[Path, ...]:
    """The parent directories (one per hierarchy) a new container cgroup goes under: PARENT in
    each hierarchy minirun uses (rootless: under the directory delegated to this user). Found
    from /proc/self/mountinfo (and rootless /proc/self/cgroup), so `minirun run` finds them once
    (runtime.prepare) and hands them on as a value, through the checks, the record's plan and the
    mkdir to the monitor's OOM check and teardown; a verb that only has an id (rm, prune, exec)
    finds them itself (of_container)."""
    places = []
    for h in hierarchies():
        if not h.mountpoint.is_relative_to(CGROUP_ROOT):
            continue
        if h.version == 1 and "name=systemd" in h.controllers and rootless:
            continue  # systemd's bookkeeping tree: root puts its containers there too, or they
            # would see the host's root of it (and its release_agent) through their cgroup namespace
        if rootless:
            base = _delegated_base(h)
            if base is not None:
                places.append(base / PARENT)
            continue
        places.append(h.mountpoint / PARENT)
    return tuple(places)


def check_limits_possible(limits: Limits, rootless: bool, places: tuple[Path, ...]) -> None:
    """Before anything is created: can the limits asked for be enforced in `places` at all?"""
    needed = set(limits.controllers())
    if not needed:
        return
    offered: set[str] = set()
    for h in hierarchies():
        place = next((p for p in places if p.is_relative_to(h.mountpoint)), None)
        if place is None:
            continue
        if h.version == 1:
            offered |= set(h.controllers)
        else:  # v2: what the directory above minirun's own may hand down
            offered |= set(_read(place.parent / "cgroup.controllers").split())
    missing = sorted(needed - offered)
    if not missing:
        return
    if rootless:
        raise MinirunError(
            f"cannot apply resource limits rootless: no cgroup with the {', '.join(missing)} controller is "
            "delegated to this user (cgroup v2 with systemd's Delegate=yes for user@UID.service gives one)")
    raise MinirunError(f"cannot apply resource limits: no cgroup hierarchy has the {', '.join(missing)} "
                       "controller on this host")


# --- create, limit, fill, read, empty, remove -------------------------------------------------


def prepare_v1_cpuset(path: Path) -> None:
    """A new v1 cpuset cgroup starts with empty cpuset.cpus/mems, and the kernel refuses to add a
    task to it (ENOSPC) until they are set: copy them from the parent (cpuset(7)).

    Only v1: a v2 cgroup has a cpuset.cpus file too, empty, but empty there means "the parent's
    CPUs" (cgroup-v2.rst, "cpuset.cpus.effective"), and the v2 root has no cpuset.cpus to copy."""
    if (path / "cgroup.controllers").exists():  # a v2 directory (v1 ones have no such file)
        return
    for name in ("cpuset.cpus", "cpuset.mems"):
        target = path / name
        if target.exists() and not target.read_text().strip():
            target.write_text((path.parent / name).read_text())


def enable_controllers(parent: Path, wanted: set[str]) -> None:
    """v2: switch controllers on for the children of `parent` (its cgroup.subtree_control).

    The "no internal processes" rule (cgroup-v2.rst): a cgroup other than the root that holds
    processes cannot hand controllers to its children (EBUSY). minirun's own parent directory
    never holds processes, so this works wherever the directory above it is empty or the root.
    A controller can be given only if the parent has it itself (its cgroup.controllers), so
    the grandparent is asked first.
    """
    available = set(_read(parent / "cgroup.controllers").split())
    missing = wanted - available
    if missing and (parent.parent / "cgroup.subtree_control").exists():
        enable_controllers(parent.parent, missing)
    on = set(_read(parent / "cgroup.subtree_control").split())
    for name in sorted(wanted - on):
        (parent / "cgroup.subtree_control").write_text(f"+{name}")


def frozen(path: Path) -> bool:
    """Is this cgroup frozen, or being frozen, by itself or by a cgroup above it? A process moved
    in stops at once, and whoever waits for it (run, create) waits forever.
    v1: freezer.state is the effective state: FREEZING or FROZEN also when only a parent was
    frozen (cgroup-v1/freezer-subsystem.rst). v2: cgroup.events' "frozen 1" is the effective
    state (an ancestor's freeze included; a new child of a frozen cgroup is frozen at birth),
    cgroup.freeze only the cgroup's own request, "1" while its processes are still being frozen
    (cgroup-v2.rst, "cgroup.freeze"). minirun-oci refuses a frozen cgroupsPath with this too."""
    if _read(path / "freezer.state").strip() in ("FREEZING", "FROZEN"):
        return True
    effective = _keyed(_read(path / "cgroup.events")).get("frozen") == 1
    return effective or _read(path / "cgroup.freeze").strip() == "1"


def check_not_frozen(places: tuple[Path, ...]) -> None:
    """Before anything is created: is a place a container cgroup would go frozen (PARENT, e.g.
    MINIRUN_CGROUP_PARENT, or a directory above it)? A place not made yet inherits the state
    of the nearest directory that exists, so that one is asked."""
    for place in places:
        existing = place
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        if frozen(existing):
            raise frozen_parent(existing)


def frozen_parent(path: Path) -> MinirunError:
    return MinirunError(f"the cgroup {path} is frozen: a container started under it would stop at once "
                        "(thaw it, or set MINIRUN_CGROUP_PARENT to another)")


# --- pausing: the freezer (`minirun pause` and `unpause`; minirun-oci's pause and resume) ---------
# The freezer stops every task of a cgroup where it stands, and lets it go on later unaware.
# docker pause uses it, not SIGSTOP: a stop is seen (the parent gets SIGCHLD, a shell's job control
# reacts) and a SIGCONT from inside would undo it.
#   v1: freezer.state takes FROZEN or THAWED; it reads FREEZING until every task has stopped
#       (cgroup-v1/freezer-subsystem.rst).
#   v2: cgroup.freeze takes 1 or 0; cgroup.events says "frozen 1" once every task has stopped
#       (cgroup-v2.rst, "cgroup.freeze").
# A frozen task acts on a signal only when thawed. v2 lets a fatal one (SIGKILL) through, v1 holds
# even that: whoever stops or kills a paused container thaws it after the signal, as docker does.

FREEZE_TIMEOUT = 10.0  # seconds for every task to stop (a task in uninterruptible sleep may not)


class Freezer(NamedTuple):
    file: Path  # freezer.state (v1) or cgroup.freeze (v2)
    on: str  # what stops the tasks: FROZEN, 1
    off: str  # what lets them go on: THAWED, 0


def freezers(cgroup: Cgroup) -> list[Freezer]:
    """The container's freezers: v1's first where it has one (the one runc and docker use on a v1
    or hybrid host), then v2's; none without a cgroup (rootless, nothing delegated)."""
    v1 = [Freezer(p / "freezer.state", "FROZEN", "THAWED") for p in cgroup.paths
          if (p / "freezer.state").exists()]
    v2 = [Freezer(p / "cgroup.freeze", "1", "0") for p in cgroup.paths if (p / "cgroup.freeze").exists()]
    return v1 + v2


def paused(cgroup: Cgroup) -> bool:
    """The kernel's word: frozen by minirun, by minirun-oci, by hand or by a cgroup above."""
    return any(frozen(path) for path in cgroup.paths)


def freeze(cgroup: Cgroup, timeout: float = FREEZE_TIMEOUT) -> None:
    """Stop every task with the first freezer, and wait until the kernel says that all have
    stopped. If they have not in time, thaw them again: a container half frozen is neither
    paused nor running."""
    found = freezers(cgroup)
    if not found:
        raise MinirunError("it has no cgroup of its own (rootless, and no cgroup delegated to the user: "
                           "see `minirun doctor`)")
    found[0].file.write_text(found[0].on)
    if not _settled(found[0], True, timeout):
        found[0].file.write_text(found[0].off)
        raise MinirunError(f"its processes did not all stop within {timeout:.0f} s (one in "
                           "uninterruptible sleep?): thawed again")


def thaw(cgroup: Cgroup, timeout: float = FREEZE_TIMEOUT) -> None:
    """Let every task go on (each freezer that holds them: whoever froze it), and wait until the
    kernel says so. A cgroup above that is frozen keeps them stopped (the effective state is the
    ancestors' too): that is said, not waited on."""
    for found in freezers(cgroup):
        if _read(found.file).strip() != found.off:
            found.file.write_text(found.off)
        if frozen(found.file.parent.parent):
            raise MinirunError(f"the cgroup above it, {found.file.parent.parent}, is frozen: thaw that one")
        if not _settled(found, False, timeout):
            raise MinirunError(f"{found.file} says {found.off}, and its processes are still stopped")


def _settled(found: Freezer, stopped: bool, timeout: float) -> bool:
    """Has the freeze (stopped) or the thaw taken effect, within the timeout?"""
    if found.file.name == "cgroup.freeze":  # v2: the kernel wakes pollers of cgroup.events
        return wait_event(found.file.parent, "frozen", int(stopped), timeout)
    deadline, pause = time.monotonic() + timeout, 0.001  # v1: no notification; read it again
    while _read(found.file).strip() != ("FROZEN" if stopped else "THAWED"):
        if time.monotonic() > deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    return True


def create(container_id: str, places: tuple[Path, ...]) -> Cgroup | None:
    """mkdir the container's cgroup in each of `places` (every hierarchy we may write); None if
    there is none. A directory born frozen (its parent was frozen after check_not_frozen) is
    refused."""
    paths = []
    try:
        for parent in places:
            path = parent / container_id
            _mkdir_under_shared_parent(path)
            paths.append(path)
            prepare_v1_cpuset(path)
            if frozen(path):
                raise frozen_parent(parent)
    except (OSError, MinirunError):
        remove(Cgroup(tuple(paths)))
        raise
    return Cgroup(tuple(paths)) if paths else None


def _mkdir_under_shared_parent(path: Path) -> None:
    """mkdir PARENT/ID, where PARENT (shared by all containers) is removed by the last one to
    go: if another minirun removes PARENT between our two mkdirs, simply try again."""
    last: OSError | None = None
    for _ in range(100):
        try:
            path.parent.mkdir(exist_ok=True)
            prepare_v1_cpuset(path.parent)
            if (path.parent / "cgroup.subtree_control").exists():
                enable_v2_controllers(path.parent)
            path.mkdir()  # from here on PARENT is not empty, so nobody can remove it
            return
        except FileNotFoundError as e:
            last = e  # PARENT was removed under us, at any of the steps above: again
    # Not a race any more: something is missing for good; say what.
    raise OSError(errno.EAGAIN, f"cannot create cgroup {path}: {last}")


def enable_v2_controllers(parent: Path) -> None:
    """Give the children of `parent` the controllers minirun knows, as far as the place above
    offers them (the root offers all it has); what cannot be had (no such controller, or
    EBUSY/EACCES above) is left out, and `apply` says so if a limit needs it."""
    offered = set(_read(parent.parent / "cgroup.controllers").split())
    offered |= set(_read(parent / "cgroup.controllers").split())
    for name in V2_CONTROLLERS:
        if name in offered:
            with contextlib.suppress(OSError):
                enable_controllers(parent, {name})


def apply(cgroup: Cgroup | None, limits: Limits) -> None:
    """Write the limits, each into the hierarchy that has its controller. Before the container's
    first process is moved in, so it never runs unlimited."""
    for controller in limits.controllers():
        found = cgroup.path_for(controller) if cgroup is not None else None
        if found is None:
            raise MinirunError(f"cannot apply the {controller} limit: the container's cgroup has no "
                               f"{controller} controller (not delegated, or bound to another hierarchy)")
        path, driver = found
        for name, value in driver.limit_files(controller, limits):
            if name in OPTIONAL_FILES and not (path / name).exists():
                continue
            try:
                (path / name).write_text(value)
            except OSError as e:
                raise MinirunError(f"cannot set {name} to {value}: {e.strerror}") from None


# --- the device policy and default limits: what every container gets, asked for or not ---------

# runc's default device allowlist (libcontainer/specconv, docker's too): mknod of any device (the
# node is useless without the right to open it), and read/write/mknod of the harmless ones. All
# other devices are refused even to a container root that could make their node (--userns=host).
# (type, major, minor, access); None means any.
DEVICE_ALLOWLIST: tuple[tuple[str, int | None, int | None, str], ...] = (
    ("c", None, None, "m"), ("b", None, None, "m"),
    ("c", 1, 3, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 7, "rwm"),  # null, zero, full
    ("c", 1, 8, "rwm"), ("c", 1, 9, "rwm"),  # random, urandom
    ("c", 5, 0, "rwm"), ("c", 5, 1, "rwm"), ("c", 5, 2, "rwm"),  # tty, console, ptmx
    ("c", 136, None, "rwm"),  # /dev/pts/*
    ("c", 10, 200, "rwm"),  # /dev/net/tun
)
DEFAULT_PIDS_LIMIT = 2048  # podman's default --pids-limit: a fork bomb stops there


def apply_policy(cgroup: Cgroup | None, limits: Limits, rootless: bool) -> None:
    """The device allowlist (v1 devices.deny + devices.allow, and a device program on v2) and the
    default pids limit, before the first process is moved in. Rootless there is no devices
    controller to write and no CAP_SYS_ADMIN for bpf(2); a user namespace cannot open a device it
    made anyway (mknod(2) needs CAP_MKNOD in the initial namespace)."""
    if cgroup is None:
        return
    found = cgroup.path_for("pids")
    if limits.pids is None and found is not None:
        (found[0] / "pids.max").write_text(str(DEFAULT_PIDS_LIMIT))
    if rootless:
        return
    v1_done = False
    for path in cgroup.paths:
        if (path / "devices.deny").exists():
            (path / "devices.deny").write_text("a")  # first nothing, then the allowlist (devices.txt)
            for kind, major, minor, access in DEVICE_ALLOWLIST:
                number = f"{'*' if major is None else major}:{'*' if minor is None else minor}"
                (path / "devices.allow").write_text(f"{kind} {number} {access}")
            v1_done = True
    v2 = cgroup.v2_path()
    if v2 is not None:
        try:
            attach_device_program(v2, DEVICE_ALLOWLIST)
        except OSError as e:
            if not v1_done:  # no policy at all: refuse to run rather than run with every device
                raise MinirunError(f"cannot set the device policy of the container's cgroup: {e}") from None


def attach_device_program(v2_path: Path, rules: tuple[tuple[str, int | None, int | None, str], ...]) -> None:
    """v2 has no devices controller: the allowlist `rules` as an eBPF program on the cgroup
    (BPF_CGROUP_DEVICE). minirun-oci's linux.resources.devices too."""
    from minirun import kernel

    prog = kernel.bpf_load_device_program(device_program(rules))
    try:
        directory = os.open(v2_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            kernel.bpf_attach_device_program(prog, directory)
        finally:
            os.close(directory)
    finally:
        os.close(prog)  # the cgroup holds the program now


def device_program(rules: tuple[tuple[str, int | None, int | None, str], ...]) -> bytes:
    """The allowlist as eBPF (struct bpf_insn[]) for BPF_PROG_TYPE_CGROUP_DEVICE: the kernel passes
    struct bpf_cgroup_dev_ctx {u32 access_type (access << 16 | type); u32 major; u32 minor} in r1;
    the program returns 1 to allow, 0 to refuse (EPERM). One block per rule; a rule that does not
    match jumps to the next one; the last block refuses."""
    import struct

    def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
        return struct.pack("<BBhi", code, src << 4 | dst, off, imm)

    ldx_w, mov_x, mov_k, and_k, rsh_k, jne_k, exit_ = 0x61, 0xBF, 0xB7, 0x57, 0x77, 0x55, 0x95
    types, bits = {"b": 1, "c": 2}, {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_DEV_*, BPF_DEVCG_ACC_*
    code = [insn(ldx_w, 2, 1, 0), insn(mov_x, 3, 2), insn(and_k, 2, imm=0xFFFF), insn(rsh_k, 3, imm=16),
            insn(ldx_w, 4, 1, 4), insn(ldx_w, 5, 1, 8)]  # r2 type, r3 access, r4 major, r5 minor
    for kind, major, minor, access in rules:
        allowed = sum(bits[a] for a in access)
        checks = [(jne_k, 2, types[kind])]
        checks += [(mov_x, 1, 3), (and_k, 1, ~allowed), (jne_k, 1, 0)]  # asks for nothing more
        checks += [(jne_k, 4, major)] if major is not None else []
        checks += [(jne_k, 5, minor)] if minor is not None else []
        block_length = len(checks) + 2  # + r0 = 1; exit
        for position, (op, dst, value) in enumerate(checks):
            if op == jne_k:
                code.append(insn(op, dst, off=block_length - position - 1, imm=value))
            elif op == mov_x:
                code.append(insn(op, dst, value))
            else:
                code.append(insn(op, dst, imm=value))
        code += [insn(mov_k, 0, imm=1), insn(exit_)]
    code += [insn(mov_k, 0, imm=0), insn(exit_)]
    return b"".join(code)


def open_v2(cgroup: Cgroup | None) -> int | None:
    """An fd of the container's v2 directory for clone3's CLONE_INTO_CGROUP (kernel.py), or None
    without one (a v1 host, a rootless container without a delegated cgroup)."""
    path = cgroup.v2_path() if cgroup is not None else None
    if path is None:
        return None
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None


def add_process(cgroup: Cgroup, pid: int, born_in_v2: bool = False, v1_joined: bool = False) -> None:
    """Move `pid` into the container's cgroups; its future children are born there. born_in_v2:
    clone3 made it in the v2 directory already; v1_joined: it moved itself into the v1 ones
    (join_v1), so only what is left is written here."""
    v2 = cgroup.v2_path()
    for path in cgroup.paths:
        if (path == v2 and born_in_v2) or (path != v2 and v1_joined):
            continue
        (path / "cgroup.procs").write_text(str(pid))


def open_v1_tasks(cgroup: Cgroup | None) -> tuple[int, ...]:
    """The `tasks` file of each v1 directory of the container's cgroup, opened for writing by the
    parent before clone: the child moves itself in with them (join_v1). A v2 directory has no
    `tasks` file; the child is born there (clone3) or moved by add_process."""
    fds: list[int] = []
    try:
        for path in cgroup.paths if cgroup is not None else ():
            if (path / "tasks").exists():
                fds.append(os.open(path / "tasks", os.O_WRONLY | os.O_CLOEXEC))
    except OSError:
        close_all(fds)
        raise
    return tuple(fds)


def join_v1(tasks: tuple[int, ...]) -> None:
    """Move the calling process into its v1 cgroups: "0" (the writer itself) into each `tasks`
    file open_v1_tasks opened, then close them. The caller must be a single thread, as the
    clone child is (clone(2) copies only the calling thread): `tasks` moves one thread.

    Why the process moves itself: a pid written to cgroup.procs (or another thread's to `tasks`)
    takes the global cgroup_threadgroup_rwsem for writing, and its first taker waits for an RCU
    grace period (~10 ms on the development host, README "Start-up time"). Since Linux 6.0 a
    thread that moves *itself* alone takes no such lock (kernel/cgroup/cgroup.c,
    cgroup_procs_write_start: "If we migrate a single thread ... If the thread is `current` ...
    we can skip the global lock"); before 6.0 the write takes it: correct, only slower. The
    permission check uses the credentials of whoever opened the file (of->file->f_cred, the
    CVE-2021-4197 fix), i.e. the parent's: the child's new user namespace changes nothing."""
    try:
        for fd in tasks:
            os.write(fd, b"0")
    finally:
        close_all(tasks)


def close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def oom_killed(cgroup: Cgroup) -> bool:
    """Did the kernel's OOM killer kill a process of the container (for State.OOMKilled)?"""
    found = cgroup.path_for("memory")
    return found is not None and found[1].oom_kills(found[0]) > 0


def usage(cgroup: Cgroup) -> Usage:
    memory: tuple[int | None, int | None] = (None, None)
    if (found := cgroup.path_for("memory")) is not None:
        memory = found[1].memory(found[0])
    cpu = None
    if (acct := cgroup.path_for("cpuacct")) is not None:
        cpu = acct[1].cpu_ns(acct[0])
    elif (v2 := cgroup.v2_path()) is not None:
        cpu = V2().cpu_ns(v2)
    pids = None
    if (found := cgroup.path_for("pids")) is not None:
        text = _read(found[0] / "pids.current").strip()
        pids = int(text) if text else None
    return Usage(memory[0], memory[1], cpu, pids)


def _pids(path: Path) -> list[int]:
    """The processes in `path` and in every cgroup below it."""
    found = []
    for directory in subtree(path):
        with contextlib.suppress(OSError):
            found += [int(p) for p in (directory / "cgroup.procs").read_text().split()]
    return found


def subtree(path: Path) -> list[Path]:
    """`path` and every cgroup below it, deepest first. A process whose root may write its
    container's cgroup (--userns=host with CAP_SYS_ADMIN, or rootless in a delegated one) can
    make cgroups in it and move there, as systemd or a nested runtime in a container does. A
    cgroup's cgroup.procs lists only its own processes, and rmdir(2) of a cgroup that has
    children fails with EBUSY (cgroups(7)): both must see the whole subtree."""
    below = [Path(root, d) for root, dirs, _ in os.walk(path, topdown=False) for d in dirs]
    return [*below, path]


def kill(cgroup: Cgroup) -> None:
    """Kill every process left in the cgroup: cgroup.kill on v2 (Linux 5.14+), else one by one;
    and thaw a frozen one, so that they die (the freezer section above)."""
    v2 = cgroup.v2_path()
    if v2 is not None and (v2 / "cgroup.kill").exists():
        with contextlib.suppress(OSError):
            (v2 / "cgroup.kill").write_text("1")
    for path in cgroup.paths:
        for pid in _pids(path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # Paused: v1's freezer holds even SIGKILL until thawed, and a cgroup the container made
        # below and froze itself stays frozen when its parent thaws (freezer-subsystem.rst).
        for directory in subtree(path):
            if (directory / "freezer.state").exists():
                with contextlib.suppress(OSError):
                    (directory / "freezer.state").write_text("THAWED")


def wait_empty(v2_path: Path, timeout: float) -> bool:
    """v2: wait until no process is left in the cgroup (or below it)."""
    return wait_event(v2_path, "populated", 0, timeout)


def wait_event(v2_path: Path, key: str, value: int, timeout: float) -> bool:
    """v2: wait until cgroup.events says `key value` (populated 0, frozen 1). The kernel wakes
    pollers of that file with POLLPRI when it changes (cgroup-v2.rst, "cgroup.events"), so no
    busy loop is needed. True too if the cgroup is gone."""
    events = v2_path / "cgroup.events"
    deadline = time.monotonic() + timeout
    try:
        fd = os.open(events, os.O_RDONLY)
    except OSError:
        return True  # already removed
    try:
        poller = select.poll()
        poller.register(fd, select.POLLPRI)
        while True:
            if _keyed(os.pread(fd, 4096, 0).decode()).get(key, 0) == value:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            poller.poll(left * 1000)
    finally:
        os.close(fd)


def remove(cgroup: Cgroup, timeout: float = 5.0) -> None:
    """Kill what is left, then rmdir each directory, the cgroups made below it first (a cgroup can
    be removed once it has no process and no child).

    rmdir fails with EBUSY while dying processes are still being torn down, so retry briefly.
    """
    kill(cgroup)
    v2 = cgroup.v2_path()
    if v2 is not None:
        wait_empty(v2, timeout)
    deadline = time.monotonic() + timeout
    for path in cgroup.paths:
        for directory in subtree(path):  # what the container made in it first (see subtree)
            while True:
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise
                    kill(cgroup)
                    time.sleep(0.01)
        # The shared parent goes with its last container; it is busy while others remain.
        with contextlib.suppress(OSError):
            path.parent.rmdir()


# --- a container's cgroup, from its id ------------------------------------------------------------


def of_container(container_id: str, claimed: list[str] | None = None,
                 places: tuple[Path, ...] | None = None) -> Cgroup:
    """The container's cgroup directories that exist: PARENT/ID in each hierarchy minirun uses
    (derived from the id, never taken from a record: a record naming /sys/fs/cgroup/system.slice
    must not make `rm` kill and remove that), plus those a record claims *if* they have exactly
    that shape (.../PARENT/ID under /sys/fs/cgroup: a rootless user's delegated subtree depends
    on the session minirun ran in, so `rm` from another shell may not derive the same place).
    `places`: find_places' answer, where the caller has it (the monitor of the run that made
    the cgroup); else found here."""
    from minirun.paths import is_rootless

    if places is None:
        places = find_places(is_rootless())
    found = [place / container_id for place in places]
    for text in claimed or []:
        path = Path(text)
        if (path.is_absolute() and os.path.normpath(text) == text and ".." not in path.parts
                and path.is_relative_to(CGROUP_ROOT) and path.name == container_id
                and path.parent.name == PARENT and path not in found):
            found.append(path)
    return Cgroup(tuple(p for p in found if p.is_dir() and not p.is_symlink()))


def planned(container_id: str, places: tuple[Path, ...]) -> list[Path]:
    """Where `create` will make the container's cgroup: written into the record first, so that
    a SIGKILL between the two never leaves a cgroup no record names."""
    return [place / container_id for place in places]


def has_processes(cgroup: Cgroup) -> bool:
    return any(_pids(path) for path in cgroup.paths)


def container_ids() -> set[str]:
    """The ids of every container cgroup under PARENT in the hierarchies minirun uses."""
    from minirun.paths import is_rootless

    ids = set()
    for place in find_places(is_rootless()):
        for path in _listdir(place):
            if len(path.name) == 64 and all(c in "0123456789abcdef" for c in path.name):
                ids.add(path.name)
    return ids
