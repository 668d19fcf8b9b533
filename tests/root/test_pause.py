"""`minirun pause` / `unpause`: the freezer of the container's cgroup, as `docker pause`.

What a docker user meets: every process of the container stops where it stands (PID 1 and what
`exec` started), `ps` says "Up ... (Paused)", `inspect` State.Status "paused"; exec, attach and
start refuse it; stop, kill and rm -f act on it (thawed after their signal, docker's rule); a
signal other than those waits until unpause. And a container frozen from outside (by hand, in
either freezer) is still removed by `rm -f` (v1's freezer holds even SIGKILL until thawed).
"""

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cgroup_helpers import FREEZER_KINDS, FREEZERS, container_cgroup_dirs, delegated_tier
from helpers import IMAGE, Tier, one_line_error, process_exists, wait_for

# A line every 20 ms on stdout (the log), and a trap for the signals the tests send.
COUNTER = ('trap "echo got USR1" USR1; trap "echo got TERM; exit 3" TERM; '
           'i=0; while :; do i=$((i+1)); echo "tick $i"; usleep 20000; done')


def ticks(tier: Tier, name: str) -> int:
    return tier(["logs", name], check=0).stdout.count("tick ")


def state(tier: Tier, name: str) -> dict[str, object]:
    item: dict[str, object] = tier.inspect(name)["State"]
    return item


def still(tier: Tier, name: str) -> bool:
    """Has the counter stopped? (What it wrote before the pause may still be on its way to the
    log through the monitor: that is let through first.)"""
    time.sleep(0.2)
    before = ticks(tier, name)
    time.sleep(0.5)
    return ticks(tier, name) == before


def ticking(tier: Tier, name: str) -> bool:
    before = ticks(tier, name)
    return bool(wait_for(lambda: ticks(tier, name) > before, what=f"{name} to tick again"))


def started(tier: Tier, name: str, *cmd: str) -> None:
    tier(["run", "-d", "--name", name, "--network", "none", IMAGE, *(cmd or ("sh", "-c", COUNTER))], check=0)
    if not cmd:
        wait_for(lambda: ticks(tier, name) >= 3, what=f"{name} to tick")


@pytest.mark.root
def test_pause_stops_every_process_until_unpause(root_minirun: Tier, names: Callable[[], str]) -> None:
    tier, name = root_minirun, names()
    started(tier, name)
    # A process exec started is in the container's cgroup too: it stops with PID 1.
    tier(["exec", "-d", name, "sh", "-c", "while :; do echo x >> /tmp/by-exec; usleep 20000; done"], check=0)
    upper = Path(tier.inspect(name)["GraphDriver"]["Data"]["UpperDir"])
    wait_for(lambda: (upper / "tmp" / "by-exec").exists(), what="exec's writer")

    assert tier(["pause", name], check=0).stdout == f"{name}\n"
    written = (upper / "tmp" / "by-exec").stat().st_size
    assert still(tier, name), "PID 1 went on ticking while paused"
    assert (upper / "tmp" / "by-exec").stat().st_size == written, "exec's process went on while paused"
    assert state(tier, name)["Status"] == "paused"
    assert (state(tier, name)["Paused"], state(tier, name)["Running"]) == (True, True)
    listed = tier(["ps", "--format", "{{.Names}}|{{.Status}}|{{.State}}"], check=0).stdout.splitlines()
    line = next(x for x in listed if x.startswith(f"{name}|"))
    assert line.endswith("(Paused)|paused"), line
    assert name in tier(["ps", "-f", "status=paused", "--format", "{{.Names}}"], check=0).stdout.split()
    assert name not in tier(["ps", "-f", "status=running", "--format", "{{.Names}}"], check=0).stdout.split()
    # The kernel's own word: the freezer minirun used says frozen.
    frozen = [d for d in container_cgroup_dirs(tier.inspect(name)["Id"])
              if ((d / "freezer.state").exists() and (d / "freezer.state").read_text().strip() == "FROZEN")
              or ((d / "cgroup.events").exists() and "frozen 1" in (d / "cgroup.events").read_text())]
    assert frozen, "no cgroup of the container is frozen"

    assert tier(["unpause", name], check=0).stdout == f"{name}\n"
    assert ticking(tier, name)
    assert (state(tier, name)["Status"], state(tier, name)["Paused"]) == ("running", False)
    wait_for(lambda: (upper / "tmp" / "by-exec").stat().st_size > written, what="exec's process to go on")
    tier(["rm", "-f", name], check=0)


