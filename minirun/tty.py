"""`-t`: a pseudo-terminal for the container, and the user's terminal in raw mode to reach it.

The pty is created *inside* the container, from the devpts instance of its own /dev/pts, as
runc does: then `tty` prints /dev/pts/0 and the terminal belongs to the container's world.
The child sends the master side to minirun over the sync socket (SCM_RIGHTS, unix(7)).

The monitor (minirun/monitor.py) then copies bytes both ways: attached, between the pty and
the user's terminal, which is put in raw mode so that every key, Ctrl-C included, goes to the
container's terminal unchanged: the container's line discipline turns Ctrl-C into SIGINT for
*its* foreground process (termios(3), "ISIG"); detached, `minirun attach` (below) does the
same through the monitor's unix socket.
Man pages: pty(7), pts(4), ioctl_tty(2).
"""

import contextlib
import fcntl
import os
import selectors
import socket
import struct
import termios
import tty
from collections.abc import Iterator

TIOCGPTN = 0x80045430  # get the pty number of a master
TIOCSPTLCK = 0x40045431  # (un)lock the slave side


def open_pty_in_container() -> tuple[int, int]:
    """Open a master/slave pair on the container's /dev/ptmx (the pts(4) protocol by hand)."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))  # unlockpt(3)
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]  # ptsname(3)
    slave = os.open(f"/dev/pts/{number}", os.O_RDWR | os.O_NOCTTY)
    return master, slave


def make_controlling_terminal(slave: int) -> None:
    """Make the pty the session's controlling terminal and the process's stdin/out/err.

    The caller has already called setsid(): only a session leader without a terminal may take
    one (TIOCSCTTY, ioctl_tty(2)); from then on Ctrl-C and job control work inside.
    """
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def copy_window_size(from_fd: int, to_fd: int) -> None:
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(from_fd, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(to_fd, termios.TIOCSWINSZ, size)


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """Raw mode for the user's terminal while the container owns it; always restored."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        # TCSANOW, not setraw's default TCSAFLUSH: what the user typed before minirun got here
        # (python's start-up takes a while) goes to the container, as docker's attach keeps it,
        # instead of being thrown away after the terminal has echoed it (termios(3)).
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


DETACH_KEYS = "ctrl-p,ctrl-q"  # docker's default detach keys
# docker's names for the control characters beyond ctrl-a .. ctrl-z (ascii(7)).
CTRL_SYMBOLS = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def parse_detach_keys(keys: str) -> bytes:
    """--detach-keys as docker takes it: comma-separated keys, each one character or ctrl-X
    (X a letter, or @ [ \\ ] ^ _), e.g. "ctrl-p,ctrl-q" or "ctrl-a,d"; "" disables detaching."""
    sequence = bytearray()
    for key in keys.split(",") if keys else []:
        name = key.lower()
        if len(key) == 1 and key.isascii():
            sequence.append(ord(key))
        elif name.startswith("ctrl-") and len(name) == 6 and "a" <= name[5] <= "z":
            sequence.append(ord(name[5]) - ord("a") + 1)
        elif name.startswith("ctrl-") and len(name) == 6 and name[5] in CTRL_SYMBOLS:
            sequence.append(CTRL_SYMBOLS[name[5]])
        else:
            from minirun.errors import MinirunError

            raise MinirunError(f"invalid detach keys {keys!r}: {key!r} is not a key (one character, "
                               "or ctrl-a .. ctrl-z, ctrl-@, ctrl-[, ctrl-\\, ctrl-], ctrl-^, ctrl-_)")
    return bytes(sequence)


def attach(conn: socket.socket, stdin_open: bool, tty: bool, detach_keys: bytes = b"\x10\x11",
           pty_master: int = -1) -> bool:
    """`minirun attach`: the user's terminal <-> the monitor's attach socket (monitor.py), in
    raw mode with -t, until the container ends (False) or the user types the detach keys (True).

    The keys are the user's way out, so they are looked for in what the user types and never
    sent on; the start of the sequence followed by anything else is sent as typed, as docker
    does. `pty_master`: the container's pty (-t), which gets our terminal's size now and at
    every SIGWINCH (TIOCSWINSZ: the kernel then sends SIGWINCH to the container's foreground
    process group, ioctl_tty(2))."""
    import signal

    selector = selectors.DefaultSelector()
    selector.register(conn, selectors.EVENT_READ)
    if stdin_open:
        selector.register(0, selectors.EVENT_READ)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    resizing = pty_master >= 0 and os.isatty(0)
    if resizing:  # signals only mark the wake-up pipe (signal.set_wakeup_fd): the loop acts
        previous = signal.signal(signal.SIGWINCH, lambda _n, _f: None)
        old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        selector.register(wake_r, selectors.EVENT_READ)
        copy_window_size(0, pty_master)
    held = b""
    try:
        with raw_mode(0) if tty else contextlib.nullcontext():
            while True:
                for key, _ in selector.select():
                    if key.fileobj is conn:
                        data = conn.recv(65536)
                        if not data:
                            return False
                        _write_all(1, data)
                        continue
                    if key.fileobj == wake_r:
                        os.read(wake_r, 1024)
                        copy_window_size(0, pty_master)  # the user's terminal was resized
                        continue
                    data = os.read(0, 65536)
                    if not data:  # what was held as a possible start of the keys was input after all
                        conn.sendall(held)
                        held = b""
                        selector.unregister(0)
                        conn.shutdown(socket.SHUT_WR)
                        continue
                    data, held = held + data, b""
                    if detach_keys and detach_keys in data:
                        conn.sendall(data[:data.index(detach_keys)])
                        return True
                    # A possible start of the keys at the end: held until the next read says.
                    for n in range(min(len(detach_keys) - 1, len(data)), 0, -1):
                        if data.endswith(detach_keys[:n]):
                            data, held = data[:-n], data[-n:]
                            break
                    conn.sendall(data)
    finally:
        if resizing:
            signal.set_wakeup_fd(old_wakeup)
            signal.signal(signal.SIGWINCH, previous)
        selector.close()
        os.close(wake_r)
        os.close(wake_w)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]
