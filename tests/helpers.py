"""How the tests drive minirun: one `Tier` per way of running it (as root, as an unprivileged user).

A tier is a callable: `tier(["run", "--rm", "busybox", "true"])` runs `minirun ...` to completion
and returns the CompletedProcess (text). `tier.popen(...)` starts it in the background and
`tier.spawn_pty(...)` under a fresh pseudo-terminal; the processes started that way are killed
when the test ends, whatever happened. Nothing here waits without a deadline.

The rootless tier runs minirun as the test user `mrtest` through setpriv(1), with a clean
environment, exactly as that user would run it from a login shell. The process setpriv starts
*is* minirun (setpriv and env(1) exec, they do not fork), so its pid is minirun's pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TEST_USER = "mrtest"  # the rootless tier's user (created by tests/conftest.py)
IMAGE = "busybox"
DEFAULT_TIMEOUT = 60
PODMAN_IMAGE = "localhost/minirun-busybox"
# podman 4.3 on these hosts: crun refuses hybrid cgroups, and the default ulimits are refused.
PODMAN_RUN = ["podman", "--runtime", "runc", "run", "--pull", "never", "--network", "none",
              "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


@dataclass
class Tier:
    name: str  # "root" | "rootless"
    prefix: list[str]  # argv that runs `minirun` (without its arguments)
    env: dict[str, str]
    uid: int
    gid: int
    store_dir: Path  # images and container layers
    state_dir: Path  # container records
    processes: list[subprocess.Popen[Any] | int] = field(default_factory=list)
    # Set by the `names` fixture during a test: every `run` without --name gets a name with
    # the test's prefix, so that the test's teardown finds (and removes) whatever a killed
    # `minirun run --rm` could not.
    auto_name: Callable[[], str] | None = None
    netns: str = ""  # the network namespace minirun runs in (conftest.test_netns): the tests' "host"

    @property
    def rootless(self) -> bool:
        return self.name == "rootless"

    @property
    def shared(self) -> list[str]:
        """The flag that gives a rootful container the shared id range (--userns=shared), so that
        a test may chown a directory to its root before it runs; rootless: the user's, always."""
        return [] if self.rootless else ["--userns=shared"]

    @property
    def container_root(self) -> tuple[int, int]:
        """Host uid and gid of root in this tier's containers *with `shared`*: the user itself when
        rootless; when rootful, the start of root's /etc/subuid (subgid) range (minirun/idranges.py;
        1000000 without a line for root). By default each rootful container has a range of its
        own: see its `inspect` (HostConfig.IDMappings)."""
        if self.rootless:
            return self.uid, self.gid
        return ((subid_range("/etc/subuid", "root") or (1000000, 0))[0],
                (subid_range("/etc/subgid", "root") or (1000000, 0))[0])

    def argv(self, args: Sequence[str]) -> list[str]:
        args = list(args)
        if self.auto_name and args[:1] == ["run"] and not any(a.startswith("--name") for a in args):
            args[1:1] = ["--name", self.auto_name()]
        return [*self.prefix, *args]

    def __call__(self, args: Sequence[str], *, input: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 check: bool | int | None = None) -> subprocess.CompletedProcess[str]:
        """Run minirun to completion. check=True: must exit 0; check=N: must exit N."""
        argv = self.argv(args)
        try:
            result = subprocess.run(argv, input=input, env=self.env, capture_output=True, text=True,
                                    timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:  # subprocess.run has already killed it
            raise AssertionError(f"[{self.name}] minirun {' '.join(args)} did not finish in {timeout}s;\n"
                                 f"stdout: {e.stdout!r}\nstderr: {e.stderr!r}") from None
        if check is not None and check is not False:
            expected = 0 if check is True else check
            assert result.returncode == expected, describe(self, args, result, f"expected exit {expected}")
        return result

    def popen(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
        """Start minirun in the background; it is SIGKILLed at the end of the test if still alive."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        proc = subprocess.Popen(self.argv(args), env=self.env, text=True, **kwargs)
        self.processes.append(proc)
        return proc

    def spawn_pty(self, args: Sequence[str], rows: int = 24, cols: int = 80) -> PtyProcess:
        """Start minirun as the session leader of a new pty, so that its stdin/out/err is a
        terminal, as when a person types `minirun run -it ...` in a terminal emulator."""
        argv = self.argv(args)
        pid, master = pty.fork()
        if pid == 0:  # the child: only exec here, nothing that could run pytest's code
            try:
                os.execve(argv[0], argv, self.env)
            finally:
                os._exit(127)
        self.processes.append(pid)
        set_window_size(master, rows, cols)
        return PtyProcess(pid, master)

    def inspect(self, ref: str) -> dict[str, Any]:
        result = self(["inspect", ref], check=0)
        items = json.loads(result.stdout)
        assert isinstance(items, list) and len(items) == 1, result.stdout
        item: dict[str, Any] = items[0]
        return item

    def container_names(self) -> dict[str, str]:
        """name -> id of every container this tier knows about, through the CLI, and straight
        from the record files as a fallback (so a broken `ps` cannot hide leftovers)."""
        names: dict[str, str] = {}
        with contextlib.suppress(AssertionError, ValueError):
            ids = self(["ps", "-a", "-q"], timeout=30).stdout.split()
            if ids:
                for item in json.loads(self(["inspect", *ids], timeout=30).stdout or "[]"):
                    names[item["Name"].lstrip("/")] = item["Id"]
        if self.state_dir.is_dir():
            for path in self.state_dir.glob("*.json"):
                with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                    record = json.loads(path.read_text())
                    names.setdefault(record["name"], record["id"])
        return names

    def recorded_names(self) -> set[str]:
        """Names in the tier's record files, read directly (no minirun process): every container
        `ps -a` could show has a record there (minirun/state.py)."""
        names: set[str] = set()
        if self.state_dir.is_dir():
            for path in self.state_dir.glob("*.json"):
                with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                    names.add(json.loads(path.read_text())["name"])
        return names

    def remove_prefixed(self, prefix: str) -> list[str]:
        """`rm -f` every container whose name starts with prefix; return what was left over.
        The records are read directly first: the CLI (two minirun processes, a second or more
        each in the VM tier's emulated guest) is asked only when they show a leftover."""
        if not any(n.startswith(prefix) for n in self.recorded_names()):
            return []
        leftovers = [n for n in self.container_names() if n.startswith(prefix)]
        for name in leftovers:
            with contextlib.suppress(AssertionError):
                self(["rm", "-f", name], timeout=30)
        return leftovers

    def kill_processes(self) -> None:
        """SIGKILL and reap whatever this tier started in the background and is still alive."""
        while self.processes:
            proc = self.processes.pop()
            if isinstance(proc, int):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(proc, 0)
            else:
                if proc.poll() is None:
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.communicate(timeout=30)


def oci_runtime(directory: Path, root: Path) -> Path:
    """`minirun-oci` of this checkout as an engine is configured with it: one executable whose
    argv is runc's, keeping its containers under `root`."""
    script = directory / "minirun-oci"
    script.write_text(f"#!/bin/sh\nMINIRUN_OCI_ROOT={root} PYTHONPATH={REPO} exec {sys.executable} "
                      f"-P -m minirun.oci \"$@\"\n")
    script.chmod(0o755)
    return script


def describe(tier: Tier, args: Sequence[str], result: subprocess.CompletedProcess[str], why: str = "") -> str:
    return (f"[{tier.name}] minirun {' '.join(args)}: exit {result.returncode} {why}\n"
            f"--- stdout ---\n{result.stdout}--- stderr ---\n{result.stderr}")


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """minirun's own errors are one line on stderr, never a traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return lines[0]


# --- waiting, always with a deadline --------------------------------------------------------------


def wait_for(predicate: Any, timeout: float = 30, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll predicate() until it returns something true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def read_until(stream: Any, marker: str, timeout: float = 30) -> str:
    """Read a Popen text pipe until `marker` appears (or EOF, or the deadline: both fail)."""
    fd = stream.fileno()
    os.set_blocking(fd, False)
    seen = b""
    deadline = time.monotonic() + timeout
    while marker.encode() not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {marker!r}; got {seen!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"EOF before {marker!r}; got {seen!r}")
            seen += chunk
    os.set_blocking(fd, True)
    return seen.decode(errors="replace")


def process_exists(pid: int) -> bool:
    """True while `pid` is a live process (a zombie counts as gone: it runs nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# --- pseudo-terminals -----------------------------------------------------------------------------


def set_window_size(fd: int, rows: int, cols: int) -> None:
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


DSR = b"\x1b[6n"


@dataclass
class PtyProcess:
    """The terminal side of `minirun run -it` as a person would see it."""

    pid: int
    master: int
    output: bytes = b""
    status: int | None = None

    def write(self, data: str) -> None:
        os.write(self.master, data.encode())

    def type(self, data: str, quiet: float = 0.3, timeout: float = 30) -> None:
        """Type like a person: once the screen has stopped changing for `quiet` seconds.
        (busybox's line editor drops keys that arrive together with the terminal's answer to
        its cursor position query; a person never types that fast after a prompt.)"""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], quiet)
            if not ready:
                break
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break  # closed: the write below fails or the next expect reports it
            self.receive(chunk)
        self.write(data)

    def expect(self, pattern: str, timeout: float = 30) -> re.Match[bytes]:
        """Read until `pattern` (a regex) matches output not consumed by an earlier expect."""
        regex = re.compile(pattern.encode())
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.output)
            if match:
                self.output = self.output[match.end():]
                return match
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {pattern!r} on the terminal: {self.output!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: the other side of the pty is closed
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"terminal closed while waiting for {pattern!r}: {self.output!r}")
                self.receive(chunk)

    def receive(self, chunk: bytes) -> None:
        """busybox's line editor asks the terminal where the cursor is (ESC [ 6 n, "device status
        report") after printing its prompt; a terminal answers ESC [ row ; col R, and so do we."""
        *before, after = chunk.split(DSR)
        for part in before:
            self.output += part
            line = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", self.output).split(b"\n")[-1]
            os.write(self.master, b"\x1b[1;%dR" % (len(line.split(b"\r")[-1]) + 1))
        self.output += after

    def wait(self, timeout: float = 30) -> int:
        """Drain the terminal until minirun exits; return its exit code (as a shell shows it)."""
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.status = status
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"minirun did not exit in {timeout}s; terminal: {self.output!r}")
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                with contextlib.suppress(OSError):
                    self.output += os.read(self.master, 65536)
        # What minirun wrote before it exited is still in the terminal: read it to the end (EIO
        # once no process holds the other side; a detached container may still hold it: then up
        # to what is there). On a slow machine that can be most of the output.
        with contextlib.suppress(OSError):
            while select.select([self.master], [], [], 0.05)[0] and (chunk := os.read(self.master, 65536)):
                self.output += chunk
        with contextlib.suppress(OSError):
            os.close(self.master)
        return os.waitstatus_to_exitcode(self.status)