@pytest.mark.root
def test_what_a_paused_container_refuses(root_minirun: Tier, names: Callable[[], str]) -> None:
    tier, name, stopped = root_minirun, names(), names()
    started(tier, name)
    tier(["create", "--name", stopped, IMAGE, "true"], check=0)
    tier(["pause", name], check=0)
    # exec would start a process frozen at birth, and wait for it forever
    assert "is paused" in one_line_error(tier(["exec", name, "true"], check=125, timeout=20))
    assert "paused" in one_line_error(tier(["attach", name], check=125, timeout=20))
    assert "paused" in one_line_error(tier(["start", name], check=1, timeout=20))
    assert "paused already" in one_line_error(tier(["pause", name], check=1))
    assert "stop it first" in one_line_error(tier(["rm", name], check=1))
    both = tier(["pause", stopped, name], check=1)  # each named container: its line, code 1
    assert "not running" in both.stderr and "paused already" in both.stderr
    assert "not running" in one_line_error(tier(["unpause", stopped], check=1))
    tier(["unpause", name], check=0)
    assert "not paused" in one_line_error(tier(["unpause", name], check=1))
    assert "no such container" in one_line_error(tier(["pause", "no-such-container-here"], check=1))
    tier(["rm", "-f", name, stopped], check=0)


@pytest.mark.root
def test_stop_kill_and_rm_f_act_on_a_paused_container(root_minirun: Tier, names: Callable[[], str]) -> None:
    tier = root_minirun
    # stop: the stop signal, then a thaw so that it is acted on: the trap's exit 3, not the
    # SIGKILL 60 s later (137).
    name = names()
    started(tier, name)
    tier(["pause", name], check=0)
    tier(["stop", "-t", "60", name], check=0, timeout=90)
    assert tier.inspect(name)["State"]["ExitCode"] == 3
    assert "got TERM" in tier(["logs", name], check=0).stdout
    # kill -s USR1: delivered, but acted on only after unpause; it stays paused meanwhile.
    tier(["start", name], check=0)
    wait_for(lambda: ticks(tier, name) >= 3, what="the restarted counter")
    tier(["pause", name], check=0)
    tier(["kill", "-s", "USR1", name], check=0)
    assert still(tier, name) and state(tier, name)["Status"] == "paused"
    assert "got USR1" not in tier(["logs", name], check=0).stdout
    tier(["unpause", name], check=0)
    wait_for(lambda: "got USR1" in tier(["logs", name], check=0).stdout, what="USR1 after unpause")
    # kill (SIGKILL): ends it, paused or not.
    tier(["pause", name], check=0)
    tier(["kill", name], check=0)
    wait_for(lambda: state(tier, name)["Status"] == "exited", what="the killed container's exit")
    assert state(tier, name)["ExitCode"] == 137
    # rm -f of a paused one: gone, with its cgroup.
    tier(["start", name], check=0)
    wait_for(lambda: state(tier, name)["Status"] == "running", what="the second restart")
    container_id = tier.inspect(name)["Id"]
    tier(["pause", name], check=0)
    tier(["rm", "-f", name], check=0, timeout=30)
    assert name not in tier.container_names()
    assert container_cgroup_dirs(container_id) == []


@pytest.mark.root
@pytest.mark.parametrize("kind", FREEZER_KINDS)
def test_rm_f_removes_a_container_frozen_from_outside(root_minirun: Tier, names: Callable[[], str],
                                                     kind: str) -> None:
    """Frozen by hand (or by minirun-oci, or any tool) in either freezer: `ps` says paused, and
    rm -f still removes it. Before, a v1 freeze held rm -f's SIGKILL: rm failed after 20 s with
    EBUSY on the cgroup, and the container stayed."""
    tier, name = root_minirun, names()
    started(tier, name, "sleep", "300")
    container_id = tier.inspect(name)["Id"]
    freezer = next(d / FREEZERS[kind] for d in container_cgroup_dirs(container_id)
                   if (d / FREEZERS[kind]).exists())
    freezer.write_text("FROZEN" if kind == "v1 freezer" else "1")
    wait_for(lambda: state(tier, name)["Status"] == "paused", what="the kernel's freeze")
    removed = tier(["rm", "-f", name], timeout=60)
    assert removed.returncode == 0, removed.stderr
    assert container_cgroup_dirs(container_id) == []


