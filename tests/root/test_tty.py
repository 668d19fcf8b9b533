"""`minirun run -it busybox sh`, driven through a real pseudo-terminal as a person would use it:
a prompt, typed commands, Ctrl-C that interrupts the command inside (and not minirun), the
window size, and `exit 3` that becomes minirun's exit code. Both tiers.

Every read has a deadline (tests/helpers.py, PtyProcess.expect): a hang fails, it never blocks.
"""

import os
import select
import termios
import time
from collections.abc import Callable

import pytest
from helpers import IMAGE, PtyProcess, Tier, one_line_error, set_window_size, wait_running

PROMPT = r"# (\x1b\[J)?$"  # busybox ash: "/ # ", sometimes redrawn with "clear to end of screen" after


def test_interactive_shell(minirun: Tier) -> None:
    term = minirun.spawn_pty(["run", "--rm", "-it", IMAGE, "sh"], rows=30, cols=100)
    term.expect(PROMPT)

    term.type("echo hello-$((1+2))\n")
    term.expect(r"hello-3\r\n")
    term.expect(PROMPT)

    term.type("tty; stty size\n")
    term.expect(r"/dev/pts/\d+\r\n30 100\r\n")
    term.expect(PROMPT)

    # Ctrl-C reaches the foreground command in the container, not minirun: the prompt comes back
    # (long before the 100 s of sleep) and the shell keeps working.
    term.type("echo sleeping-$((2*3)); sleep 100\n")
    term.expect(r"sleeping-6\r\n")
    term.type("\x03")
    term.expect(PROMPT, timeout=30)
    term.type("ps -o comm | grep -c sleep; echo alive-$((4+4))\n")
    term.expect(r"\r\n0\r\nalive-8\r\n")
    term.expect(PROMPT)

    # Line editing: type a wrong word, erase it with backspace, finish the line.
    term.type("echo abX\x7fc-$((5+5))\n")
    term.expect(r"abc-10\r\n")
    term.expect(PROMPT)

    term.type("exit 3\n")
    assert term.wait(timeout=30) == 3


def test_tty_without_a_terminal_is_an_error(minirun: Tier) -> None:
    # docker: "the input device is not a TTY" and exit 1; podman runs anyway. minirun says why
    # and uses its own-error code.
    result = minirun(["run", "--rm", "-it", IMAGE, "true"])
    assert result.returncode == 125
    assert "TTY" in result.stderr


def test_ctrl_c_on_a_pid_1_command(minirun: Tier) -> None:
    """With --init, Ctrl-C stops a command that never set up a SIGINT handler (as PID 1 it would
    be ignored, see pid_namespaces(7)): 130 = 128 + SIGINT, as docker run -it --init gives."""
    term = minirun.spawn_pty(["run", "--rm", "-it", "--init", IMAGE, "sh", "-c", "echo go; sleep 100"])
    term.expect(r"go\r\n")
    term.type("\x03")
    assert term.wait(timeout=30) == 130


def wait_raw(term: PtyProcess, timeout: float = 60) -> None:
    """Wait until the client has put its terminal in raw mode (ICANON and ISIG cleared: termios(3);
    tcgetattr on the master reads the terminal's settings). Before that the line discipline
    itself takes ctrl-c (SIGINT to the client) and ctrl-q (IXON), so keys typed to the container
    must wait for it; a slow (emulated) machine takes more than a fixed half second."""
    deadline = time.monotonic() + timeout
    while termios.tcgetattr(term.master)[3] & (termios.ICANON | termios.ISIG):
        assert time.monotonic() < deadline, "the client never put its terminal in raw mode"
        time.sleep(0.05)


def ctrl_p_ctrl_q_reach_the_shell(term: PtyProcess) -> None:
    """When they are not the detach keys, ctrl-p ctrl-q are keys like any other: the shell gets
    them (it rings no bell for them, and ctrl-c clears the line), then runs what comes next."""
    term.type("\x10\x11")
    time.sleep(0.5)
    term.type("\x03echo typed-$((6*7))\r")
    term.expect("typed-42")


def detach(term: PtyProcess, keys: str) -> None:
    """Type the detach keys: the client says so and leaves with 0 (docker's "read escape sequence")."""
    term.type(keys)
    term.expect("read escape sequence")
    assert term.wait(timeout=30) == 0


def test_attach_detach_keys_and_window_size(minirun: Tier, names: Callable[[], str]) -> None:
    """`attach --detach-keys` (docker's format; "" disables them) leaves the container running;
    attach gives the container's terminal its own size, and a new one at every SIGWINCH."""
    name = names()
    minirun(["run", "-d", "-it", "--name", name, "--network", "none", IMAGE, "sh"], check=0)
    wait_running(minirun, name)
    term = minirun.spawn_pty(["attach", "--detach-keys", "ctrl-a,d", name], rows=30, cols=100)
    wait_raw(term)
    term.type("stty size\r")
    term.expect(r"30 100\r\n")
    set_window_size(term.master, 40, 120)  # the kernel sends SIGWINCH to attach (tty_ioctl(4))
    time.sleep(0.3)
    term.type("stty size\r")
    term.expect(r"40 120\r\n")
    ctrl_p_ctrl_q_reach_the_shell(term)  # other detach keys: ctrl-p ctrl-q are typed keys now
    detach(term, "\x01d")  # ctrl-a d
    assert minirun.inspect(name)["State"]["Status"] == "running", "detaching leaves it running"

    term = minirun.spawn_pty(["attach", "--detach-keys=", name])  # "": no keys detach
    wait_raw(term)
    ctrl_p_ctrl_q_reach_the_shell(term)
    term.type("exit 4\r")
    assert term.wait(timeout=30) == 4
    minirun(["rm", name], check=0)
    bad = minirun(["attach", "--detach-keys", "ctrl-pq", name], check=125)
    assert "invalid detach keys" in one_line_error(bad)