def wait_running(tier: Tier, name: str, proc: subprocess.Popen[str] | None = None,
                 timeout: float = 30) -> dict[str, Any]:
    """Poll `minirun inspect NAME` until the container runs with a pid; return the inspect item."""

    def running() -> dict[str, Any] | None:
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"minirun exited ({proc.returncode}) before {name} ran:\n{out}{err}")
        result = tier(["inspect", name], timeout=30)
        if result.returncode != 0:
            return None
        item: dict[str, Any] = json.loads(result.stdout)[0]
        return item if item["State"]["Status"] == "running" and item["State"]["Pid"] > 0 else None

    item: dict[str, Any] = wait_for(running, timeout=timeout, interval=0.1, what=f"{name} to run")
    return item


@contextlib.contextmanager
def container(tier: Tier, name: str, *flags: str, cmd: Sequence[str] = ("sleep", "300"),
              ) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """A container running in the background, `minirun run` as its monitor: yields (the host
    pid of its PID 1, the monitor); `rm -f` at the end."""
    proc = tier.popen(["run", "--name", name, *flags, IMAGE, *cmd])
    try:
        yield wait_running(tier, name, proc)["State"]["Pid"], proc
    finally:
        tier(["rm", "-f", name], timeout=60)


def subid_range(path: str, user: str) -> tuple[int, int] | None:
    """The first subordinate id range of `user` in /etc/subuid or /etc/subgid: (start, count)."""
    with contextlib.suppress(FileNotFoundError), open(path) as f:
        for line in f:
            name, _, rest = line.strip().partition(":")
            if name == user:
                start, _, count = rest.partition(":")
                return int(start), int(count)
    return None


@contextlib.contextmanager
def open_dir(prefix: str) -> Iterator[Path]:
    """A temporary host directory any user may enter (0755), for -v mounts the rootless tier can
    read too; removed afterwards, whoever (root, mrtest, a remapped container uid) wrote in it."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def build_static(source: str, directory: Path, *cflags: str) -> Path:
    """Compile tests/SOURCE statically into DIRECTORY: a probe that runs in any image, libc or not."""
    gcc = shutil.which("gcc")
    assert gcc, f"gcc is needed to build tests/{source} (install.sh --dev installs it)"
    program = directory / Path(source).stem
    subprocess.run([gcc, "-static", "-O1", *cflags, "-o", str(program), str(REPO / "tests" / source)],
                   check=True, capture_output=True, timeout=120)
    return program
