"""Rootless resource limits: refused without a delegated cgroup, enforced with one.

Delegation is what systemd's `Delegate=yes` does for user@UID.service: root creates a cgroup,
chowns it (and the files a delegatee must write: cgroup.procs, on v2 also cgroup.subtree_control
and cgroup.threads) to the user, and starts the user's processes in a leaf below it. The test
does the same, by hand, in every hierarchy this host has (here the controllers are v1 ones;
on a pure v2 host it is the one unified tree), then runs minirun as `mrtest` from that leaf.
"""

import os
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import IMAGE, Tier, one_line_error

from minirun import cgroups

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


def delegate(top: Path, uid: int, gid: int) -> Path:
    """mkdir TOP and TOP/session; hand TOP to the user as systemd's Delegate=yes would."""
    top.mkdir()
    leaf = top / "session"
    for d in (top, leaf):
        if d is leaf:
            d.mkdir()
        for name in ("cpuset.cpus", "cpuset.mems"):  # v1 cpuset: empty until set (cpuset(7))
            if (d / name).exists():
                (d / name).write_text((d.parent / name).read_text())
    for d in (top, leaf):  # systemd chowns the whole delegated subtree, leaves included
        for path in (d, *(d / f for f in ("cgroup.procs", "tasks", "cgroup.subtree_control",
                                          "cgroup.threads") if (d / f).exists())):
            os.chown(path, uid, gid)
    return leaf


@pytest.fixture
def delegated(rootless_minirun: Tier) -> Iterator[Tier]:
    """The rootless tier, started from a leaf of a cgroup delegated to mrtest in every hierarchy."""
    tops = [h.mountpoint / f"minirun-delegated-{secrets.token_hex(3)}" for h in cgroups.hierarchies()
            if h.mountpoint.is_relative_to(cgroups.CGROUP_ROOT) and "name=systemd" not in h.controllers]
    leaves = []
    try:
        for top in tops:
            leaves.append(delegate(top, rootless_minirun.uid, rootless_minirun.gid))
        # Root moves the shell into the leaves, then it execs setpriv -> minirun as mrtest.
        procs = " ".join(str(leaf / "cgroup.procs") for leaf in leaves)
        enter = f'for f in {procs}; do echo $$ > $f; done; exec "$@"'
        yield replace(rootless_minirun, prefix=["sh", "-c", enter, "sh", *rootless_minirun.prefix],
                      processes=rootless_minirun.processes)
    finally:
        for top in reversed(tops):
            for d in (top / "session", top / cgroups.PARENT, top):
                if d.exists():
                    d.rmdir()


def test_delegated_memory_limit_oom_kills(delegated: Tier, names: Callable[[], str]) -> None:
    name = names()
    grow = 'x=$(head -c {} /dev/zero | tr "\\0" a); echo allocated ${{#x}}'
    delegated(["run", "--rm", "-m", "32m", IMAGE, "sh", "-c", grow.format("8m")], check=0)
    delegated(["run", "--name", name, "-m", "32m", IMAGE, "sh", "-c", grow.format("64m")], check=137)
    assert delegated.inspect(name)["State"]["OOMKilled"] is True
    delegated(["rm", name], check=0)


def test_delegated_pids_and_cpuset(delegated: Tier) -> None:
    loop = ('P=/sys/fs/cgroup/pids; [ -e $P/pids.max ] || P=/sys/fs/cgroup; '
            'sh -c "while :; do sleep 5 & done" 2>/dev/null; echo loop ended $?; '
            'read e < $P/pids.events; echo events $e')
    out = delegated(["run", "--rm", "--pids-limit", "10", IMAGE, "sh", "-c", loop], check=0).stdout
    assert "loop ended 2" in out and int(re.search(r"events max (\d+)", out).group(1)) >= 1, out  # type: ignore[union-attr]
    pinned = delegated(["run", "--rm", "--cpuset-cpus", "0", IMAGE, "grep", "Cpus_allowed_list",
                        "/proc/self/status"], check=0)
    assert pinned.stdout.split() == ["Cpus_allowed_list:", "0"]


def test_delegated_cgroup_is_the_containers_root_and_goes_away(delegated: Tier) -> None:
    """The container's cgroup is created under the delegated one, and removed at the end."""
    out = delegated(["run", "--rm", "-m", "64m", IMAGE, "cat", "/proc/self/cgroup"], check=0).stdout
    lines = [line for line in out.splitlines() if "name=systemd" not in line]
    assert lines and all(line.endswith(":/") for line in lines), out
    tops = [p for h in cgroups.hierarchies() for p in h.mountpoint.glob("minirun-delegated-*")]
    assert tops and not [p for top in tops for p in top.glob(f"{cgroups.PARENT}/*")], "no cgroup left"
