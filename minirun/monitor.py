"""The monitor: one small process per container, its parent from start to exit (like podman's conmon).

minirun has no daemon. Whoever started the container stays its parent and its memory:

  - `minirun run` (foreground) *is* the monitor, attached: the container's output goes to the
    caller's stdout/stderr and to the log, the caller's stdin (with -i) to the container;
  - `minirun run -d` forks a monitor that leaves the caller's session (setsid(2): no terminal,
    so the shell's exit or SIGHUP does not reach it), starts the container, tells the caller
    it runs, then execs a fresh, lean Python that runs only this module (`main`): the start
    stack's modules would cost every detached container megabytes (bench/density.py).

What it does, in order, until the container's PID 1 is reaped:

  1. waits on PID 1 through a pidfd (pidfd_open(2)) and SIGCHLD, and reaps *every* child with
     __WALL (wait(2)): a container thread that did PTRACE_TRACEME made us its tracer, and once
     the process exit_group()s that thread stays a zombie only a __WALL wait reaps; until it is
     reaped, PID 1 itself cannot be (a thread group leader waits for its threads);
  2. relays the container's stdout and stderr, which are pipes (never the caller's terminal:
     a container given the user's tty could read what they type and change its modes), to the
     log (minirun/logfile.py) and, attached, to its own stdout/stderr; with -t the pty master;
  3. forwards the signals it gets (SIGINT, SIGTERM, ...) to PID 1 through the pidfd;
  4. detached with -i or -t: serves `minirun attach` on a unix socket (STATE/ID.attach);
  5. records the exit code (128+N for signal N) and whether the OOM killer struck, tears down
     (cgroup, network, leases, slirp4netns) and, with --rm, removes the container.
"""

import contextlib
import errno
import json
import os
import selectors
import signal
import sys
import time
from typing import TYPE_CHECKING, NamedTuple, cast

from minirun import logfile, procfs, trace
from minirun.errors import MinirunError, exit_code

if TYPE_CHECKING:
    import socket

# Every module imported here stays in every detached monitor's memory for the container's
# whole life (~5 MiB with these; the start stack would be ~15): the record (state.py,
# container.py, pathlib) is loaded only when the container has exited, socket only by a monitor
# that serves `attach`.

WALL = 0x40000000  # wait(2): children of any kind, clone children and ptrace'd threads too
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
CHUNK = 128 * 1024
# The longest output is relayed after PID 1's exit: its pipes hold 64 KiB (pipe(7)) and its
# writers block while they are full, so what is left at the exit drains in moments; more than
# this means processes outside its PID namespace still write (--pid=host, --pid=container:).
DRAIN_AFTER_EXIT = 10.0
MAX_PENDING_INPUT = 4 * 1024 * 1024  # attach input the container has not read yet
# Output an attach client has not taken yet. Each client has a buffer of its own and is written
# to only when its socket is writable: one that does not read (a stopped `minirun attach`, a
# terminal on hold) must not stop the relay for the log and every other client. Beyond this it
# is dropped, as conmon drops one, and the container's output goes on without it.
MAX_CLIENT_BACKLOG = 4 * 1024 * 1024
# The one exception: the terminal of `run -it` (Watch.first_client_paces) is never dropped; while
# its backlog is beyond the cap the container's output is not read (its writes block), as when
# the foreground monitor wrote to that terminal itself.
# After the exit, how long attach clients that do not take their backlog hold up the recording;
# the pacing terminal, at the exit up to MAX_CLIENT_BACKLOG behind (a slow terminal, a slow
# machine), gets the time to take it while it takes it (no 5 s without taking anything), up to
# PACER_DRAIN_AFTER_EXIT.
CLIENT_DRAIN_AFTER_EXIT = 1.0
PACER_DRAIN_AFTER_EXIT = 120.0
# Attach clients at a time. Each costs an fd and up to MAX_CLIENT_BACKLOG of memory: a script
# that connected in a loop made accept(2) fail with EMFILE, which killed the monitor and the
# container with it (its exit code lost, "Exited (137)"), or made it hold N x 4 MiB. One more is
# closed at once (it reads EOF); so at most 8 x 4 MiB of backlogs.
MAX_CLIENTS = 8
# How long PID 1 may have exited (its pidfd is readable) without a wait(2) giving its status
# before the monitor reads it elsewhere (held_exit_code).
HELD_EXIT = 1.0


