"""The parent/child sync channel: who waits for whom while a container starts.

A SOCK_SEQPACKET socketpair (unix(7)): messages keep their boundaries, and a file descriptor
can travel with one (SCM_RIGHTS). Both ends are close-on-exec, which gives the last message
for free: when the child's execve(2) succeeds its end closes, and the parent reads EOF.

  step  parent (minirun run, the monitor)           child (the future PID 1)
  ----  ------------------------------------------  ------------------------------------------
  1     clone(NEWUSER|NEWPID|NEWNS|NEWUTS|NEWIPC    PR_SET_PDEATHSIG; "0" into each v1 cgroup's
        [|NEWNET]); container:NAME: setns into its  `tasks` file the parent opened before clone
        netns around the clone; (v2: born in its    (cgroups.join_v1), then send "joined";
        cgroup, clone3's CLONE_INTO_CGROUP)         waits for "go" (EOF here: the parent died
                                                    -> exit)
  2     write uid_map/gid_map (limits were written
        before clone, cgroups.apply; a v2 directory
        it was not born in: write its pid to
        cgroup.procs); wire its network (veth +
        address or slirp4netns, minirun/network);
        wait for "joined"; send "go"
        (rootful remapped: "go" carries one idmapped
        mount fd per image layer, then one detached
        clone per -v source, userns.py; with
        --ipc=container:NAME, last, a clone of
        NAME's /dev/shm, sharing.donor_shm)
  3                                                 setresuid(0) in the userns, not dumpable;
                                                    unshare(NEWCGROUP) (not with --cgroupns
                                                    host), hostname, lo up,
                                                    rootfs + pivot_root
  4     with -t: receive the pty master             with -t: send "pty" + the master fd
  5                                                 bounding set, seccomp (unless nnp),
                                                    user, capabilities, no_new_privs,
                                                    seccomp (with nnp), cwd, fds; execve(2)
  6     EOF: the command runs -> record "running"   or: send "error CODE MESSAGE", exit CODE
        "error ...": print MESSAGE, exit CODE

Messages are checked by name, as runc's readSync does: a child waiting for "go" that reads
anything else fails with "expected go, got X" instead of starting on a misunderstanding.

With --init, step 5 happens in init's child; init closes its end after that child's execve
succeeded, so the parent sees the same EOF (minirun/pid1.py).
"""

import array
import contextlib
import os
import signal
import socket
from collections.abc import Iterator
from typing import Literal, NamedTuple

from minirun.errors import MinirunError

Name = Literal["joined", "go", "pty", "error"]
WALL = 0x40000000  # wait(2)'s __WALL, as monitor.WALL (which keeps the lean monitor free of socket)
EOF = "EOF"  # what receive() calls the other end closing (after a successful execve, or a death)
MAX_FDS = 250  # the kernel's SCM_MAX_FD: at most this many fds travel with one message


class Message(NamedTuple):
    name: str  # one of Name, or EOF
    text: str  # what follows the name ("error": "CODE MESSAGE")
    fds: list[int]  # the descriptors that came with it (SCM_RIGHTS)


def channel() -> tuple[socket.socket, socket.socket]:
    """(parent end, child end). Python creates sockets non-inheritable, i.e. close-on-exec."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send(sock: socket.socket, name: Name, text: str = "", fds: list[int] | None = None) -> None:
    """One message; fds travel with it (SCM_RIGHTS): the receiver gets its own copies."""
    data = (name + (f" {text}" if text else "")).encode(errors="replace")
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sock.sendmsg([data], rights)


def send_error(sock: socket.socket, code: int, message: str) -> None:
    send(sock, "error", f"{code} {message}")


def receive(sock: socket.socket) -> Message:
    data, fds, _flags, _addr = socket.recv_fds(sock, 4096, MAX_FDS)
    if not data:
        return Message(EOF, "", list(fds))
    name, _, text = data.decode(errors="replace").partition(" ")
    return Message(name, text, list(fds))


def expect(sock: socket.socket, name: Name) -> Message:
    """The next message, which must be `name`; the other side's "error" is raised as its error."""
    message = receive(sock)
    if message.name != name:
        for fd in message.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        if message.name == "error":
            raise error_of(message)
        raise MinirunError(f"sync: expected {name}, got {message.name}")
    return message


def error_of(message: Message) -> MinirunError:
    """An "error CODE MESSAGE" from the child, as the error to report (docker's code)."""
    code, _, text = message.text.partition(" ")
    return MinirunError(text, int(code) if code.isdigit() else 125)


def receive_exec(sock: socket.socket) -> int | None:
    """Steps 4-6 from the parent's side: with -t the pty master, then EOF (the execve(2)
    succeeded). Returns the master (None without -t); the child's "error" is raised as its error,
    anything else as a protocol error. Run it inside `killed_on_error`."""
    master = None
    try:
        while True:
            message = receive(sock)
            if message.name == "pty" and len(message.fds) == 1 and master is None:
                master = message.fds[0]
            elif message.name == EOF and not message.fds:
                return master
            else:
                for fd in message.fds:
                    os.close(fd)
                if message.name == "error":
                    raise error_of(message)
                raise MinirunError(f"sync: expected pty, error or EOF, got {message.name}")
    except BaseException:
        if master is not None:
            os.close(master)
        raise


@contextlib.contextmanager
def killed_on_error(pid: int, pidfd: int) -> Iterator[None]:
    """If the parent fails half-way through the steps, the child must not outlive the failure:
    SIGKILL it through its pidfd (never a bare pid that may have been reused), reap it, and
    close the pidfd."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, WALL)
        os.close(pidfd)
        raise
