"""The cgroup v2 driver's core mechanics, on this host's unified tree (whatever controllers it has).

On a hybrid host (v1 controllers, a v2 tree with only hugetlb) the v2 *limit* files cannot be
tried: a controller bound to a v1 hierarchy cannot be moved to v2 while in use. What can be
tried everywhere is the part every v2 cgroup has: mkdir, moving a process in (cgroup.procs),
cgroup.events "populated", cgroup.kill, rmdir; and the "no internal processes" rule of
cgroup.subtree_control with whichever controller the root offers. On a pure v2 host,
tests/root/test_limits.py runs every limit through the v2 driver as well.
"""

import errno
import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cgroup_helpers import ALLOCATE, HOG, container_cgroup_dirs, delegated_tier, require_v2
from helpers import IMAGE, Tier, read_until, wait_running

from minirun import cgroups


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


@pytest.mark.root
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


@pytest.mark.root
def test_remove_kills_what_is_left(scratch: Path) -> None:
    container = scratch / "c2"
    container.mkdir()
    sleeper = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60; true"])
    cgroup = cgroups.Cgroup((container,))
    cgroups.add_process(cgroup, sleeper.pid)
    cgroups.remove(cgroup)
    assert sleeper.wait(timeout=30) == -9
    assert not container.exists()


@pytest.mark.root
def test_no_internal_processes_rule(scratch: Path, v2_root: Path) -> None:
    offered = (v2_root / "cgroup.controllers").read_text().split()
    assert offered, "the v2 root offers no controller at all"
    # A domain controller: the rule does not hold for the threaded ones (cpu, cpuset, pids,
    # perf_event), which may be enabled above processes (cgroup-v2.rst, "Threads").
    controller = next((c for c in ("memory", "io", "hugetlb", "rdma", "misc") if c in offered), None)
    assert controller, f"the v2 root offers no domain controller: {offered}"
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


# --- enforcement through the v2 files, rootful and rootless in a delegated subtree --------------
#
# Inside the container (a private cgroup namespace) /sys/fs/cgroup is the container's own cgroup,
# so the workloads read the kernel's v2 files directly. These run in the VM tier's pure v2
# guest (tests/vm), where they may not skip; on a hybrid host the v2 controllers are bound to
# v1, so those that test v2 files skip there naming the layout (tests/root/test_limits.py
# enforces the same limits through whichever hierarchy the host has). Weight, stats and
# teardown hold on both, and run on both.

MiB = 1024 * 1024
CG = "/sys/fs/cgroup"


@pytest.fixture(params=[pytest.param("root", marks=pytest.mark.root),
                        pytest.param("delegated", marks=pytest.mark.rootless)])
def limited(request: pytest.FixtureRequest) -> Iterator[Tier]:
    """Root's tier, or the rootless tier started in a cgroup delegated to the test user."""
    if request.param == "root":
        yield request.getfixturevalue("root_minirun")
    else:
        with delegated_tier(request.getfixturevalue("rootless_minirun")) as tier:
            yield tier


def values(out: str) -> dict[str, str]:
    """`key value...` lines of a workload's output."""
    return {p[0]: p[1] for p in (line.split(None, 1) for line in out.splitlines()) if len(p) == 2}


@pytest.mark.cgroup2("memory")
def test_memory_max_oom_kill_is_counted_and_reported(limited: Tier, names: Callable[[], str]) -> None:
    require_v2("memory")
    # A child beyond memory.max is killed; PID 1 survives and reads the count in memory.events.
    inner = f'sh -c \'{HOG.format(mib=64)}\'; echo inner $?; '
    out = limited(["run", "--rm", "-m", "32m", IMAGE, "sh", "-c", inner + f"read m < {CG}/memory.max; "
                   f"echo max $m; while read k v; do echo events_$k $v; done < {CG}/memory.events"],
                  check=0).stdout
    got = values(out)
    assert (got["inner"], got["max"]) == ("137", str(32 * MiB)), out
    assert int(got["events_oom_kill"]) >= 1 and int(got["events_max"]) >= 1, out
    # PID 1 itself: the container ends with 137, and inspect says the OOM killer did it.
    name = names()
    limited(["run", "--name", name, "-m", "32m", IMAGE, "sh", "-c", HOG.format(mib=64)], check=137)
    state = limited.inspect(name)["State"]
    assert (state["ExitCode"], state["OOMKilled"]) == (137, True)
    limited(["rm", name], check=0)


def has_swap() -> bool:
    return len(Path("/proc/swaps").read_text().splitlines()) > 1


@pytest.mark.parametrize(("swap_flag", "expected"), [
    ([], str(32 * MiB)), (["--memory-swap", "48m"], str(16 * MiB)), (["--memory-swap", "-1"], "max")])
