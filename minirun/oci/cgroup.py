"""linux.cgroupsPath and linux.resources: the container's cgroup, made and limited before its
process is moved in (the same order as minirun/cgroups.py, which this reuses for the parts
that do not depend on where the directory is: adding, killing, removing).

cgroupsPath names one directory relative to each hierarchy's root (absolute or not: runc's
cgroupfs driver reads both so); without one, /minirun-oci/ID. With --systemd-cgroup (podman on
a systemd host) it is "slice:prefix:name", and the directory is the one systemd would give that
scope (systemd_path): minirun does not ask systemd over D-Bus for a scope, it makes the same
path itself on cgroupfs, as crun does when systemd cannot be reached. Each resource goes into the
hierarchy that has its controller: v1 file names on v1 and hybrid hosts, v2 names on a
unified one (cgroup-v1/*.rst, cgroup-v2.rst). A resource this host cannot apply fails create.
"""

import contextlib
import os
from pathlib import Path
from typing import Any

from minirun import cgroups
from minirun.cgroups import Cgroup
from minirun.errors import MinirunError


def systemd_running() -> bool:
    """Is this host booted with systemd (sd_booted(3): /run/systemd/system exists)?"""
    return Path("/run/systemd/system").is_dir()


def expand_slice(name: str) -> list[str]:
    """A slice's place in the tree: each dash is a level (systemd.slice(5)), so user-1000.slice
    is user.slice/user-1000.slice; "-.slice" (or "-") is the root slice."""
    if name in ("-", "-.slice"):
        return []
    words = name.removesuffix(".slice").split("-")
    if not name.endswith(".slice") or "/" in name or "" in words:
        raise MinirunError(f"--systemd-cgroup: {name!r} is not a slice name (like machine.slice)")
    return ["-".join(words[: i + 1]) + ".slice" for i in range(len(words))]


def systemd_path(cgroups_path: str | None, container_id: str) -> str:
    """--systemd-cgroup's "slice:prefix:name" as the cgroup path of the unit systemd would make:
    SLICE-PATH/prefix-name.scope (systemd.scope(5)), or SLICE-PATH/name when name is a slice.
    No cgroupsPath: system.slice:minirun-oci:ID (runc's default, with our prefix)."""
    given = cgroups_path or f"system.slice:minirun-oci:{container_id}"
    parts = given.split(":")
    if len(parts) != 3:
        raise MinirunError(f"--systemd-cgroup: linux.cgroupsPath {given!r} is not slice:prefix:name")
    slice_, prefix, name = parts
    if not name or "/" in prefix + name or name in (".", ".."):
        raise MinirunError(f"--systemd-cgroup: linux.cgroupsPath {given!r}: a name without '/' is needed")
    unit = name if name.endswith(".slice") else (f"{prefix}-{name}.scope" if prefix else f"{name}.scope")
    return "/".join([*expand_slice(slice_ or "system.slice"), unit])


def places(cgroups_path: str | None, container_id: str, systemd: bool = False) -> list[Path]:
    if systemd:
        relative = systemd_path(cgroups_path, container_id)
    else:
        relative = (cgroups_path or f"/minirun-oci/{container_id}").strip("/")
    # "" or "." would be each hierarchy's root cgroup (pathlib drops "."), ".." a way out of it.
    if not relative or {".", ".."} & set(relative.split("/")):
        raise MinirunError(f"invalid linux.cgroupsPath {cgroups_path!r}")
    found = []
    for h in cgroups.hierarchies():
        if h.mountpoint.is_relative_to(cgroups.CGROUP_ROOT):
            found.append(h.mountpoint / relative)
    return found


def missing(paths: list[Path]) -> list[Path]:
    """The directories create will make, each level once, the outermost first: what the record
    names as minirun's, so that delete removes those and nothing else."""
    found: list[Path] = []
    for path in paths:
        levels = []
        level = path
        while not level.exists() and level not in found:
            levels.append(level)
            level = level.parent
        found += reversed(levels)
    return found