@pytest.mark.rootless
def test_rootless_pause_without_a_cgroup_is_refused_and_works_with_one(rootless_minirun: Tier,
                                                                      names: Callable[[], str]) -> None:
    tier, name = rootless_minirun, names()
    started(tier, name)
    refused = tier(["pause", name], check=1)
    assert "no cgroup of its own" in one_line_error(refused)
    assert state(tier, name)["Status"] == "running"
    tier(["rm", "-f", name], check=0)
    with delegated_tier(rootless_minirun) as delegated:
        name = names()
        started(delegated, name)
        delegated(["pause", name], check=0)
        assert still(delegated, name) and state(delegated, name)["Status"] == "paused"
        delegated(["unpause", name], check=0)
        assert ticking(delegated, name)
        delegated(["pause", name], check=0)
        delegated(["rm", "-f", name], check=0, timeout=30)
        assert name not in delegated.container_names()


@pytest.mark.root
@pytest.mark.parametrize("kind", FREEZER_KINDS)
def test_rm_f_removes_a_container_that_froze_a_cgroup_of_its_own(root_minirun: Tier, names: Callable[[], str],
                                                                 kind: str) -> None:
    """What a container that may write its cgroup (systemd inside, --cap-add SYS_ADMIN with the
    host's user namespace) can do, done here from the host: a cgroup below its own, its PID 1
    moved in, and that one frozen. Thawing the container's own cgroup does not thaw it (v1: it
    froze itself), yet rm -f must end and remove everything."""
    tier, name = root_minirun, names()
    started(tier, name, "sleep", "300")
    item = tier.inspect(name)
    top = next(d for d in container_cgroup_dirs(item["Id"]) if (d / FREEZERS[kind]).exists())
    inner = top / "inner"
    inner.mkdir()
    (inner / "cgroup.procs").write_text(str(item["State"]["Pid"]))
    (inner / FREEZERS[kind]).write_text("FROZEN" if kind == "v1 freezer" else "1")
    removed = tier(["rm", "-f", name], timeout=60)
    assert removed.returncode == 0, removed.stderr
    assert container_cgroup_dirs(item["Id"]) == []


@pytest.mark.root
@pytest.mark.parametrize("paused", [False, True])
def test_start_after_the_monitor_died_runs_it_again(root_minirun: Tier, names: Callable[[], str],
                                                   paused: bool) -> None:
    """The monitor SIGKILLed (a crash of minirun): the record says "Exited (137)" and what the
    run left (its cgroup; paused, even its processes: v1's freezer holds PID 1's death signal)
    is for the next rm, prune or start to clean up. `start` runs it again, as docker's does,
    with nothing of the old run left in its cgroup. (atk20; failed before: `start` said
    "[Errno 17] File exists: /sys/fs/cgroup/cpu/minirun/ID", 1, and the container stayed
    "Created" with that error: only rm could help.)"""
    tier, name = root_minirun, names()
    started(tier, name)
    found = tier.inspect(name)
    old_pid1 = found["State"]["Pid"]
    try:
        if paused:
            tier(["pause", name], check=0)
        record = json.loads((tier.state_dir / f"{found['Id']}.json").read_text())
        os.kill(record["monitor_pid"], signal.SIGKILL)
        wait_for(lambda: state(tier, name)["Status"] == "exited", what="the record to say exited")
        tier(["start", name], check=0)
        wait_for(lambda: state(tier, name)["Status"] == "running", what="the container to run again")
        assert not process_exists(old_pid1), "the old run's PID 1 lives on"
        assert ticking(tier, name)
    finally:
        tier(["rm", "-f", name], check=0, timeout=30)
    assert container_cgroup_dirs(found["Id"]) == []