@pytest.mark.cgroup2("memory")
def test_memory_swap_max_is_the_swap_part(limited: Tier, swap_flag: list[str], expected: str) -> None:
    """docker's --memory-swap is memory + swap (unset: twice --memory); v2 limits swap alone."""
    require_v2("memory")
    out = limited(["run", "--rm", "-m", "32m", *swap_flag, IMAGE, "cat", f"{CG}/memory.swap.max"], check=0)
    assert out.stdout.strip() == expected


@pytest.mark.cgroup2("memory")
def test_memory_swap_max_is_enforced(limited: Tier) -> None:
    """With swap, 48 MiB fit in -m 32m when swap may take the rest, and not when it may not.
    memory.max holds the container to 32 MiB of RAM, so the 16 MiB beyond it that dd filled can
    only be in swap: finishing is the proof (reading memory.swap.current would need something
    to hold the memory meanwhile; a shell variable grown through `tr` did, at a minute a test
    under the VM tier's emulation)."""
    require_v2("memory")
    if not has_swap():
        reason = "needs a swap device (/proc/swaps is empty)"
        if os.environ.get("MINIRUN_TEST_REQUIRE_V2") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    fits = limited(["run", "--rm", "-m", "32m", "--memory-swap", "128m", IMAGE, "sh", "-c",
                    ALLOCATE.format(mib=48) + f"read m < {CG}/memory.max; echo max $m; "
                    f"read s < {CG}/memory.swap.max; echo swap_max $s"], check=0).stdout
    got = values(fits)
    expected = (str(48 * MiB), str(32 * MiB), str(96 * MiB))
    assert (got.get("allocated"), got.get("max"), got.get("swap_max")) == expected, fits
    limited(["run", "--rm", "-m", "32m", "--memory-swap", "32m", IMAGE, "sh", "-c", HOG.format(mib=48)],
            check=137)


@pytest.mark.cgroup2("pids")
def test_pids_max_refuses_forks_and_counts_them(limited: Tier) -> None:
    require_v2("pids")
    # Builtins only after the loop: at the limit, one more fork could fail.
    loop = ('sh -c "while :; do sleep 5 & done" 2>/dev/null; echo loop $?; '
            f'read m < {CG}/pids.max; echo max $m; read k e < {CG}/pids.events; echo events_$k $e')
    out = limited(["run", "--rm", "--pids-limit", "12", IMAGE, "sh", "-c", loop], check=0).stdout
    got = values(out)
    assert (got["loop"], got["max"]) == ("2", "12"), out  # fork(2) failed with EAGAIN: exit 2
    assert int(got["events_max"]) >= 1, "pids.events counts the refused forks"


CPU_BURN = (
    f'u() {{ sed -n "s/^usage_usec //p" {CG}/cpu.stat; }}; read up0 rest < /proc/uptime; c0=$(u); '
    'for i in 1 2; do timeout 4 sh -c "while :; do :; done" & done; wait; '
    'read up1 rest < /proc/uptime; c1=$(u); '
    'echo cpu_us $((c1 - c0)); echo wall_cs $(( (${up1%.*}${up1#*.}) - (${up0%.*}${up0#*.}) )); '
    f'echo max $(cat {CG}/cpu.max); echo throttled $(sed -n "s/^nr_throttled //p" {CG}/cpu.stat)'
)


@pytest.mark.cgroup2("cpu")
def test_cpu_max_holds_usage_near_the_limit(limited: Tier) -> None:
    require_v2("cpu")
    out = limited(["run", "--rm", "--cpus", "0.5", IMAGE, "sh", "-c", CPU_BURN], check=0).stdout
    got = values(out)
    assert got["max"] == "50000 100000", out  # 50 ms per 100 ms period
    cpu_seconds, wall_seconds = int(got["cpu_us"]) / 1e6, int(got["wall_cs"]) / 100
    assert wall_seconds >= 3.5 and int(got["throttled"]) >= 1, out
    # Two busy loops would use both CPUs; the quota holds them to half of one. (The lower
    # bound leaves room for a loaded machine, where the guest gets less than it may use.)
    assert 0.2 < cpu_seconds / wall_seconds <= 0.56, out


# Both versions (this one test runs on hybrid hosts too): v2's cpu.weight and cpu.stat, or v1's
# cpu.shares and cpuacct.usage (ns), each in its hierarchy's directory.
WEIGHT = (f'if [ -e {CG}/cpu.weight ]; then read w < {CG}/cpu.weight; else read w < {CG}/cpu/cpu.shares; fi; '
          f'u() {{ if [ -e {CG}/cpu.stat ]; then sed -n "s/^usage_usec //p" {CG}/cpu.stat; '
          f'else echo $(( $(cat {CG}/cpuacct/cpuacct.usage) / 1000 )); fi; }}; ')


