"""`-t`: a pseudo-terminal for the container, and the relay between it and the user's terminal.

The pty is created *inside* the container, from the devpts instance of its own /dev/pts, as
runc does: then `tty` prints /dev/pts/0 and the terminal belongs to the container's world.
The child sends the master side to minirun over the sync socket (SCM_RIGHTS, unix(7)).

minirun then copies bytes both ways. The user's terminal is put in raw mode so that every
key, Ctrl-C included, goes to the container's terminal unchanged: the container's line
discipline turns Ctrl-C into SIGINT for *its* foreground process (termios(3), "ISIG").
Man pages: pty(7), pts(4), ioctl_tty(2).
"""

import contextlib
import errno
import fcntl
import os
import selectors
import signal
import struct
import termios
import tty
from collections.abc import Iterator
from types import FrameType

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
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def relay(master: int, stdin_open: bool) -> None:
    """Copy the user's stdin to the pty and the pty to stdout until the container closes it.

    Reading the master returns EIO once no process holds the slave open any more, which
    happens when the container's PID 1 exits (the kernel kills the rest of its PID namespace).
    """
    def on_resize(_sig: int, _frame: FrameType | None) -> None:
        copy_window_size(0, master)

    copy_window_size(0, master)
    previous = signal.signal(signal.SIGWINCH, on_resize)
    selector = selectors.DefaultSelector()
    selector.register(master, selectors.EVENT_READ)
    if stdin_open:
        selector.register(0, selectors.EVENT_READ)
    try:
        with raw_mode(0):
            while True:
                for key, _ in selector.select():
                    if key.fd == master:
                        try:
                            data = os.read(master, 65536)
                        except OSError as e:
                            if e.errno == errno.EIO:
                                return
                            raise
                        if not data:
                            return
                        _write_all(1, data)
                    else:
                        data = os.read(0, 65536)
                        if not data:  # the user's stdin ended: stop reading it, keep the output
                            selector.unregister(0)
                            continue
                        _write_all(master, data)
    finally:
        selector.close()
        signal.signal(signal.SIGWINCH, previous)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]