class Watch(NamedTuple):
    """What the monitor watches: decided by runtime.py once the container's command runs."""

    state_dir: str
    container_id: str
    pid: int  # PID 1 as the host sees it
    pidfd: int
    stdout: int  # read ends of the container's stdout/stderr pipes, or its pty master (-t)
    stderr: int  # -1 with -t
    stdin: int  # write end of its stdin pipe (-i without -t), else -1
    tty: bool
    log: logfile.Options
    log_path: str
    remove: bool  # --rm
    attached: bool  # foreground: relay to our own 0/1/2
    interactive: bool  # -i: our stdin (attached) or attach clients' input goes in
    # Where its cgroup was made (cgroups.find_places, as strings: pathlib waits for the exit), so
    # the OOM check and the teardown need not read the mount table again.
    cgroup_places: tuple[str, ...]
    listener: int = -1  # detached -i/-t: the listening `attach` socket (listen(), before "running")
    # `run -it` / `start -ai` (runtime.start_on_terminal): the client connected before the container
    # ran is its user's terminal, which paces its output as a foreground monitor's terminal did.
    first_client_paces: bool = False


# --- detached: the exec'd lean monitor ---------------------------------------------------------------


def exec_detached(watch: Watch, keep_fds: list[int]) -> None:
    """Replace this (forked, heavy) process with a fresh interpreter that runs `main`. The
    container stays our child: execve(2) keeps the pid, the children and the marked fds.
    -I -S: no site, no environment, only the standard library and minirun's own package."""
    for fd in [watch.pidfd, watch.stdout, watch.stderr, watch.stdin, watch.listener, *keep_fds]:
        if fd >= 0:
            os.set_inheritable(fd, True)
    package = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    boot = f"import sys; sys.path.insert(0, {package!r}); from minirun.monitor import main; main()"
    argv = [sys.executable, "-I", "-S", "-c", boot, json.dumps(watch._asdict())]
    os.execv(sys.executable, argv)


def main() -> None:
    raw = json.loads(sys.argv[1])
    raw["log"] = logfile.Options(*raw["log"])
    raw["cgroup_places"] = tuple(raw["cgroup_places"])  # a JSON list
    watch = Watch(**raw)
    for fd in (watch.pidfd, watch.stdout, watch.stderr, watch.stdin, watch.listener):
        if fd >= 0:
            os.set_inheritable(fd, False)
    code = supervise(watch)
    os._exit(code)


# --- the watch ----------------------------------------------------------------------------------------


def supervise(watch: Watch) -> int:
    """Relay, forward and reap until PID 1 has exited and its output is drained; then record
    the exit and tear down. Returns the container's exit code."""
    code = relay_until_exit(watch)
    finish(watch, code)
    return code


def relay_until_exit(watch: Watch) -> int:
    """The watch without its record: relay, forward signals and reap until the watched process
    has exited and its output is drained (also what `minirun exec` does for its process)."""
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    # Signals only mark the wake-up pipe (signal.set_wakeup_fd): the loop below acts on them.
    resize = (signal.SIGWINCH,) if watch.attached and watch.tty else ()
    previous = {sig: signal.signal(sig, _noop) for sig in (signal.SIGCHLD, *FORWARDED, *resize)}
    old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    # Signals held during the start (runtime.hold_signals) arrive now, and go to PID 1.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    relay = Relay(watch)
    code: int | None = None
    try:
        relay.selector.register(wake_r, selectors.EVENT_READ, "wake")
        relay.selector.register(watch.pidfd, selectors.EVENT_READ, "pidfd")
        ended_at = exited_at = 0.0  # when its exit code came; when its pidfd said "exited"
        while True:
            if code is None:
                code = _exit_code(watch.pid, exited_at)
                ended_at = time.monotonic() if code is not None else 0.0
            if code is not None and not relay.outputs() and not relay.backlogged():
                break  # exited, and every write end of its pipes is closed: all output is in
            pacing = relay.pacer_behind()
            events = relay.selector.select(_timeout(code, exited_at, bool(relay.outputs()) or pacing))
            drain = PACER_DRAIN_AFTER_EXIT if pacing else DRAIN_AFTER_EXIT
            if code is not None and (not events or time.monotonic() > ended_at + drain):
                # 5 s without output after the exit: a holder outside the container. Or one that
                # keeps writing: with --pid=host or container:NAME, PID 1's end kills nothing else,
                # and its exit must still be recorded (attack review of issue 11).
                break
            for key, mask in events:
                if key.data == "wake":
                    for number in os.read(wake_r, 1024):
                        if number in FORWARDED:
                            _forward(watch.pidfd, number)
                        elif number == signal.SIGWINCH:  # the user's terminal was resized
                            from minirun import tty

                            tty.copy_window_size(0, watch.stdout)
                elif key.data == "pidfd":
                    relay.selector.unregister(watch.pidfd)  # exited: reap() says how
                    exited_at = time.monotonic()
                else:
                    relay.ready(key, mask)
    finally:
        # PID 1 has exited: a signal now must not interrupt the recording of its exit.
        signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
        signal.set_wakeup_fd(old_wakeup)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        relay.close()
        os.close(wake_r)
        os.close(wake_w)
    assert code is not None
    trace.mark("wait (the command runs)")
    return code


