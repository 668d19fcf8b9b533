"""Resource limits, measured by what the kernel does to the container, not by what files say.

Root tier for enforcement (the rootless tier has no delegated cgroup here: see
tests/rootless/test_limits_rootless.py); both tiers for the cgroup namespace, `stats` and bad flags.
Inside the container /sys/fs/cgroup is the container's own cgroup, so the workloads read their
usage from there; the shell snippets find the v1 or the v2 file, whichever this host has.
"""

import re
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from cgroup_helpers import ALLOCATE, HOG, MEMS, container_cgroup_dirs, run_and_check_joined
from helpers import IMAGE, Tier, one_line_error, read_until, wait_for, wait_running

from minirun.spec import online_nodes

MiB = 1024 * 1024

PEAK = ('p=/sys/fs/cgroup/memory/memory.max_usage_in_bytes; [ -e $p ] || p=/sys/fs/cgroup/memory.peak; '
        'echo peak $(cat $p)')


@pytest.mark.root
def test_memory_beyond_the_limit_is_oom_killed(root_minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    root_minirun(["run", "--name", name, "--memory", "32m", IMAGE, "sh", "-c", HOG.format(mib=64)], check=137)
    state = root_minirun.inspect(name)["State"]
    assert (state["ExitCode"], state["OOMKilled"]) == (137, True)
    root_minirun(["rm", name], check=0)


@pytest.mark.root
def test_memory_under_the_limit_runs_fine(root_minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    result = root_minirun(["run", "--name", name, "-m", "32m", IMAGE, "sh", "-c",
                           ALLOCATE.format(mib=12) + PEAK], check=0)
    assert f"allocated {12 * MiB}" in result.stdout
    peak = int(re.search(r"peak (\d+)", result.stdout).group(1))  # type: ignore[union-attr]
    assert 12 * MiB <= peak <= 32 * MiB, "the workload really allocated, and stayed under the limit"
    assert root_minirun.inspect(name)["State"]["OOMKilled"] is False
    root_minirun(["rm", name], check=0)


FORK_LOOP = (
    'P=/sys/fs/cgroup/pids; [ -e $P/pids.max ] || P=/sys/fs/cgroup; '
    'T=$P/tasks; [ -e $T ] || T=$P/cgroup.threads; '
    # The inner shell forks sleepers until fork(2) fails with EAGAIN, and then dies of it.
    'sh -c "while :; do sleep 5 & done" 2>/dev/null; echo loop ended $?; '
    # Count tasks with builtins only (at the limit, one more fork could fail).
    'n=0; while read t; do n=$((n+1)); done < $T; echo tasks $n; '
    'read e < $P/pids.events; echo events $e; '
    # Wait (without forking) until the sleepers are gone, then fork again.
    'while read c < $P/pids.current && [ "$c" -gt 1 ]; do :; done; '
    'echo $(cat /proc/self/cgroup | wc -l) alive'
)


@pytest.mark.root
def test_fork_loop_stops_at_the_pids_limit(root_minirun: Tier) -> None:
    result = root_minirun(["run", "--rm", "--pids-limit", "20", IMAGE, "sh", "-c", FORK_LOOP], check=0)
    out = result.stdout
    assert "loop ended 2" in out, out  # fork failed: the loop could not go on
    tasks = int(re.search(r"tasks (\d+)", out).group(1))  # type: ignore[union-attr]
    assert 10 < tasks <= 20, out
    events = int(re.search(r"events max (\d+)", out).group(1))  # type: ignore[union-attr]
    assert events >= 1, "the kernel refused a fork because of the limit"
    assert re.search(r"\d+ alive", out), "the container survived and can fork again"


CPU_BURN = (
    'u() {{ if [ -e /sys/fs/cgroup/cpuacct/cpuacct.usage ]; then cat /sys/fs/cgroup/cpuacct/cpuacct.usage; '
    'else echo $(( $(sed -n "s/^usage_usec //p" /sys/fs/cgroup/cpu.stat) * 1000 )); fi; }}; '
    'read up0 rest < /proc/uptime; c0=$(u); '
    # Two busy loops: without a limit they would use both CPUs of a 2-CPU machine.
    'for i in 1 2; do timeout {seconds} sh -c "while :; do :; done" & done; wait; '
    'read up1 rest < /proc/uptime; c1=$(u); '
    'echo cpu_ns $((c1 - c0)) wall_cs $(( (${{up1%.*}}${{up1#*.}}) - (${{up0%.*}}${{up0#*.}}) ))'
)


@pytest.mark.root
def test_cpus_limit_the_cpu_time_per_second(root_minirun: Tier) -> None:
    result = root_minirun(["run", "--rm", "--cpus", "0.5", IMAGE, "sh", "-c", CPU_BURN.format(seconds=4)],
                          check=0)
    match = re.search(r"cpu_ns (\d+) wall_cs (\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    cpu_seconds, wall_seconds = int(match.group(1)) / 1e9, int(match.group(2)) / 100
    assert wall_seconds >= 3.5, result.stdout
    # CFS allows 50 ms per 100 ms period: about 0.5 CPU-seconds per second, whatever the load.
    assert 0.1 < cpu_seconds / wall_seconds <= 0.55, (cpu_seconds, wall_seconds)


@pytest.mark.root
def test_cpuset_pins_to_cpu_0(root_minirun: Tier) -> None:
    result = root_minirun(["run", "--rm", "--cpuset-cpus", "0", IMAGE, "grep", "Cpus_allowed_list",
                           "/proc/self/status"], check=0)
    assert result.stdout.split() == ["Cpus_allowed_list:", "0"]


@pytest.mark.root
def test_cpuset_mems_pins_memory_to_node_0(root_minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    result = root_minirun(["run", "--name", name, "--cpuset-mems", "0", IMAGE, "sh", "-c", MEMS], check=0)
    assert result.stdout.split() == ["mems", "[0]", "Mems_allowed_list:", "0"], result.stdout
    assert root_minirun.inspect(name)["HostConfig"]["CpusetMems"] == "0"
    root_minirun(["rm", name], check=0)


@pytest.mark.root
def test_limits_are_shown_by_inspect(root_minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    root_minirun(["run", "--name", name, "-m", "64m", "--cpus", "0.5", "--cpu-shares", "512",
                  "--pids-limit", "64", IMAGE, "true"], check=0)
    host = root_minirun.inspect(name)["HostConfig"]
    assert (host["Memory"], host["NanoCpus"], host["CpuShares"], host["PidsLimit"]) == (
        64 * MiB, 500_000_000, 512, 64)
    root_minirun(["rm", name], check=0)


@pytest.mark.root
def test_cgroup_is_removed_after_the_monitor_is_killed(root_minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    proc = root_minirun.popen(["run", "--name", name, "-m", "64m", IMAGE, "sh", "-c", "echo up; sleep 60"])
    read_until(proc.stdout, "up")
    item = wait_running(root_minirun, name, proc)
    dirs = container_cgroup_dirs(item["Id"])
    memory = [d for d in dirs if (d / "memory.max").exists() or (d / "memory.limit_in_bytes").exists()]
    assert memory, f"the container has a cgroup with the memory controller: {dirs}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    root_minirun(["rm", "-f", name], check=0)
    assert not [d for d in dirs if d.exists()], "rm removes the cgroup a killed monitor left"


# --- both tiers -----------------------------------------------------------------------------


# A node this host does not have (these machines have node 0 only): docker's check, before anything.
NO_SUCH_NODE = str(max(online_nodes()) + 1)


@pytest.mark.parametrize("flag", [["--memory", "abc"], ["--cpus", "-1"], ["--memory", "1m"],
                                  ["--cpu-shares", "1"], ["--pids-limit", "lots"], ["--cgroupns", "both"],
                                  ["--cpuset-mems", NO_SUCH_NODE], ["--cpuset-mems", "0-"]])
def test_bad_limit_is_refused_before_anything_exists(minirun: Tier, names: Callable[[], str],
                                                     flag: list[str]) -> None:
    name = names()
    result = minirun(["run", "--name", name, *flag, IMAGE, "echo", "ran"], check=125)
    assert "ran" not in result.stdout
    assert flag[0] in one_line_error(result)
    assert name not in minirun.container_names()


COUNT = "ls -R /sys/fs/cgroup | wc -l"


def in_root_cgroups() -> bool:
    """Is this process in the root cgroup of every hierarchy (as on a host without systemd)?"""
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    return all(line.endswith(":/") for line in lines if "name=systemd" not in line)


def test_cgroup_namespace_private_and_host(minirun: Tier) -> None:
    private = int(minirun(["run", "--rm", IMAGE, "sh", "-c", COUNT], check=0).stdout)
    host = int(minirun(["run", "--rm", "--cgroupns=host", IMAGE, "sh", "-c", COUNT], check=0).stdout)
    if minirun.rootless and in_root_cgroups():
        # Rootless without a delegated cgroup, the container stays in minirun's own cgroup: when
        # that is the root (no systemd), its private view is the whole tree, as the host's is.
        assert private == host
    else:
        assert private < host, "privately the container sees its own cgroup as the root"
    # Private: the container's own cgroup is "/" in every hierarchy it sees.
    lines = minirun(["run", "--rm", IMAGE, "cat", "/proc/self/cgroup"], check=0).stdout.splitlines()
    assert lines and all(line.endswith(":/") for line in lines if "name=systemd" not in line), lines
    result = minirun(["run", "--rm", "--cgroupns=host", IMAGE, "sh", "-c",
                      "mkdir /sys/fs/cgroup/x || echo refused"], check=0)
    assert "refused" in result.stdout, "the host's cgroup tree is read-only in the container"


@pytest.mark.root
def test_container_is_in_its_v1_cgroups_and_its_cgroupns_is_rooted_there(root_minirun: Tier,
                                                                           names: Callable[[], str]) -> None:
    """The child moves itself into its v1 cgroups (cgroups.join_v1) before it makes its cgroup
    namespace: checked from both sides, the host's view and the container's own."""
    run_and_check_joined(root_minirun, names())


def test_stats_no_stream(minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    proc = minirun.popen(["run", "--name", name, IMAGE, "sh", "-c", "echo up; sleep 60; true"])
    read_until(proc.stdout, "up")
    wait_running(minirun, name, proc)
    out = minirun(["stats", "--no-stream", name], check=0).stdout.splitlines()
    assert out[0].split()[:4] == ["CONTAINER", "ID", "NAME", "CPU"], out
    row = out[1].split()
    assert row[1] == name
    if not minirun.rootless:  # the rootless tier has no cgroup here: "--"
        assert row[2].endswith("%") and re.match(r"[\d.]+[KMG]?i?B", row[3]), out
        assert row[-1] == "2", "sh and sleep"
    minirun(["rm", "-f", name], check=0)
    wait_for(lambda: proc.poll() is not None, what="minirun run to end")
