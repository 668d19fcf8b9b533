"""The parent/child sync channel: who waits for whom while a container starts.

A SOCK_SEQPACKET socketpair (unix(7)): messages keep their boundaries, and a file descriptor
can travel with one (SCM_RIGHTS). Both ends are close-on-exec, which gives the last message
for free: when the child's execve(2) succeeds its end closes, and the parent reads EOF.

  step  parent (minirun run, the monitor)           child (the future PID 1)
  ----  ------------------------------------------  ------------------------------------------
  1     clone(NEWUSER|NEWPID|NEWNS|NEWUTS|NEWIPC    PR_SET_PDEATHSIG; waits for "go"
        [|NEWNET]); container:NAME: setns into its  (EOF here: the parent died -> exit)
        netns around the clone
  2     write uid_map/gid_map, move the child into
        its cgroup (limits already written there,
        cgroups.apply before clone), wire its network (veth + address
        or slirp4netns, minirun/network), send "go"
        (rootful remapped: "go" carries one idmapped
        mount fd per image layer, then one detached
        clone per -v source, userns.py)
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

With --init, step 5 happens in init's child; init closes its end after that child's execve
succeeded, so the parent sees the same EOF (minirun/init.py).
"""

import array
import socket

from minirun.errors import MinirunError

GO = b"go"
MAX_FDS = 250  # the kernel's SCM_MAX_FD: at most this many fds travel with one message
PTY = b"pty"
ERROR = b"error"


def channel() -> tuple[socket.socket, socket.socket]:
    """(parent end, child end). Python creates sockets non-inheritable, i.e. close-on-exec."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send(sock: socket.socket, message: bytes, fd: int | None = None) -> None:
    if fd is None:
        sock.sendall(message)
    else:
        sock.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])


def send_fds(sock: socket.socket, message: bytes, fds: list[int]) -> None:
    """One message with several fds (SCM_RIGHTS): the receiver gets its own copies."""
    sock.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else [])


def send_error(sock: socket.socket, code: int, message: str) -> None:
    send(sock, ERROR + f" {code} {message}".encode(errors="replace"))


def receive(sock: socket.socket) -> tuple[bytes, int | None]:
    """One message and the fd that came with it, if any. b"" means the other end closed."""
    message, fds, _flags, _addr = socket.recv_fds(sock, 4096, 1)
    return message, (fds[0] if fds else None)


def wait_for_go(sock: socket.socket) -> list[int]:
    """Wait for "go"; return the fds that came with it (idmapped layers, or none)."""
    message, fds, _flags, _addr = socket.recv_fds(sock, 4096, MAX_FDS)
    if message != GO:
        raise SystemExit(1)  # the parent is gone (EOF) or confused: nothing to start for
    return list(fds)


def parse_error(message: bytes) -> MinirunError:
    _, code, text = message.decode(errors="replace").split(" ", 2)
    return MinirunError(text, int(code))
