"""Control groups: one per container, so its processes can be counted, limited and killed together.

Linux has two cgroup file systems (cgroups(7)):
 - v1: one hierarchy per controller, mounted at /sys/fs/cgroup/<controller> (memory, cpu, pids,
   ...). A process is in one cgroup *per hierarchy*, so a container has one directory in each.
 - v2: a single "unified" hierarchy at /sys/fs/cgroup (or, on "hybrid" hosts like systemd's
   older default, at /sys/fs/cgroup/unified next to the v1 ones). Controllers are switched on
   for children in the parent's cgroup.subtree_control.
A host is "v2" (unified only), "v1" (v1 only) or "hybrid" (v1 controllers plus a v2 tree,
usually without controllers). On hybrid hosts minirun uses every v1 controller hierarchy for
accounting and limits, and the v2 tree too, for its reliable teardown files (cgroup.kill).

Why not the `cgroupspy` package: it only knows v1 and has no pids controller; the few files
minirun writes are clearer written directly.

Rootless: writing to a cgroup needs the directory to be delegated to the user (systemd's
`Delegate=yes`), which only v2 supports safely. Without a writable place a rootless container
simply runs without its own cgroup (like podman with cgroup_manager=cgroupfs, rootless).
"""

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT = os.environ.get("MINIRUN_CGROUP_PARENT", "minirun")  # configurable, like --cgroup-parent


@dataclass(frozen=True)
class Hierarchy:
    mountpoint: Path
    version: int  # 1 or 2
    controllers: tuple[str, ...]  # v1: the mount's controllers; v2: those in cgroup.controllers


@dataclass(frozen=True)
class Cgroup:
    """A container's cgroup: one directory per hierarchy it was created in."""

    paths: tuple[Path, ...]

    def v2_path(self) -> Path | None:
        return next((p for p in self.paths if (p / "cgroup.kill").exists()
                     or (p / "cgroup.events").exists()), None)


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


def _own_cgroup_v2() -> str:
    """This process's v2 cgroup (the `0::/path` line of /proc/self/cgroup)."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return line.strip()[3:]
    return "/"


def _places(rootless: bool) -> list[Path]:
    """The parent directories (one per hierarchy) a new container cgroup goes under."""
    places = []
    for h in hierarchies():
        if not h.mountpoint.is_relative_to(CGROUP_ROOT):
            continue
        if h.version == 1 and "name=systemd" in h.controllers:
            continue  # systemd's own bookkeeping tree: not ours to write into
        if rootless:
            # Only a delegated v2 subtree: our own cgroup's directory must be ours to write.
            if h.version != 2:
                continue
            own = h.mountpoint / _own_cgroup_v2().lstrip("/")
            if os.access(own, os.W_OK) and own.stat().st_uid == os.getuid():
                places.append(own / PARENT)
            continue
        places.append(h.mountpoint / PARENT)
    return places


def _prepare_v1_cpuset(path: Path) -> None:
    """A new v1 cpuset cgroup starts with empty cpuset.cpus/mems, and the kernel refuses to add a
    task to it (ENOSPC) until they are set: copy them from the parent (cpuset(7))."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        target = path / name
        if target.exists() and not target.read_text().strip():
            target.write_text((path.parent / name).read_text())


def create(container_id: str, rootless: bool) -> Cgroup | None:
    """mkdir the container's cgroup in every hierarchy we may write; None if there is none."""
    paths = []
    try:
        for parent in _places(rootless):
            path = parent / container_id
            _mkdir_under_shared_parent(path)
            paths.append(path)
            _prepare_v1_cpuset(path)
    except OSError:
        remove(Cgroup(tuple(paths)))
        raise
    return Cgroup(tuple(paths)) if paths else None


def _mkdir_under_shared_parent(path: Path) -> None:
    """mkdir PARENT/ID, where PARENT (shared by all containers) is removed by the last one to
    go: if another minirun removes PARENT between our two mkdirs, simply try again."""
    for _ in range(100):
        path.parent.mkdir(exist_ok=True)
        _prepare_v1_cpuset(path.parent)
        try:
            path.mkdir()
            return
        except FileNotFoundError:
            continue
    raise OSError(errno.EAGAIN, f"cannot create cgroup {path}")


def add_process(cgroup: Cgroup, pid: int) -> None:
    """Move `pid` into the container's cgroups; its future children are born there."""
    for path in cgroup.paths:
        (path / "cgroup.procs").write_text(str(pid))


def _pids(path: Path) -> list[int]:
    try:
        return [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def kill(cgroup: Cgroup) -> None:
    """Kill every process left in the cgroup: cgroup.kill on v2 (Linux 5.14+), else one by one."""
    v2 = cgroup.v2_path()
    if v2 is not None and (v2 / "cgroup.kill").exists():
        with contextlib.suppress(OSError):
            (v2 / "cgroup.kill").write_text("1")
    for path in cgroup.paths:
        for pid in _pids(path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def remove(cgroup: Cgroup, timeout: float = 5.0) -> None:
    """Kill what is left, then rmdir each directory (a cgroup can be removed once it is empty).

    rmdir fails with EBUSY while dying processes are still being torn down, so retry briefly.
    """
    kill(cgroup)
    deadline = time.monotonic() + timeout
    for path in cgroup.paths:
        while True:
            try:
                path.rmdir()
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


def from_paths(paths: list[str]) -> Cgroup:
    return Cgroup(tuple(Path(p) for p in paths))
