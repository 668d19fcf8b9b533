"""Processes as the kernel shows them: /proc/PID/stat (proc(5)) read in one place, and pidfds
(pidfd_open(2)), which name a process for good: waited on, and killed without hitting a stranger
that got its pid."""

import math
import os
import select
import signal
import time


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat from field 3 (the state: R, S, Z...) on, so that field N of
    proc(5) is `fields[N - 3]`; None if the process is gone. The command name (field 2) is in
    parentheses and may itself hold spaces or ')' (a process names itself, prctl PR_SET_NAME):
    the fields start after the *last* ')'."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def parent(pid: int) -> int:
    """Its parent's pid (field 4), 0 if it is gone."""
    fields = stat_fields(pid)
    return int(fields[1]) if fields else 0


POLL_MAX = 2**31 - 1  # milliseconds: poll(2)'s timeout is a C int (some 24 days)


def wait_pidfd(fd: int, timeout: float | None) -> bool:
    """Wait until the process behind a pidfd has exited (it polls readable then, pidfd_open(2));
    a longer timeout than poll(2) takes (an OCI hook's may be weeks) is waited for in parts."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    if timeout is None or timeout < 0:
        return bool(poller.poll(None))
    deadline = time.monotonic() + timeout
    while not poller.poll(min(math.ceil(max(0.0, deadline - time.monotonic()) * 1000), POLL_MAX)):
        if time.monotonic() >= deadline:
            return False
    return True


def kill(pidfd: int, timeout: float) -> None:
    """SIGKILL the process behind a pidfd, wait up to `timeout` s for its end; the pidfd is closed."""
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        wait_pidfd(pidfd, timeout)
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)
