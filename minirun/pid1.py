"""What becomes the container's PID 1: the command itself (execve), or with `--init` a tiny init.

`execute` is the last step of every start (minirun/process.py): execve the command, searching
$PATH as a shell would, and turn a failure into docker's codes (127 not found, 126 cannot
execute).

PID 1 of a PID namespace is special (pid_namespaces(7)):
 - the kernel delivers it only the signals it has installed a handler for, so a program that
   never expected to be PID 1 ignores `minirun stop`'s SIGTERM and Ctrl-C;
 - orphaned processes are re-parented to it, and if it never calls wait(2) they stay zombies.
With `--init`, `run_init` forwards every catchable signal to the command and reaps every child,
then exits with the command's status, like tini or docker's `--init`. It is this same Python
process, already inside the container, so the image needs nothing extra.
"""

import contextlib
import os
import signal
import socket
from collections.abc import Sequence
from typing import NoReturn

from minirun import sync
from minirun.errors import CANNOT_EXECUTE, NOT_FOUND, MinirunError, exit_code
from minirun.spec import env_dict

FORWARDED = [s for s in signal.valid_signals()
             if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD)]


def execute(argv: Sequence[str], env: list[str]) -> NoReturn:
    """execve the command, searching $PATH as the shell would; errors as docker reports them."""
    try:
        os.execvpe(argv[0], list(argv), env_dict(env))
    except FileNotFoundError:
        if "/" in argv[0]:
            raise MinirunError(f'exec "{argv[0]}": no such file or directory', NOT_FOUND) from None
        raise MinirunError(f'exec "{argv[0]}": executable file not found in $PATH', NOT_FOUND) from None
    except OSError as e:
        raise MinirunError(f'exec "{argv[0]}": {e.strerror.lower() if e.strerror else e}',
                           CANNOT_EXECUTE) from None


def run_init(argv: Sequence[str], env: list[str], sock: socket.socket) -> NoReturn:
    # This process stays PID 1 and never execs: /proc/1/exe is the host's python. It is already
    # not dumpable (process.guard_process, after the last change of ids), so nobody inside may
    # ptrace it or open that file (the CVE-2019-5736 class); fork(2) keeps that for the child.
    # Nor does close-on-exec ever close what it inherited from the monitor (the write end of
    # `run -d`'s report pipe, say): all of it goes now, but for the sync socket.
    os.closerange(3, sock.fileno())
    os.closerange(sock.fileno() + 1, os.sysconf("SC_OPEN_MAX"))
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