def refuse_unfit(path: Path) -> None:
    """A cgroup that exists already is joined only if nothing runs in it, anywhere below it, and it
    is not frozen (checked in create, for new directories too: one made below a frozen cgroup is
    born frozen, cgroups.frozen): runc refuses the same since 1.2, 1.1 warned
    (opencontainers/runc#3132, #3223; config-linux.md lets a runtime reject an unfit cgroup).
    Otherwise a config.json's cgroupsPath ("/system.slice", or --systemd-cgroup's
    "-::system.slice") would get its limits written into the host's cgroup, and delete would kill
    what runs there (cgroup.kill, or SIGKILL to each of cgroup.procs)."""
    for where, _, _ in os.walk(path):
        try:
            procs = (Path(where) / "cgroup.procs").read_text().split()
        except OSError:
            continue
        if procs:
            raise MinirunError(f"linux.cgroupsPath {path}: the cgroup is not empty "
                               f"({len(procs)} process(es) in {where}); a container needs one of its own")


def create(paths: list[Path], to_make: list[Path], made: list[Path]) -> Cgroup:
    """mkdir each level of `to_make` (a v1 cpuset level needs cpus and mems before it may hold a
    task), appending it to `made` as it goes (what a failure half-way removes); a directory
    there already must be fit to join (refuse_unfit)."""
    for path in paths:
        if path not in to_make:
            refuse_unfit(path)
    for new in to_make:
        # On v2 a new level has only the controllers its parent's cgroup.subtree_control hands
        # down, so each parent hands down those minirun applies first, as runc does from the root
        # down: otherwise linux.resources finds no pids or memory files (cgroup-v2.rst, "Enabling
        # and Disabling").
        if (new.parent / "cgroup.subtree_control").exists():
            cgroups.enable_v2_controllers(new.parent)
        new.mkdir()  # EEXIST if another made it meanwhile: then it is not ours
        made.append(new)
        cgroups.prepare_v1_cpuset(new)
    for path in paths:
        if cgroups.frozen(path):
            raise MinirunError(f"linux.cgroupsPath {path}: the cgroup is frozen")
    return Cgroup(tuple(paths))


def _write(cgroup: Cgroup, controller: str, v1: list[tuple[str, Any]], v2: list[tuple[str, Any]]) -> None:
    wanted = [(n, v) for n, v in v1 if v is not None] + [(n, v) for n, v in v2 if v is not None]
    if not wanted:
        return
    found = cgroup.path_for(controller)
    if found is None:
        raise MinirunError(
            f"cannot apply linux.resources: no {controller} controller for the container's cgroup"
        )
    path, driver = found
    for name, value in v1 if driver.version == 1 else v2:
        if value is None:
            continue
        try:
            (path / name).write_text(str(value))
        except OSError as e:
            raise MinirunError(f"cannot set {name} to {value}: {e.strerror}") from None


def apply(cgroup: Cgroup, resources: dict[str, Any]) -> None:
    """linux.resources (config-linux.md), before the first process is moved in."""
    memory = resources.get("memory") or {}
    limit, swap = memory.get("limit"), memory.get("swap")
    _write(
        cgroup,
        "memory",
        [
            ("memory.limit_in_bytes", limit),
            ("memory.soft_limit_in_bytes", memory.get("reservation")),
            ("memory.memsw.limit_in_bytes", swap),
            ("memory.swappiness", memory.get("swappiness")),
            ("memory.oom_control", 1 if memory.get("disableOOMKiller") else None),
        ],
        [
            ("memory.max", limit),
            ("memory.low", memory.get("reservation")),
            ("memory.swap.max", None if swap is None or limit is None or swap < 0 else swap - limit),
        ],
    )
    cpu = resources.get("cpu") or {}
    quota, period = cpu.get("quota"), cpu.get("period")
    _write(
        cgroup,
        "cpu",
        [
            ("cpu.shares", cpu.get("shares")),
            ("cpu.cfs_period_us", period),
            ("cpu.cfs_quota_us", quota),
            ("cpu.rt_period_us", cpu.get("realtimePeriod")),
            ("cpu.rt_runtime_us", cpu.get("realtimeRuntime")),
        ],
        [
            ("cpu.weight", None if cpu.get("shares") is None else cgroups.shares_to_weight(cpu["shares"])),
            (
                "cpu.max",
                None
                if quota is None and period is None
                else f"{'max' if quota in (None, -1) else quota} {period or 100000}",
            ),
        ],
    )
    _write(
        cgroup,
        "cpuset",
        [("cpuset.cpus", cpu.get("cpus")), ("cpuset.mems", cpu.get("mems"))],
        [("cpuset.cpus", cpu.get("cpus")), ("cpuset.mems", cpu.get("mems"))],
    )
    pids = (resources.get("pids") or {}).get("limit")
    value = None if pids is None else ("max" if pids <= 0 else pids)
    _write(cgroup, "pids", [("pids.max", value)], [("pids.max", value)])
    apply_devices(cgroup, resources.get("devices"))


