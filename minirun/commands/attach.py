"""`minirun attach CONTAINER`: the terminal (or stdin/stdout) of a container started with -d
and -t or -i, through its monitor's unix socket. ctrl-p ctrl-q (or --detach-keys) detaches and
leaves it running; when the container ends, attach leaves with its exit code, as docker's does.

With -t the monitor first hands us the container's pty master (SCM_RIGHTS, unix(7); the socket
is its user's alone, who could take the fd from the monitor with pidfd_getfd(2) anyway): our
terminal's size goes to it now and at every SIGWINCH, as `docker attach` resizes the tty."""

import argparse
import os
import socket
import sys

from minirun import container, monitor, paths, state, tty
from minirun.errors import MinirunError


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("attach", help="attach to a running container's terminal (detach: ctrl-p ctrl-q)")
    p.add_argument("--no-stdin", action="store_true", help="do not send stdin")
    p.add_argument("--detach-keys", default=tty.DETACH_KEYS, metavar="KEYS",
                   help='keys that detach, e.g. "ctrl-a,d" (default ctrl-p,ctrl-q; "": none)')
    p.add_argument("name", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    state_dir = paths.state_dir()
    detach_keys = tty.parse_detach_keys(args.detach_keys)
    record = state.find(state_dir, args.name)
    if record.status != "running":
        raise MinirunError(f"cannot attach to container {record.name}: it is not running")
    if container.paused(record):
        raise MinirunError(f"cannot attach to container {record.name}: it is paused "
                           f"(minirun unpause {record.name})")
    is_tty = bool(record.config.get("Tty"))
    if not (is_tty or record.config.get("OpenStdin")):
        raise MinirunError(f"cannot attach to container {record.name}: it was started without -i or -t "
                           "(see `minirun logs -f`)")
    if is_tty and not os.isatty(0) and not args.no_stdin:
        raise MinirunError("the input device is not a TTY; use --no-stdin, or run from a terminal")
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(monitor.attach_socket(str(state_dir), record.id))
    except OSError as e:
        raise MinirunError(f"cannot attach to container {record.name}: {e.strerror}") from None
    with conn:
        master = receive_pty(conn) if is_tty else -1
        try:
            detached = tty.attach(conn, stdin_open=not args.no_stdin, tty=is_tty and os.isatty(0),
                                  detach_keys=detach_keys, pty_master=master)
        finally:
            if master >= 0:
                os.close(master)
    if detached:
        print("\r\nread escape sequence", file=sys.stderr)
        return 0
    after = container.wait_monitor(state_dir, record, 30)
    return after.exit_code if after is not None else 0


def receive_pty(conn: socket.socket) -> int:
    """The container's pty master, the first thing the monitor sends a client of a -t container
    (monitor.Relay.accept): one byte "T" with the fd."""
    data, fds, _, _ = socket.recv_fds(conn, 1, 1)
    if data != b"T" or len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise MinirunError("cannot attach: the container's monitor did not send its terminal")
    return fds[0]
