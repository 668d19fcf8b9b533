"""`--init`: a tiny init as the container's PID 1, for commands that are not written to be one.

PID 1 of a PID namespace is special (pid_namespaces(7)):
 - the kernel delivers it only the signals it has installed a handler for, so a program that
   never expected to be PID 1 ignores `minirun stop`'s SIGTERM and Ctrl-C;
 - orphaned processes are re-parented to it, and if it never calls wait(2) they stay zombies.
This init forwards every catchable signal to the command and reaps every child, then exits
with the command's status, like tini or docker's `--init`. It is this same Python process,
already inside the container, so the image needs nothing extra.
"""

import contextlib
import os
import signal
import socket
from typing import NoReturn

from minirun import sync
from minirun.errors import MinirunError

FORWARDED = [s for s in signal.valid_signals()
             if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD)]


def exit_code(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128 + the killing signal."""
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def run(argv: list[str], env: list[str], sock: socket.socket) -> NoReturn:
    from minirun.process import execute  # the same exec as without --init

    # This process stays PID 1 and never execs: /proc/1/exe is the host's python. It is already
    # not dumpable (process.guard_process, after the last change of ids), so nobody inside may
    # ptrace it or open that file (the CVE-2019-5736 class); fork(2) keeps that for the child.
    errors_r, errors_w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        os.close(errors_r)
        try:
            execute(argv, env)
        except MinirunError as e:
            os.write(errors_w, f"{e.code} {e}".encode())
            os._exit(e.code)
    os.close(errors_w)
    for sig in FORWARDED:
        with contextlib.suppress(OSError, ValueError):
            signal.signal(sig, lambda number, _frame: _forward(child, number))
    failure = os.read(errors_r, 4096)  # empty: execve succeeded and closed the pipe
    os.close(errors_r)
    if failure:
        code, message = failure.decode().split(" ", 1)
        sync.send_error(sock, int(code), message)
    sock.close()  # tells minirun the command runs (see minirun/sync.py, step 6)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(0)
        if pid == child:
            os._exit(exit_code(status))


def _forward(child: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(child, number)