def test_run_it_and_start_ai_detach_and_resize(minirun: Tier, names: Callable[[], str]) -> None:
    """`run -it` and `start -ai` are attach clients of a monitor of their own, so their detach
    keys leave the container running, as docker's; a resized terminal resizes the container's."""
    name = names()
    term = minirun.spawn_pty(["run", "-it", "--name", name, "--network", "none", IMAGE, "sh"],
                             rows=30, cols=100)
    term.expect(PROMPT)
    term.type("echo in-$((2+3)); stty size\r")
    term.expect(r"in-5\r\n30 100\r\n")
    set_window_size(term.master, 33, 90)
    time.sleep(0.3)
    term.type("stty size\r")
    term.expect(r"33 90\r\n")
    detach(term, "\x10\x11")  # ctrl-p ctrl-q
    assert minirun.inspect(name)["State"]["Status"] == "running", "detaching leaves it running"
    minirun(["stop", "-t", "1", name], check=0)

    term = minirun.spawn_pty(["start", "-ai", "--detach-keys", "ctrl-x,x", name])
    term.expect(PROMPT)
    ctrl_p_ctrl_q_reach_the_shell(term)  # not the keys now: sent on
    detach(term, "\x18x")  # ctrl-x x
    assert minirun.inspect(name)["State"]["Status"] == "running"
    term = minirun.spawn_pty(["attach", name])
    wait_raw(term)
    term.type("exit 5\r")
    assert term.wait(timeout=30) == 5
    assert minirun(["wait", name], check=0).stdout == "5\n"
    minirun(["rm", name], check=0)

    term = minirun.spawn_pty(["run", "--rm", "-it", "--detach-keys=", "--network", "none", IMAGE, "sh"])
    term.expect(PROMPT)
    term.type("\x10\x11")
    time.sleep(0.5)
    term.type("\x03exit 6\r")
    assert term.wait(timeout=30) == 6, "no detach keys: the shell got them, and its exit code is ours"


@pytest.mark.timeout(900)  # 4.5 MB through a terminal: minutes in the VM tier's emulated guest
def test_run_it_terminal_that_lags_loses_nothing(minirun: Tier) -> None:
    """The `run -it` terminal is an attach client that is never dropped (monitor.py): while it is
    more than 4 MiB behind, the container's output waits for it, as it did for a foreground
    monitor's terminal. Here it reads nothing for 3 s while the container writes 4.5 MB."""
    lines = 600_000
    term = minirun.spawn_pty(["run", "--rm", "-it", "--network", "none", IMAGE, "sh", "-c",
                              f"seq 1 {lines}; echo done-$((1+1))"])
    time.sleep(3)
    deadline = time.monotonic() + 600  # it ends at done-2: seconds here, 2-3 minutes emulated
    while b"done-2" not in term.output and time.monotonic() < deadline:
        if select.select([term.master], [], [], 1)[0]:
            try:
                term.output += os.read(term.master, 65536)
            except OSError:  # EIO: minirun has exited and closed the terminal
                break
    assert term.wait(timeout=30) == 0
    out = term.output.replace(b"\r\n", b"\n")
    assert out.endswith(b"done-2\n"), out[-200:]
    got = out.split(b"\n")[:lines]
    assert got == [str(i).encode() for i in range(1, lines + 1)], f"{len(out)} bytes"


@pytest.mark.timeout(900)
def test_run_it_slow_terminal_gets_the_whole_backlog_after_the_exit(minirun: Tier) -> None:
    """A terminal slower than the container: the container writes 2 MB and exits at once, and the
    `run -it` terminal, which is never dropped, is still megabytes behind. It gets them all before
    minirun exits with the code (the monitor gave it 10 s after the exit, and cut the rest)."""
    lines = 300_000  # ~2 MB: under the 4 MiB cap, so the container never waits for the terminal
    term = minirun.spawn_pty(["run", "--rm", "-it", "--network", "none", IMAGE, "sh", "-c",
                              f"seq 1 {lines}; echo done-$((1+1)); exit 3"])
    time.sleep(3)  # the container has written it all and exited (seconds here, emulated: more)
    began = time.monotonic()
    while b"done-2" not in term.output and time.monotonic() < began + 600:
        if select.select([term.master], [], [], 1)[0]:  # 4 KiB each 25 ms: ~160 KB/s, ~13 s
            try:
                term.output += os.read(term.master, 4096)
            except OSError:  # EIO: minirun has exited and closed the terminal
                break
            time.sleep(0.025)
    assert term.wait(timeout=30) == 3
    out = term.output.replace(b"\r\n", b"\n")
    assert out.endswith(b"done-2\n"), f"{len(out)} bytes, {time.monotonic() - began:.0f} s: {out[-100:]!r}"
    assert out.split(b"\n")[:lines] == [str(i).encode() for i in range(1, lines + 1)]
