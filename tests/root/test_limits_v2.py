"""The cgroup v2 driver's core mechanics, on this host's unified tree (whatever controllers it has).

On a hybrid host (v1 controllers, a v2 tree with only hugetlb) the v2 *limit* files cannot be
tried: a controller bound to a v1 hierarchy cannot be moved to v2 while in use. What can be
tried everywhere is the part every v2 cgroup has: mkdir, moving a process in (cgroup.procs),
cgroup.events "populated", cgroup.kill, rmdir; and the "no internal processes" rule of
cgroup.subtree_control with whichever controller the root offers. On a pure v2 host,
tests/root/test_limits.py runs every limit through the v2 driver as well.
"""

import errno
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from minirun import cgroups

pytestmark = pytest.mark.root


@pytest.fixture
def v2_root() -> Path:
    found = [h.mountpoint for h in cgroups.hierarchies()
             if h.version == 2 and h.mountpoint.is_relative_to(cgroups.CGROUP_ROOT)]
    assert found, "no cgroup2 hierarchy mounted under /sys/fs/cgroup"
    return found[0]


@pytest.fixture
def scratch(v2_root: Path) -> Iterator[Path]:
    """An empty v2 cgroup for the test (its name makes leakcheck find it if it is left)."""
    path = v2_root / f"minirun-v2test-{secrets.token_hex(3)}"
    path.mkdir()
    yield path
    for child in sorted(path.glob("**/"), key=lambda p: len(p.parts), reverse=True):
        cgroups.remove(cgroups.Cgroup((child,)))


def populated(path: Path) -> int:
    return cgroups._keyed((path / "cgroup.events").read_text())["populated"]


def test_create_move_kill_wait_rmdir(scratch: Path) -> None:
    container = scratch / "c1"
    container.mkdir()
    cgroup = cgroups.Cgroup((container,))
    assert cgroup.v2_path() == container
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        cgroups.add_process(cgroup, sleeper.pid)
        assert (container / "cgroup.procs").read_text().split() == [str(sleeper.pid)]
        assert populated(container) == 1 and populated(scratch) == 1  # "populated" counts descendants
        cgroups.kill(cgroup)  # cgroup.kill: SIGKILL to every process in the subtree at once
        assert sleeper.wait(timeout=30) == -9
        assert cgroups.wait_empty(container, timeout=30)
        assert populated(container) == 0
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
    cgroups.remove(cgroup)
    assert not container.exists()


def test_remove_kills_what_is_left(scratch: Path) -> None:
    container = scratch / "c2"
    container.mkdir()
    sleeper = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60; true"])
    cgroup = cgroups.Cgroup((container,))
    cgroups.add_process(cgroup, sleeper.pid)
    cgroups.remove(cgroup)
    assert sleeper.wait(timeout=30) == -9
    assert not container.exists()


def test_no_internal_processes_rule(scratch: Path, v2_root: Path) -> None:
    offered = (v2_root / "cgroup.controllers").read_text().split()
    assert offered, "the v2 root offers no controller at all"
    controller = next((c for c in ("pids", "memory", "cpu") if c in offered), offered[0])
    root_had_it = controller in (v2_root / "cgroup.subtree_control").read_text().split()
    leaf = scratch / "leaf"
    leaf.mkdir()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        cgroups.add_process(cgroups.Cgroup((scratch,)), sleeper.pid)
        # A non-root cgroup holding a process cannot hand controllers to its children...
        with pytest.raises(OSError) as e:
            cgroups.enable_controllers(scratch, {controller})
        assert e.value.errno == errno.EBUSY
        # ...but once the process lives in a leaf, it can.
        cgroups.add_process(cgroups.Cgroup((leaf,)), sleeper.pid)
        cgroups.enable_controllers(scratch, {controller})
        assert controller in (leaf / "cgroup.controllers").read_text().split()
        assert controller in (scratch / "cgroup.subtree_control").read_text().split()
    finally:
        sleeper.kill()
        sleeper.wait()
        (scratch / "cgroup.subtree_control").write_text(f"-{controller}")
        cgroups.remove(cgroups.Cgroup((leaf,)))  # and its parent, now empty
        if not root_had_it:
            (v2_root / "cgroup.subtree_control").write_text(f"-{controller}")
