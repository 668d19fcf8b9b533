"""Detached containers and their monitor: run -d, logs, stop/kill/restart/wait, create/start,
attach, stdio through pipes, and what a hostile container (PTRACE_TRACEME) or a SIGKILLed
monitor does. Both tiers (fixture `minirun`, ids "root" and "rootless"); exit codes are
compared with podman's (root) where the suite compares them.
"""

from __future__ import annotations

import os
import pty
import select
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    IMAGE,
    Tier,
    build_static,
    one_line_error,
    open_dir,
    process_exists,
    wait_for,
    wait_running,
)


def run_d(minirun: Tier, name: str, *args: str) -> dict[str, Any]:
    """`run -d`: prints the full id at once and returns; the container then runs."""
    result = minirun(["run", "-d", "--name", name, "--network", "none", *args], check=0, timeout=60)
    container_id = result.stdout.strip()
    assert len(container_id) == 64 and int(container_id, 16) >= 0, result.stdout
    item = wait_running(minirun, name)
    assert item["Id"] == container_id
    return item


def monitor_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def session_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[3])


def cgroup_dirs(container_id: str) -> list[str]:
    found = []
    for top in Path("/sys/fs/cgroup").iterdir():
        for root, dirs, _ in os.walk(top):
            found += [os.path.join(root, d) for d in dirs if container_id in d]
    return found


def exit_code(minirun: Tier, name: str) -> int:
    code: int = minirun.inspect(name)["State"]["ExitCode"]
    return code


# --- run -d ------------------------------------------------------------------------------------


def test_detached_survives_the_exit_and_sighup_of_its_shell(minirun: Tier, names: Callable[[], str]) -> None:
    """The shell that ran `run -d` in a terminal exits and its session gets SIGHUP (the
    terminal closes): the container runs on, under a monitor in a session of its own."""
    name = names()
    argv = minirun.argv(["run", "-d", "--name", name, "--network", "none", IMAGE, "sleep", "600"])
    script = " ".join(shlex.quote(a) for a in argv) + " && echo started && sleep 600"
    shell, master = pty.fork()
    if shell == 0:
        try:
            os.execve("/bin/sh", ["sh", "-c", script], minirun.env)
        finally:
            os._exit(127)
    minirun.processes.append(shell)
    seen = b""
    deadline = time.monotonic() + 60
    while b"started" not in seen and time.monotonic() < deadline:
        if select.select([master], [], [], 1)[0]:
            try:
                seen += os.read(master, 4096)
            except OSError:
                break
    assert b"started" in seen, seen
    item = minirun.inspect(name)
    pid = item["State"]["Pid"]
    monitor = monitor_of(pid)
    assert session_of(monitor) == monitor, "the monitor leads a session of its own (setsid)"
    assert session_of(monitor) != session_of(shell)
    os.killpg(shell, signal.SIGHUP)  # what the terminal's hang-up does to its session
    os.close(master)
    os.waitpid(shell, 0)
    minirun.processes.remove(shell)
    time.sleep(1)
    assert process_exists(pid) and process_exists(monitor)
    assert minirun.inspect(name)["State"]["Status"] == "running"
    minirun(["stop", "-t", "1", name], check=0)
    minirun(["rm", name], check=0)


@pytest.mark.parametrize(("command", "code"), [(["/no/such/program"], 127), (["/etc/passwd"], 126)],
                         ids=["127", "126"])
def test_detached_start_errors_come_at_once(minirun: Tier, names: Callable[[], str], command: list[str],
                                            code: int) -> None:
    name = names()
    result = minirun(["run", "-d", "--name", name, "--network", "none", IMAGE, *command], check=code)
    assert result.stdout == "", "no id for a container that did not start"
    one_line_error(result)
    state = minirun.inspect(name)["State"]
    assert (state["Status"], state["ExitCode"]) == ("created", code)
    minirun(["rm", name], check=0)
    result = minirun(["run", "-d", "--network", "none", "mrt-no-such-image-xyz"], check=125)
    one_line_error(result)