def test_cpu_weight_divides_a_shared_cpu(limited: Tier, shared_dir: Path) -> None:
    """--cpu-shares 2048 vs 512 (v2 cpu.weight 79 vs 20) on the same CPU: about 4:1."""
    burn = (WEIGHT + 'echo weight $w; echo ready; while [ ! -e /sync/go ]; do sleep 0.05; done; '
            'c0=$(u); timeout 3 sh -c "while :; do :; done"; echo cpu_us $(( $(u) - c0 ))')
    procs = [limited.popen(["run", "--rm", "--cpuset-cpus", "0", "--cpu-shares", shares,
                            "-v", f"{shared_dir}:/sync:ro", IMAGE, "sh", "-c", burn])
             for shares in ("2048", "512")]
    starts = [read_until(proc.stdout, "ready\n", timeout=60) for proc in procs]
    (shared_dir / "go").touch()
    outs = [start + proc.communicate(timeout=60)[0] for start, proc in zip(starts, procs, strict=True)]
    assert [p.returncode for p in procs] == [0, 0], outs
    heavy, light = (values(o) for o in outs)
    v2 = ("79", "20")  # runc's and crun's shares -> weight mapping (cgroups.shares_to_weight)
    assert (heavy["weight"], light["weight"]) in (v2, ("2048", "512")), outs
    assert int(heavy["cpu_us"]) > 2 * int(light["cpu_us"]), outs


@pytest.mark.cgroup2("cpuset")
def test_cpuset_cpus_and_mems(limited: Tier) -> None:
    """--cpuset-cpus 0 --cpuset-mems 0: the container's own cpuset.cpus and cpuset.mems (empty,
    "the parent's", unless written), what the kernel grants (.effective), and the task's view."""
    require_v2("cpuset")
    show = (f"read c < {CG}/cpuset.cpus.effective; echo cpus $c; read m < {CG}/cpuset.mems.effective; "
            f'echo mems $m; echo "set [$(cat {CG}/cpuset.cpus)] [$(cat {CG}/cpuset.mems)]"; '
            "grep _allowed_list /proc/self/status")
    out = limited(["run", "--rm", "--cpuset-cpus", "0", "--cpuset-mems", "0", IMAGE, "sh", "-c", show],
                  check=0).stdout
    got = values(out)
    assert (got["cpus"], got["mems"], got["set"]) == ("0", "0", "[0] [0]"), out
    assert (got["Cpus_allowed_list:"], got["Mems_allowed_list:"]) == ("0", "0"), out
    unset = values(limited(["run", "--rm", "--cpuset-cpus", "0", IMAGE, "sh", "-c", show], check=0).stdout)
    assert unset["set"] == "[0] []", "without --cpuset-mems the container's cpuset.mems stays empty"


def test_stats_reads_the_cgroup_files(limited: Tier, names: Callable[[], str]) -> None:
    name = names()
    proc = limited.popen(["run", "--name", name, "-m", "64m", IMAGE, "sh", "-c", "echo up; sleep 60; true"])
    read_until(proc.stdout, "up", timeout=60)
    item = wait_running(limited, name, proc)
    pids = next(d for d in container_cgroup_dirs(item["Id"]) if (d / "pids.current").exists())
    row = limited(["stats", "--no-stream", name], check=0).stdout.splitlines()[1].split()
    # CONTAINER-ID NAME CPU% USAGE / LIMIT MEM% PIDS
    assert row[1] == name and row[-1] == (pids / "pids.current").read_text().strip() == "2", row
    assert row[5] == "64MiB" and row[2].endswith("%"), row
    limited(["rm", "-f", name], check=0)
    proc.communicate(timeout=30)


def test_teardown_kills_the_whole_cgroup(limited: Tier, names: Callable[[], str]) -> None:
    """A killed monitor leaves a container whose processes ignore SIGTERM and keep forking:
    `rm -f` ends them all (at once through v2's cgroup.kill) and removes the cgroup."""
    name = names()
    script = 'trap "" TERM; for i in 1 2 3; do sh -c "trap \\"\\" TERM; sleep 300" & done; echo up; wait'
    proc = limited.popen(["run", "--name", name, "--pids-limit", "50", IMAGE, "sh", "-c", script])
    read_until(proc.stdout, "up", timeout=60)
    item = wait_running(limited, name, proc)
    dirs = container_cgroup_dirs(item["Id"])
    pids = {int(p) for d in dirs for p in (d / "cgroup.procs").read_text().split()}
    assert len(pids) >= 4, (pids, dirs)
    proc.kill()
    proc.communicate(timeout=30)
    limited(["rm", "-f", name], check=0)
    assert not [d for d in dirs if d.exists()], "the cgroup is gone"
    assert not [p for p in pids if alive(p)], "processes outlived the teardown"


def alive(pid: int) -> bool:
    """Running, not a zombie (dead, waiting for a parent or init to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