def _exit_code(pid: int, exited_at: float) -> int | None:
    """PID 1's exit code once there is one: reaped, or read where a tracer holds it
    (held_exit_code) once its pidfd has said "exited" for HELD_EXIT without a wait(2) giving it."""
    code = reap(pid)
    if code is None and exited_at and time.monotonic() > exited_at + HELD_EXIT:
        code = held_exit_code(pid)
    return code


def _timeout(code: int | None, exited_at: float, busy: bool) -> float | None:
    """How long the loop's select waits: while PID 1 runs, until a signal or its pidfd wakes it
    (then in short steps for a held exit code); after the exit, 5 s while output still flows or
    the pacing terminal takes its backlog, else moments for attach clients' backlogs."""
    if code is None:
        return HELD_EXIT / 4 if exited_at else None
    return 5.0 if busy else CLIENT_DRAIN_AFTER_EXIT


def reap(pid: int) -> int | None:
    """Reap every child that has exited (waitpid(-1, WNOHANG | __WALL)); PID 1's exit code once
    it has. Other children: slirp4netns, and ptrace'd container threads (see the docstring)."""
    code = None
    while True:
        try:
            child, status = os.waitpid(-1, os.WNOHANG | WALL)
        except ChildProcessError:
            return code
        if child == 0:
            return code
        if child == pid and (os.WIFEXITED(status) or os.WIFSIGNALED(status)):
            code = exit_code(status)


def held_exit_code(pid: int) -> int | None:
    """The exit code of PID 1 when it has exited (its pidfd says so) but cannot be reaped: a
    tracer outside the container (a donor it joined, --pid=host, with CAP_SYS_PTRACE in their
    user namespace) seized it and does not wait, and ptrace(2) gives the zombie to the tracer
    first; the monitor waited for good, its exit code lost. /proc/PID/stat has it: field 52,
    exit_code, in waitpid(2)'s form (proc(5)); the zombie keeps its pid until it is reaped."""
    fields = procfs.stat_fields(pid)
    try:
        return exit_code(int(fields[49])) if fields and fields[0] == "Z" else None  # fields 52, 3
    except (ValueError, IndexError):
        return None


def finish(watch: Watch, code: int) -> None:
    """Record the exit, then tear down; nothing here may lose the exit code."""
    from pathlib import Path

    from minirun import container, state

    state_dir = Path(watch.state_dir)
    cgroup_places = tuple(Path(place) for place in watch.cgroup_places)
    record = state.load(state_dir, watch.container_id)
    if record is None:
        return  # removed under us (rm -f raced the exit): nothing left to record
    oom = False
    if record.cgroup_paths:
        from minirun import cgroups

        with contextlib.suppress(OSError):
            oom = cgroups.oom_killed(cgroups.of_container(record.id, record.cgroup_paths, cgroup_places))
    try:
        # First into its reserved space (cannot fail for want of room), then the record.
        try:
            state.write_exit_file(state_dir, record.id, code)
        except MinirunError as e:  # a link planted in its place: not written through; the record keeps it
            print(f"minirun: {e}", file=sys.stderr)
        container.exited(state_dir, record, code, oom)
        trace.mark("record exit")
        container.teardown(state_dir, record, remove_all=watch.remove, cgroup_places=cgroup_places)
    except (OSError, MinirunError) as e:  # a full or broken state dir, an unreadable lease book
        # (the network's teardown): say so; the code is kept (and returned)
        print(f"minirun: cannot record the exit of {record.id[:12]} ({code}): {e}", file=sys.stderr)
        with contextlib.suppress(OSError):
            from minirun import cgroups

            cgroups.remove(cgroups.of_container(record.id, record.cgroup_paths, cgroup_places))


