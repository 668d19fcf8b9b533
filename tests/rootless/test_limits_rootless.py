"""Rootless resource limits: refused without a delegated cgroup, enforced with one.

Delegation is what systemd's `Delegate=yes` does for user@UID.service (tests/cgroup_helpers.py):
on this hybrid host the tests build it by hand in every hierarchy (the controllers are v1 ones);
in the VM tier's pure v2 guest they use the user@UID.service the guest set up. The v2 files
themselves, rootful and delegated, are tested in tests/root/test_limits_v2.py.
"""

import re
from collections.abc import Callable, Iterator

import pytest
from cgroup_helpers import (
    ALLOCATE,
    FREEZER_KINDS,
    HOG,
    MEMS,
    delegated_base,
    delegated_tier,
    exec_and_check_joined,
    frozen_parent,
    run_and_check_joined,
    with_env,
)
from helpers import IMAGE, Tier, one_line_error

pytestmark = pytest.mark.rootless

MiB = 1024 * 1024


def test_limits_without_delegation_are_refused_in_one_line(rootless_minirun: Tier,
                                                          names: Callable[[], str]) -> None:
    name = names()
    result = rootless_minirun(["run", "--name", name, "--memory", "32m", IMAGE, "echo", "ran"], check=125)
    assert "ran" not in result.stdout
    assert "delegated" in one_line_error(result)
    assert name not in rootless_minirun.container_names(), "nothing was created"
    # Without limits the same user runs containers, without a cgroup of their own.
    rootless_minirun(["run", "--rm", IMAGE, "true"], check=0)


# --- with a delegated cgroup ------------------------------------------------------------------


@pytest.fixture
def delegated(rootless_minirun: Tier) -> Iterator[Tier]:
    """The rootless tier, started from a leaf of a cgroup delegated to mrtest (cgroup_helpers)."""
    with delegated_tier(rootless_minirun) as tier:
        yield tier


def test_delegated_memory_limit_oom_kills(delegated: Tier, names: Callable[[], str]) -> None:
    name = names()
    fits = delegated(["run", "--rm", "-m", "32m", IMAGE, "sh", "-c", ALLOCATE.format(mib=8)], check=0)
    assert f"allocated {8 * 1048576}" in fits.stdout, fits.stdout
    delegated(["run", "--name", name, "-m", "32m", IMAGE, "sh", "-c", HOG.format(mib=64)], check=137)
    assert delegated.inspect(name)["State"]["OOMKilled"] is True
    delegated(["rm", name], check=0)


def test_delegated_pids_and_cpuset(delegated: Tier) -> None:
    loop = ('P=/sys/fs/cgroup/pids; [ -e $P/pids.max ] || P=/sys/fs/cgroup; '
            'sh -c "while :; do sleep 5 & done" 2>/dev/null; echo loop ended $?; '
            'read e < $P/pids.events; echo events $e')
    out = delegated(["run", "--rm", "--pids-limit", "10", IMAGE, "sh", "-c", loop], check=0).stdout
    assert "loop ended 2" in out and int(re.search(r"events max (\d+)", out).group(1)) >= 1, out  # type: ignore[union-attr]
    pinned = delegated(["run", "--rm", "--cpuset-cpus", "0", "--cpuset-mems", "0", IMAGE, "sh", "-c",
                        "grep _allowed_list /proc/self/status; " + MEMS], check=0)
    # (the container's cpuset.mems: the v1 directory's or its own v2 file, written by minirun)
    assert pinned.stdout.split() == ["Cpus_allowed_list:", "0", "Mems_allowed_list:", "0",
                                     "mems", "[0]", "Mems_allowed_list:", "0"], pinned.stdout


def test_delegated_cgroup_is_the_containers_root_and_goes_away(delegated: Tier) -> None:
    """The container's cgroup is created under the delegated one, and removed at the end."""
    out = delegated(["run", "--rm", "-m", "64m", IMAGE, "cat", "/proc/self/cgroup"], check=0).stdout
    lines = [line for line in out.splitlines() if "name=systemd" not in line]
    assert lines and all(line.endswith(":/") for line in lines), out
    bases = delegated_base()
    assert bases and not [p for base in bases for p in base.glob("*") if p.is_dir()], "no cgroup left"


def test_delegated_container_is_in_its_v1_cgroups_and_its_cgroupns_is_rooted_there(
        delegated: Tier, names: Callable[[], str]) -> None:
    """Rootless too the child moves itself in (cgroups.join_v1), through files the parent opened
    with its own credentials, before it makes its cgroup namespace (v1: this hybrid host; on a
    pure v2 host, born in its delegated cgroup by clone3)."""
    run_and_check_joined(delegated, names(), "-m", "64m")


def test_delegated_exec_is_in_the_containers_cgroups_and_cgroup_namespace(
        delegated: Tier, names: Callable[[], str]) -> None:
    """exec as the user: its helper is born in the delegated v2 directory by clone3 from the
    user's minirun (the permission check of a cgroup.procs write, with the user's credentials)
    and writes 0 to the v1 `tasks` files minirun opened; the exec'd process is its child."""
    exec_and_check_joined(delegated, names(), "-m", "64m")


@pytest.mark.parametrize("kind", FREEZER_KINDS)
def test_delegated_frozen_cgroup_parent_is_one_line_and_leaves_nothing(
        delegated: Tier, names: Callable[[], str], kind: str) -> None:
    """The rootless side of tests/root/test_cgroup_policy.py's frozen parent: the place below the
    delegated cgroup, frozen (by root here; the user may freeze its own subtree as well)."""
    tops = [base.parent for base in delegated_base()]
    name = names()
    with frozen_parent(tops, kind, owner=(delegated.uid, delegated.gid)) as frozen:
        tier = with_env(delegated, MINIRUN_CGROUP_PARENT=frozen.parent)
        try:
            result = tier(["run", "--name", name, IMAGE, "echo", "ran"], timeout=30)
            assert result.returncode == 125, result.stderr
            assert "is frozen" in one_line_error(result) and "ran" not in result.stdout
            assert name not in delegated.recorded_names(), "no record is left"
            left = [p for top in tops for p in (top / frozen.parent).iterdir() if p.is_dir()]
            assert not left, f"cgroups left behind: {left}"
        finally:
            frozen.thaw()
            tier(["rm", "-f", name], timeout=30)
