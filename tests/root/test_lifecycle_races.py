"""Attack review of issue 11: the lifecycle verbs against each other and against their clients.

- `rm -f` racing `start`: start claims the container under the lock rm uses (state.claim), so
  either rm wins (start: "no such container", exit 1) or start wins (rm -f then waits for the
  start, kills the container and removes it); never a "removed" container still running.
"""

import contextlib
import os
import random
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
from conftest import leakcheck
from helpers import IMAGE, Tier, wait_for
from test_faults import marked_processes, traces
from test_hostile_state import private_state

RACES = 25  # per tier; each is a create, a start and an rm -f (about 0.4 s here)


@pytest.fixture
def private(minirun: Tier) -> Iterator[Tier]:
    with private_state(minirun) as tier:
        yield tier


def test_rm_force_racing_start(private: Tier, names: Callable[[], str]) -> None:
    marker = str(100000 + secrets.randbelow(800000))
    outcomes: dict[str, int] = {}
    # How long a `start` takes here and now: the moments of the rm cover all of it.
    name = names()
    private(["create", "--name", name, "--network", "none", IMAGE, "sleep", marker], check=0)
    began = time.monotonic()
    private(["start", name], check=0)
    longest = time.monotonic() - began
    private(["rm", "-f", name], check=0)
    for _ in range(RACES):
        name = names()
        private(["create", "--name", name, "--network", "none", IMAGE, "sleep", marker], check=0)
        start = private.popen(["start", name])
        time.sleep(random.uniform(0.0, longest))
        rm = private(["rm", "-f", name], timeout=60)
        out, err = start.communicate(timeout=60)
        assert "Traceback" not in err + rm.stderr, err + rm.stderr
        assert rm.returncode == 0, f"rm -f: {rm.stderr}"
        if start.returncode == 0:
            outcome = "start won"
            assert out == f"{name}\n"
        else:
            outcome = "rm won"
            assert start.returncode == 1 and "no such container" in err, (start.returncode, err)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        # rm said it removed it: nothing of it runs, nothing of it is recorded.
        assert private(["inspect", name]).returncode == 1, f"{outcome}: the removed container is still there"
        with contextlib.suppress(AssertionError):
            wait_for(lambda: not marked_processes(marker), timeout=10)
        assert not marked_processes(marker), f"{outcome}: a removed container still runs"
    print(f"{private.name}: {RACES} races, start up to {longest * 1000:.0f} ms: {outcomes}")
    private(["prune"], check=0)
    assert not traces(private), "prune left containers behind"
    _, lines = leakcheck()
    assert not [line for line in lines if marker in line], lines


def test_an_attach_client_that_never_reads_stops_no_one(minirun: Tier, names: Callable[[], str]) -> None:
    lines = 1_000_000  # `seq`: 6.9 MB, more than a client's backlog (4 MiB) and its socket hold
    name = names()
    minirun(["run", "-d", "-i", "--name", name, "--network", "none", IMAGE, "sh", "-c",
             f"while [ ! -e /tmp/go ]; do sleep 0.05; done; seq 1 {lines}"], check=0)
    stuck = minirun.popen(["attach", "--no-stdin", name])
    time.sleep(1)  # connected
    os.kill(stuck.pid, signal.SIGSTOP)  # a client that never reads again
    reader = minirun.popen(["attach", "--no-stdin", name])
    time.sleep(1)
    began = time.monotonic()
    minirun(["exec", name, "touch", "/tmp/go"], check=0)
    try:
        out, err = reader.communicate(timeout=60)
    finally:
        os.kill(stuck.pid, signal.SIGCONT)
    took = time.monotonic() - began
    expected = "".join(f"{i}\n" for i in range(1, lines + 1))
    assert reader.returncode == 0, err
    assert out == expected, f"the reading client got {len(out)} of {len(expected)} bytes"
    # (a million JSON lines to parse: ~1.2 s here, ~5 s before chunks were decoded in one
    # json.loads, and over 60 s then in the emulated VM guest, tests/vm)
    assert minirun(["logs", name], check=0, timeout=300).stdout == expected, "the log lost output"
    stuck_out, _ = stuck.communicate(timeout=30)  # dropped: its connection ended
    assert expected.startswith(stuck_out) and len(stuck_out) < len(expected), len(stuck_out)
    print(f"{minirun.name}: {len(expected)} bytes to the reading client in {took:.1f}s; "
          f"the stopped one got {len(stuck_out)} before it was dropped")
    minirun(["rm", name], check=0)