def _noop(_number: int, _frame: object) -> None:
    pass


def _forward(pidfd: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError, OSError):
        signal.pidfd_send_signal(pidfd, number)


# --- the relay ------------------------------------------------------------------------------------


class Relay:
    """Bytes between the container's pipes (or pty) and the log, the caller, attach clients."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch
        # poll(2), not epoll: epoll refuses regular files, and `run -i ... < file` is one.
        self.selector = selectors.PollSelector()
        self.log = logfile.Writer(watch.log_path, watch.log) if watch.log.driver == "json-file" else None
        self.sinks = {"stdout": 1, "stderr": 2} if watch.attached else {}
        self.stdin = watch.stdin if not watch.tty else watch.stdout  # where input goes (pty: the master)
        self.stdin_ended = False
        self.pending = b""  # input the container has not read yet (its stdin pipe is full)
        self.open_fds = {fd for fd in (watch.stdout, watch.stderr, watch.stdin) if fd >= 0}
        if watch.stdin >= 0:
            os.set_blocking(watch.stdin, False)
        self.clients: dict[socket.socket, bytearray] = {}  # attach clients (detached -i/-t): backlogs
        self.inputs_ended: set[socket.socket] = set()  # clients that send no more (half-closed)
        self.pacer: socket.socket | None = None  # see Watch.first_client_paces
        self.paused: list[tuple[int, logfile.Stream]] = []  # outputs not read while the pacer is behind
        self.listener: socket.socket | None = None
        for fd, stream in ((watch.stdout, "stdout"), (watch.stderr, "stderr")):
            if fd >= 0:
                self.selector.register(fd, selectors.EVENT_READ, stream)
        if watch.attached and watch.interactive:
            self.selector.register(0, selectors.EVENT_READ, "in")
        self.raw = contextlib.ExitStack()
        if watch.attached and watch.tty:
            from minirun import tty

            tty.copy_window_size(0, watch.stdout)
            self.raw.enter_context(tty.raw_mode(0))
        if watch.listener >= 0:
            from socket import socket as unix_socket

            self.listener = unix_socket(fileno=watch.listener)
            self.listener.setblocking(False)
            self.selector.register(self.listener, selectors.EVENT_READ, "listen")
            # A client that connected before the container ran (start_on_terminal: `run -it`)
            # is taken before anything is relayed: it sees the output from its first byte.
            while self.accept():
                pass
            if watch.first_client_paces and self.clients:
                self.pacer = next(iter(self.clients))

    def outputs(self) -> bool:
        """Is a container output still open (read, or paused: see pause)?"""
        open_ = any(key.data in ("stdout", "stderr") for key in self.selector.get_map().values())
        return open_ or bool(self.paused)

    def backlogged(self) -> bool:
        """Has an attach client output it has not taken yet?"""
        return any(self.clients.values())

    def pacer_behind(self) -> bool:
        """Is the pacing terminal (never dropped) still behind the container's output?"""
        return self.pacer in self.clients and bool(self.paused or self.clients[self.pacer])

    def ready(self, key: selectors.SelectorKey, mask: int) -> None:
        if key.data in ("stdout", "stderr"):
            self.output(key.fd, key.data)
        elif key.data == "in":
            self.input(0)
        elif key.data == "in-writable":
            self.flush_input()
        elif key.data == "listen":
            assert self.listener is not None
            self.accept()
        elif key.data == "client":
            client = cast("socket.socket", key.fileobj)
            if client not in self.clients:
                return  # dropped earlier in this round (its output failed): a stale event
            if mask & selectors.EVENT_WRITE:
                self.send_to_client(client)
            if mask & selectors.EVENT_READ and client in self.clients:
                self.client_input(client)

    def accept(self) -> bool:
        """A new attach client. With -t it gets the pty master first (one byte "T" with the fd,
        SCM_RIGHTS): `minirun attach` sets the size of the container's terminal to its own
        (TIOCSWINSZ) now and at each SIGWINCH. The socket is the user's alone (listen: 0600),
        and the user may take the fd from us anyway (pidfd_getfd(2)): it gains no power."""
        from socket import SCM_RIGHTS, SOL_SOCKET

        assert self.listener is not None
        try:
            client, _ = self.listener.accept()
        except BlockingIOError:
            return False
        except OSError:  # EMFILE, ENFILE, ENOBUFS (accept(2)): not now; again when a client leaves
            self.selector.unregister(self.listener)
            return False
        for gone in [c for c in self.inputs_ended if _hung_up(c)]:  # not polled for it: see watch_client
            self.drop(gone)
        if len(self.clients) >= MAX_CLIENTS:
            client.close()
            return True
        if self.watch.tty:
            try:
                fd = self.watch.stdout.to_bytes(4, sys.byteorder)  # an int array of one (cmsg(3))
                client.sendmsg([b"T"], [(SOL_SOCKET, SCM_RIGHTS, fd)])
            except OSError:
                client.close()
                return True
        client.setblocking(False)  # written to when writable only (send_to_client)
        self.clients[client] = bytearray()
        self.watch_client(client)
        return True

    def watch_client(self, client: "socket.socket") -> None:
        """Poll a client for its input until it has ended, for writability while it has a backlog."""
        events = (0 if client in self.inputs_ended else selectors.EVENT_READ) | \
            (selectors.EVENT_WRITE if self.clients[client] else 0)
        key = self.selector.get_map().get(client)
        if key is None and events:
            self.selector.register(client, events, "client")
        elif key is not None and not events:
            self.selector.unregister(client)
        elif key is not None and key.events != events:
            self.selector.modify(client, events, "client")

    def output(self, fd: int, stream: logfile.Stream) -> None:
        try:
            data = os.read(fd, CHUNK)
        except OSError as e:
            if e.errno != errno.EIO:  # a pty master reads EIO once the container's side is closed
                raise
            data = b""
        if not data:
            self.selector.unregister(fd)
            return
        if self.log is not None:
            self.log.write(stream, data)
        sink = self.sinks.get(stream)
        if sink is not None:
            try:
                _write_all(sink, data)
            except BrokenPipeError:
                # Our reader is gone (`... | head`): as in a shell pipeline, the container's
                # writer gets EPIPE/SIGPIPE next, since nobody reads its pipe any more.
                del self.sinks[stream]
                if not self.watch.tty:
                    self.selector.unregister(fd)
                    self.close_fd(fd)
        for client, backlog in list(self.clients.items()):
            backlog += data
            if len(backlog) > MAX_CLIENT_BACKLOG and client is not self.pacer:
                self.drop(client)  # it does not read: the others and the log go on without it
            else:
                self.send_to_client(client)
        if self.pacer in self.clients and len(self.clients[self.pacer]) > MAX_CLIENT_BACKLOG:
            self.pause()

    def pause(self) -> None:
        """Stop reading the container's output until the pacing terminal has caught up."""
        for key in list(self.selector.get_map().values()):
            if key.data in ("stdout", "stderr"):
                self.selector.unregister(key.fd)
                self.paused.append((key.fd, key.data))

    def resume(self) -> None:
        for fd, stream in self.paused:
            self.selector.register(fd, selectors.EVENT_READ, stream)
        self.paused = []

    def send_to_client(self, client: "socket.socket") -> None:
        """What the socket takes now of a client's backlog (non-blocking); the rest waits for
        EVENT_WRITE, for which the client is registered only while it has a backlog."""
        backlog = self.clients[client]
        try:
            del backlog[:client.send(backlog)]
        except BlockingIOError:
            pass
        except OSError:  # the client is gone
            self.drop(client)
            return
        if client is self.pacer and self.paused and len(backlog) <= MAX_CLIENT_BACKLOG // 2:
            self.resume()
        self.watch_client(client)

    def input(self, fd: int) -> None:
        """The caller's stdin (attached -i) to the container's. Our end of its pipe does not
        block: while the container does not read, we stop reading (and keep relaying its
        output, or both sides would wait for each other)."""
        data = os.read(fd, CHUNK)
        if not data:  # the caller's stdin ended: so does the container's (not a pty's)
            self.selector.unregister(fd)
            self.stdin_ended = True
            if not self.pending:
                self.end_input()
            return
        self.pending += data
        self.flush_input()

    def flush_input(self) -> None:
        if self.stdin < 0:
            self.pending = b""
            return
        try:
            if self.watch.tty:
                _write_all(self.stdin, self.pending)  # typed by a person: small, and the pty's own
                self.pending = b""
            else:
                self.pending = self.pending[os.write(self.stdin, self.pending):]
        except BlockingIOError:
            pass
        except BrokenPipeError:  # the container closed its stdin: drop what it will never read
            self.pending = b""
            self.end_input()
        waiting = "in-writable" in (k.data for k in self.selector.get_map().values())
        reading = "in" in (k.data for k in self.selector.get_map().values())
        if self.pending and not waiting:
            self.selector.register(self.stdin, selectors.EVENT_WRITE, "in-writable")
            if reading:
                self.selector.unregister(0)
        elif not self.pending and waiting:
            self.selector.unregister(self.stdin)
            if self.stdin_ended:
                self.end_input()
            elif self.watch.attached:
                self.selector.register(0, selectors.EVENT_READ, "in")

    def end_input(self) -> None:
        if not self.watch.tty and self.stdin >= 0:
            with contextlib.suppress(KeyError):
                self.selector.unregister(self.stdin)
            self.close_fd(self.stdin)
            self.stdin = -1

    def close_fd(self, fd: int) -> None:
        """Close one of the container's fds once (its number may be reused afterwards)."""
        if fd in self.open_fds:
            self.open_fds.discard(fd)
            os.close(fd)

    def client_input(self, client: "socket.socket") -> None:
        try:
            data = client.recv(CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data and _hung_up(client):  # gone
            self.drop(client)
            return
        if not data:
            # Its input has ended (`echo hi | minirun attach`: shutdown(SHUT_WR)), not its
            # interest in the output: it gets that until the container ends, and so its exit code,
            # as docker's attach (it was dropped, and waited 30 s for nothing).
            self.inputs_ended.add(client)
            self.watch_client(client)
            return
        if self.stdin >= 0 and self.watch.interactive:
            if len(self.pending) + len(data) > MAX_PENDING_INPUT:
                self.drop(client)  # the container does not read: we won't hold its input forever
                return
            self.pending += data
            self.flush_input()

    def drop(self, client: "socket.socket") -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(client)
        self.clients.pop(client, None)
        self.inputs_ended.discard(client)
        client.close()
        if self.listener is not None and self.listener not in self.selector.get_map():
            self.selector.register(self.listener, selectors.EVENT_READ, "listen")  # see accept
        if client is self.pacer:  # gone (or detached): nothing paces the output any more
            self.pacer = None
            self.resume()

    def close(self) -> None:
        self.raw.close()  # the caller's terminal back to how it was
        if self.log is not None:
            self.log.close()
        for client in list(self.clients):
            self.drop(client)
        if self.listener is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(attach_socket(self.watch.state_dir, self.watch.container_id))
            self.listener.close()
        self.selector.close()
        for fd in list(self.open_fds):
            self.close_fd(fd)


def listen(state_dir: str, container_id: str) -> int:
    """The `attach` socket, listening before `run -d` returns: an attach right after it finds it."""
    from socket import AF_UNIX, SOCK_STREAM
    from socket import socket as unix_socket

    listener = unix_socket(AF_UNIX, SOCK_STREAM)
    path = attach_socket(state_dir, container_id)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    old = os.umask(0o177)  # the socket file: ours alone (unix(7): connect needs write)
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    listener.listen(4)
    return listener.detach()


def attach_socket(state_dir: str, container_id: str) -> str:
    """Where a detached monitor with -i or -t serves `minirun attach` (a unix socket's path is
    limited to 107 bytes, unix(7): the short id keeps it well under)."""
    return os.path.join(state_dir, f"{container_id[:12]}.attach")


def _hung_up(client: "socket.socket") -> bool:
    """Has the peer closed its socket, not only its sending side? (POLLHUP, poll(2): a unix
    stream socket reports it once both directions are shut down.)"""
    import select

    poller = select.poll()
    poller.register(client, select.POLLOUT)
    return any(events & (select.POLLHUP | select.POLLERR) for _, events in poller.poll(0))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