def _device_line(rule: dict[str, Any]) -> str:
    kind = rule.get("type") or "a"
    major, minor = rule.get("major"), rule.get("minor")
    number = f"{'*' if major in (None, -1) else major}:{'*' if minor in (None, -1) else minor}"
    return f"{kind} {number} {rule.get('access') or 'rwm'}" if kind != "a" else "a"


def apply_devices(cgroup: Cgroup, rules: list[dict[str, Any]] | None) -> None:
    """linux.resources.devices, in order (the last matching rule wins), then the devices every
    container needs to work (runc adds the same: null, zero, full, random, urandom, tty, pts, ptmx).
    v1: devices.deny/devices.allow lines. v2 (no devices controller): an eBPF allowlist, built by
    minirun/cgroups.py from the rules when they are "deny all, then allow" (what engines send)."""
    if rules is None:
        return
    ordered = [
        *rules,
        *(
            {"allow": True, "type": t, "major": a, "minor": b, "access": x}
            for t, a, b, x in cgroups.DEVICE_ALLOWLIST
        ),
    ]
    v1 = next((p for p in cgroup.paths if (p / "devices.allow").exists()), None)
    if v1 is not None:
        for rule in ordered:
            with contextlib.suppress(OSError):  # a rule the kernel refuses (e.g. allow under a deny)
                (v1 / ("devices.allow" if rule.get("allow") else "devices.deny")).write_text(
                    _device_line(rule)
                )
        return
    v2 = cgroup.v2_path()
    if v2 is None or os.geteuid() != 0:
        return
    allow = tuple(
        (r.get("type") or "c", r.get("major"), r.get("minor"), r.get("access") or "rwm")
        for r in ordered
        if r.get("allow") and r.get("type") in ("c", "b")
    )
    cgroups.attach_device_program(v2, allow)


def frozen(paths: list[str]) -> bool:
    """state's "paused": the container's cgroup is frozen (cgroups.paused, create's check too)."""
    return cgroups.paused(Cgroup(tuple(Path(text) for text in paths)))


def freeze(paths: list[str], on: bool) -> None:
    """pause/resume: the freezer stops every task of the cgroup, and `pause` returns once all
    have stopped (cgroups.py, the freezer section)."""
    cgroup = Cgroup(tuple(Path(text) for text in paths))
    cgroups.freeze(cgroup) if on else cgroups.thaw(cgroup)


def pids(paths: list[str]) -> list[int]:
    found: set[int] = set()
    for text in paths:
        for directory in cgroups.subtree(Path(text)):  # and the cgroups made inside it
            with contextlib.suppress(OSError, ValueError):
                found |= {int(p) for p in (directory / "cgroup.procs").read_text().split()}
    return sorted(found)


def remove(paths: list[str], made: list[str] | None, kill: bool = True) -> None:
    """Kill what is left (with kill: the container had joined) and rmdir what create made: the
    container's directories with retries on EBUSY (minirun/cgroups.py's remove), then the levels
    above them it made, innermost first, each once it is empty (another container may use it).
    A directory that was there before stays (refuse_unfit: it was empty when joined). made None:
    a record from before minirun-oci named them, whose own directories are all removed."""
    existing = tuple(Path(p) for p in paths if Path(p).is_dir())
    if existing and kill:
        cgroups.kill(Cgroup(existing))
    for path in existing:
        if made is None or str(path) in made:
            for directory in cgroups.subtree(path):  # the cgroups made inside it first
                with contextlib.suppress(OSError):
                    _rmdir_retry(directory)
    for text in reversed(made or []):
        if text not in paths:
            with contextlib.suppress(OSError):
                Path(text).rmdir()


def remove_slices(paths: list[str]) -> None:
    """--systemd-cgroup without systemd: the slice directories above the scope, deepest first,
    each once it is empty (another container's scope keeps it). With systemd running they are
    its units, and stay."""
    if systemd_running():
        return
    for text in paths:
        level = Path(text).parent
        while level.name.endswith(".slice") and level.is_relative_to(cgroups.CGROUP_ROOT):
            try:
                level.rmdir()
            except OSError:
                break
            level = level.parent


def _rmdir_retry(path: Path) -> None:
    import time

    for _ in range(500):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)
    path.rmdir()
