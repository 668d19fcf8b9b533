"""A container's life as docker users know it: names and records (ps, inspect, rm, prune),
signals to `minirun run`, `--init`, and what is left when minirun itself is SIGKILLed: nothing.

Both tiers (fixture `minirun`, ids "root" and "rootless").
"""

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import IMAGE, Tier, one_line_error, process_exists, read_until, wait_for, wait_running


def names_in_ps(minirun: Tier, *flags: str) -> list[str]:
    lines = minirun(["ps", *flags], check=0).stdout.splitlines()
    assert lines[0].split()[:2] == ["CONTAINER", "ID"], lines
    return [line.split()[-1] for line in lines[1:]]


def test_named_container_record_ps_inspect_rm(minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    minirun(["run", "--name", name, IMAGE, "sh", "-c", "exit 5"], check=5)
    assert name not in names_in_ps(minirun), "ps without -a lists running containers only"
    assert name in names_in_ps(minirun, "-a")
    row = next(line for line in minirun(["ps", "-a"], check=0).stdout.splitlines() if line.endswith(name))
    assert "Exited (5)" in row, row

    item = minirun.inspect(name)
    assert item["Name"] == f"/{name}"
    assert len(item["Id"]) == 64 and int(item["Id"], 16) >= 0
    assert item["State"]["Status"] == "exited"
    assert item["State"]["ExitCode"] == 5
    assert item["State"]["Running"] is False
    assert item["State"]["Pid"] == 0
    # Found by id and by unique id prefix as well, as docker does.
    assert minirun.inspect(item["Id"])["Name"] == f"/{name}"
    assert minirun.inspect(item["Id"][:12])["Name"] == f"/{name}"
    assert item["Id"][:12] in minirun(["ps", "-a", "-q"], check=0).stdout.split()

    minirun(["rm", name], check=0)
    assert name not in names_in_ps(minirun, "-a")
    result = minirun(["inspect", name])
    assert result.returncode != 0
    one_line_error(result)
    assert not list(minirun.state_dir.glob(f"{item['Id']}*")), "rm left the record"


def test_duplicate_name_is_refused(minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    minirun(["run", "--name", name, IMAGE, "true"], check=0)
    result = minirun(["run", "--name", name, IMAGE, "echo", "second"], check=125)
    assert "second" not in result.stdout
    assert name in one_line_error(result)
    minirun(["rm", name], check=0)
    minirun(["run", "--rm", "--name", name, IMAGE, "true"], check=0)  # free again after rm
    assert name not in names_in_ps(minirun, "-a"), "--rm removes the record"


def test_invalid_name_is_refused(minirun: Tier) -> None:
    for bad in ("-x", "a/b", "with space", "é"):
        result = minirun(["run", "--rm", "--name", bad, IMAGE, "echo", "ran"], check=125)
        assert "ran" not in result.stdout


def test_rm_of_a_running_container_needs_force(minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    proc = minirun.popen(["run", "--name", name, IMAGE, "sleep", "60"])
    item = wait_running(minirun, name, proc)
    assert name in names_in_ps(minirun)
    result = minirun(["rm", name])
    assert result.returncode != 0, "docker refuses to remove a running container without -f"
    one_line_error(result)
    assert process_exists(item["State"]["Pid"])
    minirun(["rm", "-f", name], check=0)
    proc.communicate(timeout=30)
    assert proc.returncode == 137, "rm -f kills the container with SIGKILL"
    wait_for(lambda: not process_exists(item["State"]["Pid"]), timeout=30, what="the container to die")
    assert name not in names_in_ps(minirun, "-a")


def test_prune_removes_stopped_containers(minirun: Tier, names: Callable[[], str]) -> None:
    stopped, running = names(), names()
    minirun(["run", "--name", stopped, IMAGE, "true"], check=0)
    proc = minirun.popen(["run", "--name", running, IMAGE, "sleep", "60"])
    wait_running(minirun, running, proc)
    minirun(["prune"], check=0)
    listed = names_in_ps(minirun, "-a")
    assert stopped not in listed
    assert running in listed, "prune keeps running containers"
    minirun(["rm", "-f", running], check=0)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 7), (signal.SIGINT, 9)], ids=["TERM", "INT"])
def test_a_signal_to_minirun_reaches_the_container(minirun: Tier, sig: signal.Signals, code: int) -> None:
    name = sig.name.removeprefix("SIG")
    script = f'trap "echo got-{name}; exit {code}" {name}; echo ready; while true; do sleep 0.1; done'
    proc = minirun.popen(["run", "--rm", IMAGE, "sh", "-c", script])
    read_until(proc.stdout, "ready\n")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert f"got-{name}" in out, (out, err)
    assert proc.returncode == code, (proc.returncode, out, err)


def cgroup_dirs(container_id: str) -> list[str]:
    found = []
    for top in Path("/sys/fs/cgroup").iterdir():
        for root, dirs, _ in os.walk(top):
            found += [os.path.join(root, d) for d in dirs if container_id in d or container_id[:12] in d]
    return found