# --- logs --------------------------------------------------------------------------------------


MAX_RSS_OF_CHILD = ("import resource, subprocess, sys; "
                    "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
                    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


# Its own bound: 10 MB through the monitor, then back through `logs` twice, is minutes of work in
# the VM tier's emulated guest (whose pytest gives a test 300 s); a hang still ends it.
@pytest.mark.timeout(1200)
def test_ten_megabytes_of_logs_complete_and_in_order(minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    lines = 1_400_000  # `seq` prints ~10 MB
    run_d(minirun, name, IMAGE, "sh", "-c", f"seq 1 {lines}; echo to-stderr >&2")
    assert minirun(["wait", name], check=0, timeout=600).stdout == "0\n"
    # Reading the 10 MB back is JSON lines through Python: seconds here, minutes in the VM
    # tier's emulated guest (over 120 s there, where the wait above took less than 30 s: the
    # container had written most of it before `wait` began, so the wait measures no speed).
    # `logs --tail` reads from the end backwards.
    result = minirun(["logs", name], check=0, timeout=600)
    expected = "".join(f"{i}\n" for i in range(1, lines + 1))
    assert len(result.stdout) > 10_000_000
    assert result.stdout == expected, "every line, once, in order"
    assert result.stderr == "to-stderr\n"
    tail = minirun(["logs", "--tail", "3", "-t", name], check=0, timeout=600).stdout.splitlines()  # +stderr
    assert [line.split(" ", 1)[1] for line in tail] == [str(lines - 1), str(lines)]
    assert all(line[:4].isdigit() and line.split(" ", 1)[0].endswith("Z") for line in tail), tail
    # --tail holds its lines, not the log (~100 MB of JSON here; it took 733 MB before).
    argv = [sys.executable, "-c", MAX_RSS_OF_CHILD, *minirun.argv(["logs", "--tail", "1", name])]
    measured = subprocess.run(argv, env=minirun.env, capture_output=True, text=True, timeout=600, check=True)
    assert int(measured.stdout.split()[-1]) < 100_000, f"logs --tail 1 peaked at {measured.stdout} KiB"
    log = Path(minirun.inspect(name)["LogPath"])
    minirun(["rm", name], check=0)
    assert not log.exists(), "the log goes with the container"


def test_logs_follow_and_end_with_the_container(minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    run_d(minirun, name, IMAGE, "sh", "-c", "for i in 1 2 3 4 5; do echo line $i; sleep 0.3; done; exit 3")
    follow = minirun.popen(["logs", "-f", name], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = follow.communicate(timeout=60)  # ends by itself when the container ends
    assert follow.returncode == 0, err
    assert out == "".join(f"line {i}\n" for i in range(1, 6)), out
    assert minirun(["wait", name], check=0).stdout == "3\n"
    assert minirun(["logs", "--since", "1h", name], check=0).stdout == out
    assert minirun(["logs", "--since", "2099-01-01T00:00:00Z", name], check=0).stdout == ""
    minirun(["rm", name], check=0)


@pytest.mark.root
def test_logs_of_a_log_edited_by_hand_print_no_traceback(root_minirun: Tier,
                                                         names: Callable[[], str]) -> None:
    """A line the writer never writes (a lone surrogate, a time that is no time), appended by
    hand: `logs` shows what it can ("?" for the surrogate, UTF-8's "replace"; `--since` leaves the
    line without a time out), never a traceback. Before, both ended `logs` in one."""
    name = names()
    root_minirun(["run", "--name", name, "--network", "none", IMAGE, "echo", "kept"], check=0)
    log = Path(root_minirun.inspect(name)["LogPath"])
    with log.open("a") as f:
        f.write('{"log":"\\ud800x\\n","stream":"stdout","time":"not a time"}\n')
    assert root_minirun(["logs", name], check=0).stdout == "kept\n?x\n"
    assert root_minirun(["logs", "--since", "1h", name], check=0).stdout == "kept\n"
    root_minirun(["rm", name], check=0)


def test_log_rotation_by_size(minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    minirun(["run", "--name", name, "--network", "none", "--log-opt", "max-size=100k",
             "--log-opt", "max-file=2", IMAGE, "seq", "1", "100000"], check=0, timeout=60)
    log = Path(minirun.inspect(name)["LogPath"])
    files = sorted(log.parent.glob(log.name + "*"))
    assert [f.name for f in files] == [log.name, log.name + ".1"], files
    assert all(f.stat().st_size <= 100 * 1024 for f in files)
    shown = minirun(["logs", name], check=0).stdout.splitlines()
    assert shown[-1] == "100000" and shown == [str(i) for i in range(int(shown[0]), 100001)]
    minirun(["rm", name], check=0)
    assert not any(log.parent.glob(log.name + "*"))
    minirun(["run", "--rm", "--network", "none", "--log-opt", "max-size=zz", IMAGE, "true"], check=125)


# --- stop, kill, restart, wait ------------------------------------------------------------------


def podman_stop_code(args: list[str], stop: list[str], podman: Callable[..., Any]) -> int:
    """The same container under podman: start it detached, stop or kill it, its exit code."""
    name = f"mrt-podman-{os.urandom(3).hex()}"
    started = podman(["-d", "--name", name, *("{image}" if a == IMAGE else a for a in args)])
    assert started.returncode == 0, started.stderr
    try:
        time.sleep(0.5)
        subprocess.run(["podman", *stop, name], capture_output=True, timeout=60, check=True)
        waited = subprocess.run(["podman", "wait", name], capture_output=True, text=True, timeout=60,
                                check=True)
        return int(waited.stdout.strip())
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True, timeout=60, check=False)


STOPS = {
    # --init forwards TERM to `sleep`, which dies of it: 128 + 15.
    "honoured-143": (["--init", IMAGE, "sleep", "600"], ["stop", "-t", "5"], 143),
    # PID 1 without a handler ignores TERM (pid_namespaces(7)): SIGKILL after -t.
    "ignored-137": ([IMAGE, "sleep", "600"], ["stop", "-t", "1"], 137),
    "kill-s-usr1": ([IMAGE, "sh", "-c", 'trap "exit 10" USR1; while :; do sleep 0.1; done'],
                    ["kill", "-s", "USR1"], 10),
    "kill-9": ([IMAGE, "sleep", "600"], ["kill", "-s", "9"], 137),
}


@pytest.mark.parametrize("case", STOPS)
def test_stop_and_kill_exit_codes(minirun: Tier, names: Callable[[], str], case: str,
                                  request: pytest.FixtureRequest) -> None:
    args, stop, code = STOPS[case]
    name = names()
    item = run_d(minirun, name, *args)
    if args[-1] != "600":
        time.sleep(0.5)  # the shell's trap is set
    started = time.monotonic()
    assert minirun([*stop, name], check=0, timeout=60).stdout == f"{name}\n"
    took = time.monotonic() - started
    assert minirun(["wait", name], check=0).stdout == f"{code}\n"
    assert exit_code(minirun, name) == code
    assert not process_exists(item["State"]["Pid"])
    if case == "ignored-137":
        assert took >= 1, "SIGKILL only after the timeout"
    if case == "honoured-143":
        assert took < 5, "no SIGKILL for a container that honoured TERM"
    if minirun.name == "root":
        assert podman_stop_code(args, stop, request.getfixturevalue("podman")) == code
    minirun(["rm", name], check=0)


def test_stop_signal_restart_and_wait(minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    script = 'echo run >> /runs; wc -l < /runs; trap "exit 42" USR2; while :; do sleep 0.1; done'
    run_d(minirun, name, "--stop-signal", "USR2", IMAGE, "sh", "-c", script)
    time.sleep(0.5)
    minirun(["restart", "-t", "5", name], check=0)
    wait_running(minirun, name)
    time.sleep(0.5)
    assert minirun(["logs", name], check=0).stdout == "1\n2\n", "restarted on the same file system"
    waiter = minirun.popen(["wait", name], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)
    assert waiter.poll() is None, "wait blocks while the container runs"
    minirun(["stop", name], check=0)  # USR2, its --stop-signal: exit 42, no SIGKILL needed
    out, err = waiter.communicate(timeout=30)
    assert out == "42\n", err
    minirun(["kill", name], check=1)  # not running: one line, exit 1
    minirun(["rm", name], check=0)
    minirun(["kill", "-s", "NOSUCHSIG", name], check=125)


def test_stop_sends_the_images_stop_signal(minirun: Tier, names: Callable[[], str],
                                           busybox_tar: Path) -> None:
    """docker's rule: --stop-signal, else the image's StopSignal (nginx's images say SIGQUIT), else
    SIGTERM. An image that asks for USR1 is stopped by USR1, which this shell turns into exit 42."""
    name = names()
    image = f"{name}-image"
    minirun(["import", "-c", "STOPSIGNAL SIGUSR1", str(busybox_tar), image], check=0)
    try:
        script = 'trap "exit 42" USR1; while :; do sleep 0.1; done'
        item = run_d(minirun, name, image, "sh", "-c", script)
        assert item["Config"]["StopSignal"] == "SIGUSR1"
        time.sleep(0.5)  # the shell's trap is set
        minirun(["stop", "-t", "30", name], check=0)
        assert minirun(["wait", name], check=0).stdout == "42\n", "USR1 first, not TERM (143) or KILL (137)"
        minirun(["rm", name], check=0)
    finally:
        minirun(["rm", "-f", name])
        minirun(["rmi", image], check=0)


def test_create_then_start(minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    container_id = minirun(["create", "--name", name, "--network", "none", IMAGE, "sh", "-c",
                            "echo hello from $(hostname); exit 6"], check=0).stdout.strip()
    assert len(container_id) == 64
    item = minirun.inspect(name)
    assert item["State"]["Status"] == "created"
    row = next(line for line in minirun(["ps", "-a"], check=0).stdout.splitlines() if line.endswith(name))
    assert " Created " in row, row
    result = minirun(["start", "-a", name], check=6)
    assert result.stdout == f"hello from {container_id[:12]}\n"
    assert minirun(["start", name], check=0).stdout == f"{name}\n"
    assert minirun(["wait", name], check=0).stdout == "6\n"
    assert minirun(["logs", name], check=0).stdout == f"hello from {container_id[:12]}\n" * 2
    minirun(["rm", name], check=0)


def test_rm_force_of_a_detached_container(minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    item = run_d(minirun, name, IMAGE, "sleep", "600")
    pid, monitor = item["State"]["Pid"], monitor_of(item["State"]["Pid"])
    minirun(["rm", name], check=1)
    minirun(["rm", "-f", name], check=0)
    wait_for(lambda: not process_exists(pid) and not process_exists(monitor), timeout=30, what="the end")
    assert minirun(["inspect", name]).returncode == 1
    assert not Path(item["GraphDriver"]["Data"]["UpperDir"]).exists()


# --- a SIGKILLed monitor ---------------------------------------------------------------------------


@pytest.mark.parametrize("remove", ["rm", "prune"])
def test_sigkilled_monitor_leaves_nothing_rm_cannot_remove(minirun: Tier, names: Callable[[], str],
                                                          remove: str) -> None:
    name = names()
    item = run_d(minirun, name, IMAGE, "sleep", "600")
    pid = item["State"]["Pid"]
    monitor = monitor_of(pid)
    os.kill(monitor, signal.SIGKILL)
    wait_for(lambda: not process_exists(pid), timeout=30, what="PID 1 to die with its monitor")
    state = minirun.inspect(name)["State"]
    assert (state["Status"], state["ExitCode"], state["Pid"]) == ("exited", 137, 0)
    minirun([remove] if remove == "prune" else ["rm", name], check=0)
    assert minirun(["inspect", name]).returncode == 1
    assert not cgroup_dirs(item["Id"]), "cgroup left"
    assert not Path(item["GraphDriver"]["Data"]["UpperDir"]).parent.exists(), "container directory left"
    assert not [p for p in minirun.state_dir.iterdir() if item["Id"][:12] in p.name], "state left"


# --- stdio ----------------------------------------------------------------------------------------


def test_stdio_is_pipes_not_the_callers_terminal(minirun: Tier, names: Callable[[], str]) -> None:
    """Issue 12, item 5: under a terminal, without -t, the container gets pipes: it can neither
    read what the user types nor change the terminal's modes."""
    term = minirun.spawn_pty(["run", "--rm", "--network", "none", IMAGE, "sh", "-c",
                              "for fd in 0 1 2; do echo fd$fd $(readlink /proc/self/fd/$fd); done; "
                              "if [ -t 1 ]; then echo stdout-is-a-tty; fi; stty -a 2>&1 | head -1"])
    assert term.wait(timeout=60) == 0
    out = term.output.decode()
    assert "fd0 /dev/null" in out, out
    assert "fd1 pipe:[" in out and "fd2 pipe:[" in out, out
    assert "stdout-is-a-tty" not in out and "/dev/pts" not in out, out
    term = minirun.spawn_pty(["run", "--rm", "-i", "--network", "none", IMAGE, "readlink", "/proc/self/fd/0"])
    term.write("\x04")
    assert term.wait(timeout=60) == 0
    assert b"pipe:[" in term.output, term.output


def test_interactive_stdin_through_a_pipe(minirun: Tier) -> None:
    data = "".join(f"{i}\n" for i in range(200_000))
    result = minirun(["run", "--rm", "-i", "--network", "none", IMAGE, "sh", "-c", "wc -l; echo err >&2"],
                     input=data, check=0)
    assert result.stdout.strip() == "200000" and result.stderr == "err\n"


def test_attach_to_a_detached_tty_and_detach(minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    run_d(minirun, name, "-it", IMAGE, "sh")
    term = minirun.spawn_pty(["attach", name])
    time.sleep(0.5)
    term.type("echo attached-$((40+2))\r")
    term.expect("attached-42")
    term.write("\x10\x11")  # ctrl-p ctrl-q
    assert term.wait(timeout=30) == 0
    assert minirun.inspect(name)["State"]["Status"] == "running", "detaching leaves it running"
    term = minirun.spawn_pty(["attach", name])
    time.sleep(0.5)
    term.type("exit 5\r")
    assert term.wait(timeout=30) == 5, "attach leaves with the container's code when it ends"
    assert minirun(["wait", name], check=0).stdout == "5\n"
    minirun(["rm", name], check=0)


# --- a container that can hang its own monitor (issue 12, item 2) ----------------------------------


@pytest.fixture(scope="module")
def traceme_dir() -> Iterator[Path]:
    with open_dir("minirun-traceme-") as path:
        build_static("traceme.c", path, "-pthread")
        yield path


@pytest.mark.parametrize("detach", [False, True], ids=["attached", "detached"])
def test_ptrace_traceme_then_exit_group_does_not_hang_the_monitor(
        minirun: Tier, names: Callable[[], str], traceme_dir: Path, detach: bool) -> None:
    name = names()
    args = ["--name", name, "--network", "none", "-v", f"{traceme_dir}:/t:ro", IMAGE, "/t/traceme"]
    if detach:
        minirun(["run", "-d", *args], check=0)
        assert minirun(["wait", name], check=0, timeout=30).stdout == "7\n"
        assert minirun(["logs", name], check=0).stdout == "traced\n"
    else:
        result = minirun(["run", *args], check=7, timeout=30)  # hung forever before: waitpid(pid, 0)
        assert result.stdout == "traced\n"
    assert minirun.inspect(name)["State"]["Status"] == "exited"
    minirun(["rm", name], check=0)