def test_wait_prints_the_code_of_a_container_that_removes_itself(minirun: Tier,
                                                                 names: Callable[[], str]) -> None:
    name = names()
    minirun(["run", "-d", "--rm", "--name", name, "--network", "none", IMAGE, "sh", "-c",
             "sleep 1.5; exit 7"], check=0)
    waiters = [minirun.popen(["wait", name]) for _ in range(3)]
    killed = names()  # and one that rm -f removes while it is waited for: docker prints 137
    minirun(["run", "-d", "--name", killed, "--network", "none", IMAGE, "sleep", "600"], check=0)
    waiter_of_killed = minirun.popen(["wait", killed])
    time.sleep(0.5)
    minirun(["rm", "-f", killed], check=0)
    for waiter in waiters:
        out, err = waiter.communicate(timeout=60)
        assert (waiter.returncode, out, err) == (0, "7\n", "")
    out, err = waiter_of_killed.communicate(timeout=60)
    assert (waiter_of_killed.returncode, out, err) == (0, "137\n", "")
    gone = minirun(["wait", name], check=1)
    assert gone.stdout == "" and gone.stderr == f"minirun: no such container: {name}\n"


def test_a_crowd_of_attach_clients_neither_kills_the_monitor_nor_grows_it(minirun: Tier,
                                                                          names: Callable[[], str]) -> None:
    """A script that connects to the attach socket in a loop and never reads. With a shell's
    usual limit of open files the monitor's accept(2) failed with EMFILE: the monitor died, the
    container with it, "Exited (137)" instead of its code; below that, each client could hold
    4 MiB of output (N x 4 MiB). At most monitor.MAX_CLIENTS are served, the others get EOF."""
    name = names()
    cid = minirun(["run", "-d", "-i", "--name", name, "--network", "none", IMAGE, "sh", "-c",
                   "while [ ! -e /tmp/go ]; do sleep 0.05; done; head -c 12m /dev/zero; touch /tmp/out; "
                   "while [ ! -e /tmp/end ]; do sleep 0.05; done; exit 7"], check=0).stdout.strip()
    pid = int(minirun(["inspect", "-f", "{{.State.Pid}}", name], check=0).stdout)
    with open(f"/proc/{pid}/stat") as f:
        monitor = int(f.read().rsplit(")", 1)[1].split()[1])
    # 64 open files: a crowd of 100 here is a crowd of 1000 under a shell's default 1024. (As the
    # monitor's user: this sandbox's root lacks CAP_SYS_RESOURCE, which prlimit(2) asks of others.)
    as_user = ["setpriv", f"--reuid={minirun.uid}", f"--regid={minirun.gid}", "--clear-groups"]
    subprocess.run([*(as_user if minirun.rootless else []), "prlimit", f"--pid={monitor}", "--nofile=64:64"],
                   check=True)
    crowd = []
    try:
        for _ in range(100):
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            crowd.append(client)
            try:
                client.connect(str(minirun.state_dir / f"{cid[:12]}.attach"))
            except OSError as e:
                state = minirun(["inspect", "-f", "{{.State.Status}} {{.State.Error}}", name]).stdout
                raise AssertionError(f"client {len(crowd)}: {e}; the container: {state}") from None
        served = [c for c in crowd if wait_readable(c) != b""]  # the rest read EOF at once
        minirun(["exec", name, "touch", "/tmp/go"], check=0)
        wait_for(lambda: minirun(["exec", name, "test", "-e", "/tmp/out"]).returncode == 0, timeout=60,
                 what="the output written")
        with open(f"/proc/{monitor}/status") as f:
            peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) // 1024
        minirun(["exec", name, "touch", "/tmp/end"], check=0)
        assert minirun(["wait", name], check=0, timeout=60).stdout == "7\n", "the exit code was lost"
    finally:
        for client in crowd:
            client.close()
        minirun(["rm", "-f", name], timeout=60)
    print(f"{minirun.name}: {len(crowd)} clients, {len(served)} served; monitor peak RSS {peak} MiB")
    assert len(served) <= 8, len(served)
    assert peak < 64, f"the monitor grew to {peak} MiB"


def wait_readable(client: socket.socket) -> bytes | None:
    """b"" if the monitor closed this client (EOF), None if it holds it open (nothing to read)."""
    import select

    if not select.select([client], [], [], 1.0)[0]:
        return None
    return client.recv(1)


def test_attach_with_input_from_a_pipe_gets_the_output_and_the_exit_code(minirun: Tier,
                                                                        names: Callable[[], str]) -> None:
    """`echo hello | minirun attach NAME`: the end of its input (shutdown(SHUT_WR)) made the
    monitor drop the client, which then missed the answer, waited 30 s and said 0. docker's
    attach keeps the output until the container ends, then leaves with its code. A last byte
    that might have begun the detach keys (ctrl-p) was lost at the end of the input too."""
    name = names()
    minirun(["run", "-d", "-i", "--name", name, "--network", "none", IMAGE, "sh", "-c",
             'read line; echo "got $line"; dd bs=1 count=1 2>/dev/null | od -An -c; exit 3'], check=0)
    began = time.monotonic()
    attached = minirun(["attach", name], input="hello\n\x10", timeout=60)
    took = time.monotonic() - began
    assert (attached.returncode, attached.stdout.split()) == (3, ["got", "hello", "020"]), attached
    assert took < 20, f"attach took {took:.0f} s"
    minirun(["rm", name], check=0)