def test_sigkill_of_minirun_leaves_nothing(minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    proc = minirun.popen(["run", "--name", name, IMAGE, "sh", "-c", "echo started > /tmp/x; sleep 600"])
    item = wait_running(minirun, name, proc)
    container_id, pid = item["Id"], item["State"]["Pid"]
    assert process_exists(pid)
    if not minirun.rootless:
        # Rootless gets a cgroup only where one is delegated to the user (a v2 subtree from
        # systemd); on hybrid hosts like these it runs without, as podman does.
        assert cgroup_dirs(container_id), "a running container has its own cgroup"

    proc.kill()  # SIGKILL: minirun gets no chance to clean up
    proc.communicate(timeout=30)
    wait_for(lambda: not process_exists(pid), timeout=30, what=f"container PID 1 ({pid}) to die with minirun")
    with open("/proc/self/mountinfo") as f:
        mountinfo = f.read()
    assert container_id not in mountinfo, "the container's overlay is still mounted on the host"
    assert not [line for line in mountinfo.splitlines() if " - overlay " in line and "minirun" in line]

    state = minirun.inspect(name)["State"]
    assert state["Status"] == "exited", "a record whose monitor is gone is not running"
    assert state["Pid"] == 0

    minirun(["rm", "-f", name], check=0)
    assert minirun(["inspect", name]).returncode != 0
    assert not [p for p in minirun.state_dir.glob("*") if container_id in p.name], "record left"
    assert not cgroup_dirs(container_id), "cgroup left"
    layers = [os.path.join(root, d) for root, dirs, _ in os.walk(minirun.store_dir) for d in dirs
              if container_id in d]
    assert not layers, f"container directory left: {layers}"


def test_sigkill_of_minirun_then_prune(minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    proc = minirun.popen(["run", "--name", name, IMAGE, "sleep", "600"])
    item = wait_running(minirun, name, proc)
    proc.kill()
    proc.communicate(timeout=30)
    wait_for(lambda: not process_exists(item["State"]["Pid"]), timeout=30, what="the container to die")
    minirun(["prune"], check=0)
    assert name not in names_in_ps(minirun, "-a")
    assert not cgroup_dirs(item["Id"])
    assert not Path(item["GraphDriver"]["Data"]["UpperDir"]).exists()


def test_init_is_pid_1_and_reaps_zombies(minirun: Tier) -> None:
    out = minirun(["run", "--rm", "--init", IMAGE, "sh", "-c", "echo $$; ps -o pid,args"], check=0).stdout
    lines = out.splitlines()
    assert lines[0] != "1", "with --init the command is not PID 1"
    pid1 = next(line for line in lines[2:] if line.split()[0] == "1")
    assert not pid1.split(None, 1)[1].startswith("sh"), f"PID 1 must be the init, not the shell:\n{out}"

    # An orphan (its parent, a subshell, exits at once) is re-parented to PID 1 and must be
    # reaped there when it exits, instead of staying a zombie.
    script = ("(sleep 0.2 & echo $! > /tmp/orphan); o=$(cat /tmp/orphan); i=0; "
              "while [ -e /proc/$o ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; "
              'if [ -e /proc/$o ]; then echo "not-reaped $(cat /proc/$o/stat)"; else echo reaped; fi')
    out = minirun(["run", "--rm", "--init", IMAGE, "sh", "-c", script], check=0).stdout
    assert out == "reaped\n", out


def test_init_forwards_signals_and_exit_code(minirun: Tier) -> None:
    # Without a trap a shell that is not PID 1 dies of SIGTERM: 143, as with docker --init.
    proc = minirun.popen(["run", "--rm", "--init", IMAGE, "sh", "-c", "echo ready; sleep 600 & wait"])
    read_until(proc.stdout, "ready\n")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, out, err)
    assert minirun(["run", "--rm", "--init", IMAGE, "sh", "-c", "exit 4"]).returncode == 4


def test_inspect_many_and_unknown(minirun: Tier, names: Callable[[], str]) -> None:
    a, b = names(), names()
    for name in (a, b):
        minirun(["run", "--name", name, IMAGE, "true"], check=0)
    items = json.loads(minirun(["inspect", a, b], check=0).stdout)
    assert [i["Name"] for i in items] == [f"/{a}", f"/{b}"]
    result = minirun(["inspect", "mrt-no-such-container"])
    assert result.returncode != 0
    one_line_error(result)
    minirun(["rm", a, b], check=0)


def test_a_failed_start_stays_created_with_its_error(minirun: Tier, names: Callable[[], str]) -> None:
    """docker: a container whose command cannot be started is "Created", and inspect says why."""
    name = names()
    minirun(["run", "--name", name, "--network", "none", IMAGE, "/no/such/program"], check=127)
    state = json.loads(minirun(["inspect", name], check=0).stdout)[0]["State"]
    assert (state["Status"], state["ExitCode"]) == ("created", 127)
    assert "no such file or directory" in state["Error"]
    row = next(line for line in minirun(["ps", "-a"], check=0).stdout.splitlines() if line.endswith(name))
    assert " Created " in row
    minirun(["prune"], check=0)
    assert minirun(["inspect", name]).returncode == 1  # pruned like any stopped container
