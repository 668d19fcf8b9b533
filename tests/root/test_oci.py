"""`minirun-oci`: minirun as an OCI runtime with runc's command line (minirun/oci/).

Every test drives the real entry point (`python -m minirun.oci`, what the `minirun-oci` console
script runs) against a bundle made from the validation kit's rootfs, and checks what the kernel
says (/proc of the container's process, its cgroup files), not what minirun prints. The last
test runs the runtime-tools validation suite itself (../shared/tools/oci-validation) and holds
minirun to the programs that pass with both runc and crun, and to crun's total.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from cgroup_helpers import FREEZER_KINDS, frozen_parent, pids_hierarchy
from helpers import PODMAN_IMAGE, REPO, oci_runtime, process_exists, wait_for

from minirun import cgroups
from minirun.oci import config

pytestmark = pytest.mark.root

KIT = REPO.parent / "shared" / "tools" / "oci-validation"
ROOTFS = KIT / "rootfs-amd64.tar.gz"
# Measured here (README, "minirun as an OCI runtime"): every program of the kit's
# pass-with-runc-and-crun.txt, and 42 PASS in all (crun 39, runc 31; linux_mount_label and
# linux_process_apparmor_profile are refused on this host, as runc refuses them). One less is allowed:
# `poststart` races the program's first write against the hook's (the suite's own design).
MIN_PASS = 41


class Oci:
    """`minirun-oci` with a --root of the test's own; remembers ids to force-delete at the end."""

    def __init__(self, root: Path, script: Path) -> None:
        self.root, self.script, self.ids = root, script, set[str]()

    def __call__(self, *args: str, check: bool = True, timeout: float = 60,
                 **kwargs: Any) -> subprocess.CompletedProcess[str]:
        verb = list(args)
        while verb and verb[0].startswith("-"):  # the global options, some with a value
            verb = verb[2:] if verb[0] in ("--root", "--log", "--log-format") else verb[1:]
        if verb and verb[0] == "create":
            self.ids.add(args[-1])
        if verb and verb[0] in ("create", "exec") and "stderr" not in kwargs:
            # The container inherits create's stdio: a pipe would stay open as long as it runs
            # (runc's "pass-through" mode), so that waiting for its EOF would wait for the container.
            with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
                result = subprocess.run([str(self.script), *args], text=True, timeout=timeout,
                                        stdout=out, stderr=err, **kwargs)
                out.seek(0)
                err.seek(0)
                result.stdout, result.stderr = out.read(), err.read()
        else:
            kwargs.setdefault("stdout", subprocess.PIPE)
            kwargs.setdefault("stderr", subprocess.PIPE)
            result = subprocess.run([str(self.script), *args], text=True, timeout=timeout, **kwargs)
        if check and result.returncode != 0:
            raise AssertionError(f"minirun-oci {' '.join(args)}: exit {result.returncode}\n{result.stderr}")
        return result

    def state(self, container_id: str) -> dict[str, Any]:
        return json.loads(self("state", container_id).stdout)  # type: ignore[no-any-return]

    def wait_status(self, container_id: str, status: str) -> dict[str, Any]:
        return wait_for(lambda: (s := self.state(container_id))["status"] == status and s,  # type: ignore[no-any-return]
                        timeout=20, what=f"{container_id} {status}")


@pytest.fixture
def oci(tmp_path: Path) -> Iterator[Oci]:
    runtime = Oci(tmp_path / "state", oci_runtime(tmp_path, tmp_path / "state"))
    yield runtime
    for container_id in runtime.ids:
        runtime("delete", "--force", container_id, check=False)
    assert not [p for p in runtime.root.glob("*")], "records left behind"


@pytest.fixture
def bundle(tmp_path: Path) -> Callable[..., Path]:
    """bundle(args, **changes): a bundle dir with the kit's busybox rootfs and `minirun-oci spec`'s
    config.json, process.args replaced and top-level or process keys changed."""
    counter = iter(range(1000))

    def make(args: list[str], process: dict[str, Any] | None = None, **changes: Any) -> Path:
        where = tmp_path / f"bundle{next(counter)}"
        (where / "rootfs").mkdir(parents=True)
        subprocess.run(["tar", "-xzf", str(ROOTFS), "-C", str(where / "rootfs")], check=True)
        script = oci_runtime(tmp_path, tmp_path / "state")
        subprocess.run([str(script), "spec", "--bundle", str(where)], check=True)
        config = json.loads((where / "config.json").read_text())
        config["process"].update({"args": args, "terminal": False, **(process or {})})
        config["root"]["readonly"] = False
        config.update(changes)
        (where / "config.json").write_text(json.dumps(config))
        return where

    return make


def test_lifecycle_waits_at_the_fifo_until_start(oci: Oci, bundle: Callable[..., Path],
                                                 tmp_path: Path) -> None:
    b = bundle(["sh", "-c", "echo started > /started; exec sleep 60"])
    pid_file = tmp_path / "pidfile"
    oci("create", "--bundle", str(b), "--pid-file", str(pid_file), "c1")
    state = oci.state("c1")
    assert state["status"] == "created" and state["pid"] == int(pid_file.read_text())
    pid = state["pid"]
    # Created: the process exists in its namespaces, but the program has not run.
    assert os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    time.sleep(0.3)
    assert not (b / "rootfs" / "started").exists()
    oci("start", "c1")
    wait_for(lambda: (b / "rootfs" / "started").exists(), what="the program ran")
    assert oci.state("c1")["status"] == "running"
    # sh wrote the file, then exec'd sleep: under load the exec may come a moment later
    wait_for(lambda: Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == b"sleep", what="sleep")
    again = oci("start", "c1", check=False)
    assert again.returncode == 125 and "running" in again.stderr
    refused = oci("delete", "c1", check=False)
    assert refused.returncode == 125 and oci.state("c1")["status"] == "running"
    oci("kill", "c1", "9")
    oci.wait_status("c1", "stopped")
    cgroups = [Path(p) for p in json.loads((oci.root / "c1" / "state.json").read_text())["cgroup_paths"]]
    assert cgroups and all(p.is_dir() for p in cgroups)
    oci("delete", "c1")
    assert not any(p.exists() for p in cgroups)
    gone = oci("state", "c1", check=False)
    assert gone.returncode == 125 and gone.stderr.count("\n") == 1 and "Traceback" not in gone.stderr


def test_stdio_is_what_create_inherits(oci: Oci, bundle: Callable[..., Path], tmp_path: Path) -> None:
    b = bundle(["sh", "-c", "read line; echo out:$line; echo err >&2; ls /proc/self/fd"])
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "w") as o, open(err, "w") as e:
        r, w = os.pipe()
        os.write(w, b"hello\n")
        os.close(w)
        oci("create", "--bundle", str(b), "c2", stdin=r, stdout=o, stderr=e)
        os.close(r)
    oci("start", "c2")
    oci.wait_status("c2", "stopped")
    # Only 0, 1, 2 (and ls's own directory fd) reach the program: not the fifo, not the socket.
    assert out.read_text().split() == ["out:hello", "0", "1", "2", "3"]
    assert err.read_text() == "err\n"


def test_terminal_goes_over_the_console_socket(oci: Oci, bundle: Callable[..., Path], tmp_path: Path) -> None:
    b = bundle(["sh", "-c", "tty; ls -l /dev/console"], process={"terminal": True})
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path = str(tmp_path / "console.sock")
    listener.bind(path)
    listener.listen(1)
    listener.settimeout(20)
    create = subprocess.Popen([str(oci.script), "create", "--bundle", str(b), "--console-socket", path, "c3"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    oci.ids.add("c3")
    conn, _ = listener.accept()
    _, fds, _, _ = socket.recv_fds(conn, 100, 1)
    conn.close()
    listener.close()
    assert create.wait(30) == 0, create.stderr.read() if create.stderr else ""
    assert len(fds) == 1
    master = fds[0]
    oci("start", "c3")
    seen = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # until the program ends: EIO once the slave is closed
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    text = seen.decode(errors="replace")
    assert "/dev/pts/0" in text.splitlines()[0], text
    assert re.search(r"^c.* 136, +0 .*/dev/console", text, re.M), text  # the pty's slave is the console


def test_a_console_socket_that_is_no_listener_is_one_line(oci: Oci, bundle: Callable[..., Path],
                                                          tmp_path: Path) -> None:
    """Attack review of issue 15: --console-socket naming a file that is not a socket, a symbolic
    link to a listener that closes the connection before it reads the terminal (which was
    "container setup failed: [Errno 32] Broken pipe"): one line naming --console-socket, 125,
    no record left."""
    b = bundle(["true"], process={"terminal": True})
    (tmp_path / "file").write_text("")
    one_line_125(oci("create", "--bundle", str(b), "--console-socket", str(tmp_path / "file"), "c29",
                     check=False), "--console-socket")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "console.sock"))
    listener.listen(1)
    listener.settimeout(20)
    (tmp_path / "link").symlink_to(tmp_path / "console.sock")
    create = subprocess.Popen([str(oci.script), "create", "--bundle", str(b), "--console-socket",
                               str(tmp_path / "link"), "c29"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    oci.ids.add("c29")
    conn, _ = listener.accept()
    conn.close()  # at once: the child sends the terminal only once the container is set up
    listener.close()
    _, err = create.communicate(timeout=30)
    one_line_125(subprocess.CompletedProcess(create.args, create.returncode, "", err),
                 "--console-socket: cannot send the terminal")
    assert not (oci.root / "c29").exists()


def test_exec_joins_the_container_and_returns_its_code(oci: Oci, bundle: Callable[..., Path],
                                                       tmp_path: Path) -> None:
    b = bundle(["sleep", "60"])
    oci("create", "--bundle", str(b), "c4")
    oci("start", "c4")
    pid = oci.state("c4")["pid"]
    process = tmp_path / "process.json"
    command = "readlink /proc/self/ns/pid; readlink /proc/self/ns/mnt; exit 7"
    process.write_text(json.dumps({"args": ["sh", "-c", command], "cwd": "/", "env": ["PATH=/bin"],
                                   "user": {"uid": 1000, "gid": 1000}}))
    done = oci("exec", "--process", str(process), "c4", check=False)
    assert done.returncode == 7, done.stderr
    assert done.stdout.split() == [os.readlink(f"/proc/{pid}/ns/pid"), os.readlink(f"/proc/{pid}/ns/mnt")]
    pid_file = tmp_path / "exec.pid"
    process.write_text(json.dumps({"args": ["sleep", "50"], "cwd": "/", "env": ["PATH=/bin"]}))
    oci("exec", "--detach", "--pid-file", str(pid_file), "--process", str(process), "c4")
    exec_pid = int(pid_file.read_text())
    status = Path(f"/proc/{exec_pid}/status").read_text()
    assert re.search(r"^Uid:\s+0\s", status, re.M)
    assert Path(f"/proc/{exec_pid}/cmdline").read_bytes().startswith(b"sleep")
    assert os.readlink(f"/proc/{exec_pid}/ns/pid") == os.readlink(f"/proc/{pid}/ns/pid")
    missing = oci("exec", "c4", "no-such-program", check=False)
    assert missing.returncode == 127, missing.stderr
    oci("delete", "--force", "c4")
    wait_for(lambda: not process_exists(exec_pid), what="exec'd process gone with the container")


@pytest.mark.parametrize("userns", [False, True], ids=["root", "userns"])
def test_exec_process_oom_score_adj_is_what_the_program_has(oci: Oci, bundle: Callable[..., Path],
                                                            tmp_path: Path, userns: bool) -> None:
    """Attack review of issue 15: exec --process P.json ignored P's oomScoreAdj (create honoured
    config.json's). A negative value needs CAP_SYS_RESOURCE in the host's user namespace (proc(5)),
    which root of a user namespace lacks, so it is written before the helper joins the container
    (create.set_oom_score_adj, create's code); tried only where the runtime's root has it (this
    sandbox's root has not)."""
    where = Path(tempfile.mkdtemp(prefix="minirun-test-oci-"))
    try:
        where.chmod(0o755)
        b = userns_bundle(bundle, where, "a") if userns else bundle(["sleep", "600"])
        oci("create", "--bundle", str(b), "c34")
        oci("start", "c34")
        process = tmp_path / "process.json"
        effective = int(re.search(r"^CapEff:\s+(\w+)", Path("/proc/self/status").read_text(), re.M)[1], 16)
        lowering = [-500] if effective >> 24 & 1 else []  # CAP_SYS_RESOURCE
        for adj in (300, 100, *lowering):
            process.write_text(json.dumps({"args": ["cat", "/proc/self/oom_score_adj"], "cwd": "/",
                                           "env": ["PATH=/bin"], "oomScoreAdj": adj}))
            assert oci("exec", "--process", str(process), "c34").stdout == f"{adj}\n"
        assert Path(f"/proc/{oci.state('c34')['pid']}/oom_score_adj").read_text() == "0\n", "its own"
    finally:
        oci("delete", "--force", "c34", check=False)
        shutil.rmtree(where, ignore_errors=True)


# Runs argv with some of our fds at given numbers (and, with subprocess's close_fds, nothing else
# of ours above 2), as conmon hands a runtime the fds of `podman run --preserve-fds N`.
PLACE_FDS = """import fcntl, os, sys
pairs = [tuple(map(int, p.split(":"))) for p in sys.argv[1].split(",")]
high = [(fcntl.fcntl(src, fcntl.F_DUPFD, 100), dst) for src, dst in pairs]
for src, _ in pairs:
    os.close(src)
for fd, dst in high:
    os.dup2(fd, dst)
    os.close(fd)
os.execv(sys.argv[2], sys.argv[2:])
"""


def with_fds(oci: Oci, placed: dict[int, int], *args: str, output: Path) -> subprocess.CompletedProcess[str]:
    """`minirun-oci ARGS` with placed[n] at fd n; its stdout and stderr (the container's) to `output`."""
    if args[0] == "create":
        oci.ids.add(args[-1])
    spec = ",".join(f"{src}:{dst}" for dst, src in placed.items())
    with open(output, "w") as out:
        return subprocess.run([sys.executable, "-c", PLACE_FDS, spec, str(oci.script), *args],
                              pass_fds=tuple(placed.values()), stdin=subprocess.DEVNULL, stdout=out,
                              stderr=out, text=True, timeout=60, check=False)


def read_until(fd: int, wanted: bytes, timeout: float = 20) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while wanted not in got and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            got += chunk
    return got


class Births:
    """ptrace(2) from the test (host root): PTRACE_SEIZE a runtime with PTRACE_O_TRACEFORK/CLONE, so
    each process it (or its children) forks is stopped at birth; every stop is let go but the
    first new process born in a PID namespace below ours, which is held until release()."""

    SEIZE, CONT, DETACH, GETEVENTMSG = 0x4206, 7, 17, 0x4201
    FORKS = (1, 2, 3)  # PTRACE_EVENT_FORK, _VFORK, _CLONE
    WALL = 0x40000000

    def __init__(self, pid: int) -> None:
        import ctypes

        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        self.root, self.traced, self.held, self.root_status = pid, {pid}, 0, None
        # PTRACE_O_TRACEFORK | _TRACEVFORK | _TRACECLONE
        assert self.libc.ptrace(self.SEIZE, pid, None, 2 | 4 | 8) == 0, ctypes.get_errno()

    def step(self) -> None:
        import ctypes

        for pid in list(self.traced):
            try:
                got, status = os.waitpid(pid, os.WNOHANG | self.WALL)
            except ChildProcessError:
                continue
            if not got:
                continue
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                self.traced.discard(pid)
                self.root_status = status if pid == self.root else self.root_status
                continue
            event, sig = status >> 16, os.WSTOPSIG(status)
            if event in self.FORKS:
                child = ctypes.c_ulong()
                self.libc.ptrace(self.GETEVENTMSG, pid, None, ctypes.byref(child))
                self.traced.add(child.value)
            elif event == 128 and not self.held and len(nspids(pid)) > 1:
                self.held = pid  # born in the container's PID namespace: hold it here
                continue
            self.libc.ptrace(self.CONT, pid, None, None if event or sig in (signal.SIGTRAP, signal.SIGSTOP)
                             else sig)

    def release(self) -> None:
        self.libc.ptrace(self.DETACH, self.held, None, None)
        self.traced.discard(self.held)


def nspids(pid: int) -> list[int]:
    status = Path(f"/proc/{pid}/status").read_text()
    return [int(n) for n in re.search(r"^NSpid:(.*)$", status, re.M).group(1).split()]  # type: ignore[union-attr]


def userns_bundle(bundle: Callable[..., Path], where: Path, name: str,
                  namespaces: dict[str, str] | None = None) -> Path:
    """A bundle of `sleep 600` in a user namespace (0 -> host 300000) or, with namespaces, one that
    joins those by path, in `where` (0755: its root must reach the bundle)."""
    b = bundle(["sleep", "600"])
    config = json.loads((b / "config.json").read_text())
    if namespaces is None:
        config["linux"]["namespaces"].append({"type": "user"})
        config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 300000, "size": 65536}]
        config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 300000, "size": 65536}]
    else:
        kept = [n for n in config["linux"]["namespaces"] if n["type"] not in namespaces]
        config["linux"]["namespaces"] = kept + [{"type": k, "path": v} for k, v in namespaces.items()]
    (b / "config.json").write_text(json.dumps(config))
    return Path(shutil.move(b, where / name))


def attack_held(oci: Oci, container_id: str, runtime: subprocess.Popen[bytes], births: Births,
                tmp_path: Path) -> list[str]:
    """Run `runtime` under `births` until it holds a process, attack that process from inside
    `container_id` (its root, CAP_SYS_PTRACE in its user namespace): /proc/PID/exe and environ,
    first of the container's own PID 1 (the baseline), then release it and let the runtime end."""
    deadline = time.monotonic() + 30
    while not births.held and time.monotonic() < deadline:
        births.step()
        time.sleep(0.001)
    assert births.held, "no process held in the container's PID namespace"
    inside = nspids(births.held)[-1]
    attack = ("for p in 1 {}; do "
              "readlink /proc/$p/exe >/dev/null 2>&1 && echo exe ok || echo exe denied; "
              "cat /proc/$p/environ >/dev/null 2>&1 && echo environ ok || echo environ denied; done")
    caps = ["CAP_SYS_PTRACE", "CAP_DAC_OVERRIDE"]
    (tmp_path / "attack.json").write_text(json.dumps({
        "args": ["sh", "-c", attack.format(inside)], "cwd": "/", "env": ["PATH=/bin"],
        "capabilities": {k: caps for k in ("bounding", "effective", "permitted")}}))
    seen = oci("exec", "--process", str(tmp_path / "attack.json"), container_id).stdout.split("\n")
    births.release()
    while births.traced and time.monotonic() < deadline:
        births.step()
        time.sleep(0.001)
    assert births.root_status is not None, "the runtime has not ended"
    assert seen[:2] == ["exe ok", "environ ok"], seen  # the baseline: the container's own sleep
    return seen[2:4]


def test_exec_is_not_dumpable_when_born_in_the_container(oci: Oci, bundle: Callable[..., Path],
                                                         tmp_path: Path) -> None:
    """Attack review of issue 15 (CVE-2016-9962, CVE-2019-5736): the process `exec` clones is born
    in the container's user and PID namespaces, the host's python still. The test holds it there,
    at birth (ptrace from the host), and root of the container, with CAP_SYS_PTRACE in its user
    namespace, tries its /proc/PID/exe and environ: denied (not dumpable from its first moment),
    while the same on the container's own sleep works. It was dumpable until its first setresuid."""
    where = Path(tempfile.mkdtemp(prefix="minirun-test-oci-"))
    try:
        where.chmod(0o755)
        oci("create", "--bundle", str(userns_bundle(bundle, where, "a")), "c25")
        oci("start", "c25")
        (tmp_path / "target.json").write_text(json.dumps({"args": ["true"], "cwd": "/"}))
        target = ["exec", "--process", str(tmp_path / "target.json"), "c25"]
        runtime = subprocess.Popen([str(oci.script), *target], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        births = Births(runtime.pid)
        assert attack_held(oci, "c25", runtime, births, tmp_path) == ["exe denied", "environ denied"]
        assert births.root_status is not None and os.waitstatus_to_exitcode(births.root_status) == 0
    finally:
        oci("delete", "--force", "c25", check=False)
        shutil.rmtree(where, ignore_errors=True)


def test_create_joining_a_pods_user_namespace_makes_its_namespaces_there(
        oci: Oci, bundle: Callable[..., Path], tmp_path: Path) -> None:
    """Attack review of issue 15: a bundle joining another container's user and PID namespaces
    by path (a podman pod's) and making the rest new. A namespace belongs to the user namespace
    of the process that makes it: the child cloned them as host root, then joined, and was
    refused sethostname and its mounts (EPERM), so such a create always failed. Now a helper
    joins first and clones there: the container runs, in both namespaces joined, with its own
    hostname. And the process born in the pod's PID namespace (held there at birth, ptrace from
    the host) is not dumpable: root of the pod cannot open its /proc/PID/exe or environ."""
    where = Path(tempfile.mkdtemp(prefix="minirun-test-oci-"))
    try:
        where.chmod(0o755)
        oci("create", "--bundle", str(userns_bundle(bundle, where, "a")), "c26")
        oci("start", "c26")
        pid = oci.state("c26")["pid"]
        joining = userns_bundle(bundle, where, "b", {k: f"/proc/{pid}/ns/{k}" for k in ("user", "pid")})
        config = json.loads((joining / "config.json").read_text())
        config["hostname"] = "joiner"
        (joining / "config.json").write_text(json.dumps(config))
        oci.ids.add("c27")
        runtime = subprocess.Popen([str(oci.script), "create", "--bundle", str(joining), "c27"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        births = Births(runtime.pid)
        assert attack_held(oci, "c26", runtime, births, tmp_path) == ["exe denied", "environ denied"]
        assert births.root_status is not None and os.waitstatus_to_exitcode(births.root_status) == 0
        joiner = oci.state("c27")["pid"]
        for kind in ("user", "pid"):
            assert os.readlink(f"/proc/{joiner}/ns/{kind}") == os.readlink(f"/proc/{pid}/ns/{kind}")
        assert os.readlink(f"/proc/{joiner}/ns/mnt") != os.readlink(f"/proc/{pid}/ns/mnt")
        oci("start", "c27")
        assert oci("exec", "c27", "hostname").stdout == "joiner\n"
        oci("delete", "--force", "c27")
    finally:
        oci("delete", "--force", "c26", check=False)
        shutil.rmtree(where, ignore_errors=True)


def test_preserve_fds_gives_the_program_3_to_3_plus_n_and_nothing_else(
        oci: Oci, bundle: Callable[..., Path], tmp_path: Path) -> None:
    """runc's --preserve-fds N, for create and exec: the caller's fds 3 .. 3+N-1 reach the
    program as they are (a pipe with data in, a pipe out); any other fd the runtime inherited
    (here a file at fd 7) is closed at the program's execve."""
    secret = tmp_path / "secret"
    secret.write_text("not for the container\n")
    other = os.open(secret, os.O_RDONLY)
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    in_ino, out_ino = os.fstat(in_r).st_ino, os.fstat(out_w).st_ino
    os.write(in_w, b"through fd 3\n")
    os.close(in_w)
    b = bundle(["sh", "-c", "cat <&3 >&4; echo from the container >&4; exec sleep 60"])
    try:
        created = with_fds(oci, {3: in_r, 4: out_w, 7: other}, "create", "--preserve-fds", "2",
                           "--bundle", str(b), "c10", output=tmp_path / "create.out")
        assert created.returncode == 0, (tmp_path / "create.out").read_text()
        os.close(in_r)
        os.close(out_w)
        pid = oci.state("c10")["pid"]
        oci("start", "c10")
        got = read_until(out_r, b"from the container\n")
        assert got == b"through fd 3\nfrom the container\n", got
        # `sleep` (the exec'd sh) holds 0-2 and the two pipes, nothing else: not fd 7, not the fifo.
        wait_for(lambda: Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep"), what="sleep")
        fds = {name: os.readlink(f"/proc/{pid}/fd/{name}") for name in os.listdir(f"/proc/{pid}/fd")}
        assert sorted(fds) == ["0", "1", "2", "3", "4"], fds
        assert (fds["3"], fds["4"]) == (f"pipe:[{in_ino}]", f"pipe:[{out_ino}]")
        # exec --preserve-fds 1: a pipe with data at fd 3; fd 7 again not passed.
        e_r, e_w = os.pipe()
        os.write(e_w, b"exec data\n")
        os.close(e_w)
        command = "cat <&3; [ -e /proc/self/fd/7 ] && echo fd 7 leaked || echo no fd 7"
        done = with_fds(oci, {3: e_r, 7: other}, "exec", "--preserve-fds", "1", "c10", "sh", "-c", command,
                        output=tmp_path / "exec.out")
        os.close(e_r)
        assert done.returncode == 0 and (tmp_path / "exec.out").read_text() == "exec data\nno fd 7\n"
        # Bad input: a count whose fds are not all open, or below zero; one line, 125, nothing made.
        gap = with_fds(oci, {3: other}, "create", "--preserve-fds", "2", "--bundle", str(b), "c11",
                       output=tmp_path / "gap.out")
        assert gap.returncode == 125 and (tmp_path / "gap.out").read_text() == \
            "minirun-oci: --preserve-fds 2: fd 4 is not open\n"
        negative = oci("exec", "--preserve-fds", "-1", "c10", "true", check=False)
        assert negative.returncode == 125 and len(negative.stderr.splitlines()) == 1, negative
        assert not (oci.root / "c11").exists()
    finally:
        os.close(other)
        os.close(out_r)


def test_a_create_container_hook_gets_its_stdio_and_nothing_else(oci: Oci, bundle: Callable[..., Path],
                                                                 tmp_path: Path) -> None:
    """Attack review of issue 15: the createContainer hook is forked by the container's child
    before its fds are closed, and got every fd create inherited (here a file at fd 7, as an
    engine's own fds would be), which runc's hooks never see and the program does not either."""
    listing = tmp_path / "hook-fds"
    hook = {"path": "/bin/sh", "args": ["sh", "-c", f"ls /proc/self/fd > {listing}"]}
    b = bundle(["sleep", "60"], hooks={"createContainer": [hook]})
    secret = os.open(Path(__file__), os.O_RDONLY)
    try:
        created = with_fds(oci, {7: secret}, "create", "--bundle", str(b), "c28", output=tmp_path / "out")
    finally:
        os.close(secret)
    assert created.returncode == 0, (tmp_path / "out").read_text()
    assert listing.read_text().split() == ["0", "1", "2", "3"], "stdio and ls's own directory fd"


def test_explain_narrates_create_and_start_and_never_reaches_the_program(
        oci: Oci, bundle: Callable[..., Path], tmp_path: Path) -> None:
    """--explain=FILE (podman's --runtime-flag explain=FILE): the steps with the kernel's values,
    appended to FILE by create, its child and start; the program sees none of it (its fds are
    0, 1, 2). A bare --explain after another global goes to stderr; exec narrates too."""
    narration = tmp_path / "explain.txt"
    b = bundle(["sleep", "30"])
    oci(f"--explain={narration}", "create", "--bundle", str(b), "c12")
    pid = oci.state("c12")["pid"]
    oci(f"--explain={narration}", "start", "c12")
    assert sorted(os.listdir(f"/proc/{pid}/fd")) == ["0", "1", "2"]
    text = narration.read_text()
    steps = re.findall(r"^minirun explain: \[(parent|child) +[+-][\d.]+ ms\] (.+)$", text, re.M)
    assert [s for _, s in steps] == [
        "oci: config.json", "oci: seccomp", "oci: cgroup", "oci: exec fifo", "clone", "join cgroup",
        "oci: go", "oci: namespaces", "oci: mounts", "pivot_root", "oci: sysctl, masked and read-only paths",
        "oci: stdio",
        "oci: capabilities, seccomp, user", "oci: cwd; the sync socket closes", "oci: created",
        "oci: prestart hooks", "oci: start opened the exec fifo", "oci: execve", "oci: start"], text
    cgroups = json.loads((oci.root / "c12" / "state.json").read_text())["cgroup_paths"]
    assert f"the child is host pid {pid} and PID 1 inside" in text and f"mkdir {cgroups[0]};" in text
    assert f"echo {pid} > cgroup.procs" in text and f"pid {pid} now runs 'sleep 30'" in text
    oci("delete", "--force", "c12")
    b2 = bundle(["true"])
    shown = oci("--root", str(oci.root), "--explain", "create", "--bundle", str(b2), "c13")
    assert "] oci: config.json" in shown.stderr and "] oci: created" in shown.stderr
    joined = oci("--explain", "exec", "c13", "true")  # exec narrates too (podman passes it there)
    steps = re.findall(r"^minirun explain: \[\w+ +[+-][\d.]+ ms\] (.+)$", joined.stderr, re.M)
    assert steps == ["oci: exec plan", "exec: cgroup, setns", "oci: capabilities, seccomp, user",
                     "oci: execve"], joined.stderr
    assert f"exec into pid {oci.state('c13')['pid']} " in joined.stderr
    oci("delete", "--force", "c13")
    refused = oci(f"--explain={tmp_path}/no/such/dir/x", "create", "--bundle", str(b2), "c14", check=False)
    assert refused.returncode == 125 and len(refused.stderr.splitlines()) == 1, refused.stderr
    assert not (oci.root / "c14").exists()


def test_systemd_cgroup_path_is_the_one_systemd_would_use(oci: Oci, bundle: Callable[..., Path]) -> None:
    """--systemd-cgroup (podman's cgroup_manager=systemd): cgroupsPath "slice:prefix:name" is the
    directory systemd would give the scope, made on cgroupfs in every hierarchy of this host
    (v1 + the unified tree on a hybrid host, the one tree on v2), as the kernel shows in
    /proc/PID/cgroup; delete removes the scope and, with no systemd on this host, the slices it
    made; a bad one is one line, 125."""
    from minirun.oci.cgroup import systemd_running

    pids = pids_hierarchy()  # v1: /sys/fs/cgroup/pids; v2: /sys/fs/cgroup
    hierarchies = [line.split(":", 2)[1] for line in Path("/proc/self/cgroup").read_text().splitlines()]
    for n, (given, expected) in enumerate([
            ("machine.slice:libpod:mrt-c15", "/machine.slice/libpod-mrt-c15.scope"),
            ("mrt-1000.slice:minirun:c16", "/mrt.slice/mrt-1000.slice/minirun-c16.scope"),
            (None, f"/system.slice/minirun-oci-c17{os.getpid()}.scope")]):
        container_id = f"c{15 + n}" + (str(os.getpid()) if given is None else "")
        b = bundle(["sleep", "60"])
        config = json.loads((b / "config.json").read_text())
        config["linux"].pop("cgroupsPath", None)
        if given is not None:
            config["linux"]["cgroupsPath"] = given
        (b / "config.json").write_text(json.dumps(config))
        top = pids / expected.split("/")[1]
        top_before = top.exists()
        oci("--systemd-cgroup", "create", "--bundle", str(b), container_id)
        pid = oci.state(container_id)["pid"]
        seen = {line.split(":", 2)[1]: line.split(":", 2)[2]
                for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()}
        assert seen == {h: expected for h in hierarchies}, seen
        assert str(pid) in (pids / expected.lstrip("/") / "cgroup.procs").read_text()
        oci("start", container_id)
        oci("delete", "--force", container_id)
        assert not (pids / expected.lstrip("/")).exists()
        if not systemd_running():
            assert top.exists() == top_before, "the slices it made go with the last scope"
    b = bundle(["true"])
    config = json.loads((b / "config.json").read_text())
    config["linux"]["cgroupsPath"] = "/not/a/systemd/path"
    (b / "config.json").write_text(json.dumps(config))
    refused = oci("--systemd-cgroup", "create", "--bundle", str(b), "c18", check=False)
    assert refused.returncode == 125 and refused.stderr.count("\n") == 1, refused.stderr
    assert "slice:prefix:name" in refused.stderr and not (oci.root / "c18").exists()


def own_hierarchies() -> list[Path]:
    return [h.mountpoint for h in cgroups.hierarchies() if h.mountpoint.is_relative_to(cgroups.CGROUP_ROOT)]


def test_a_cgroup_it_does_not_own_is_never_limited_killed_or_removed(oci: Oci,
                                                                    bundle: Callable[..., Path]) -> None:
    """Attack review of issue 15: a config.json's cgroupsPath naming a cgroup where something runs
    already (here a slice whose process is one level down, as system.slice's services are), by
    cgroupfs path or by --systemd-cgroup's slice:prefix:name, is refused (runc since 1.1), so its
    pids.max is not written and delete kills nothing there (the victim was SIGKILLed, its slice
    removed). A pre-existing empty cgroup may be joined but stays; the levels create made go."""
    tag = f"mrt-victim{os.getpid()}"
    victim = subprocess.Popen(["sleep", "300"])
    try:
        for h in own_hierarchies():
            (h / f"{tag}.slice" / "inner").mkdir(parents=True)
            cgroups.prepare_v1_cpuset(h / f"{tag}.slice")
            cgroups.prepare_v1_cpuset(h / f"{tag}.slice" / "inner")
            (h / f"{tag}.slice" / "inner" / "cgroup.procs").write_text(str(victim.pid))
            (h / f"{tag}-empty").mkdir()
            cgroups.prepare_v1_cpuset(h / f"{tag}-empty")
        limits = {"pids": {"limit": 5}}
        ways: list[tuple[tuple[str, ...], str]] = [((), f"/{tag}.slice"),
                                                   (("--systemd-cgroup",), f"-::{tag}.slice")]
        for n, (flags, path) in enumerate(ways):
            b = bundle(["sleep", "60"])
            config = json.loads((b / "config.json").read_text())
            config["linux"].update(cgroupsPath=path, resources=limits)
            (b / "config.json").write_text(json.dumps(config))
            refused = oci(*flags, "create", "--bundle", str(b), f"c30{n}", check=False)
            assert refused.returncode == 125 and refused.stderr.count("\n") == 1, refused.stderr
            assert "not empty" in refused.stderr and "Traceback" not in refused.stderr
            assert oci(*flags, "delete", "--force", f"c30{n}").returncode == 0
        pids_dir = pids_hierarchy() / f"{tag}.slice"
        assert (pids_dir / "pids.max").read_text() == "max\n"
        assert victim.poll() is None, "the victim lives"
        assert all((h / f"{tag}.slice" / "inner").is_dir() for h in own_hierarchies())
        # Joining an empty one is allowed (runc does); its directory is not create's to remove.
        # A path of new levels: each is removed by delete.
        for n, path in enumerate([f"/{tag}-empty", f"/{tag}-own/a/b"]):
            b = bundle(["sleep", "60"])
            config = json.loads((b / "config.json").read_text())
            config["linux"]["cgroupsPath"] = path
            (b / "config.json").write_text(json.dumps(config))
            oci("create", "--bundle", str(b), f"c31{n}")
            pid = oci.state(f"c31{n}")["pid"]
            assert str(pid) in (pids_hierarchy() / path.lstrip("/") / "cgroup.procs").read_text()
            oci("delete", "--force", f"c31{n}")
        assert all((h / f"{tag}-empty").is_dir() for h in own_hierarchies())
        assert not any((h / f"{tag}-own").exists() for h in own_hierarchies())
        for path in ("/./", "."):  # each hierarchy's root cgroup
            b = bundle(["true"])
            config = json.loads((b / "config.json").read_text())
            config["linux"]["cgroupsPath"] = path
            (b / "config.json").write_text(json.dumps(config))
            refused = oci("create", "--bundle", str(b), "c32", check=False)
            assert refused.returncode == 125 and "invalid linux.cgroupsPath" in refused.stderr, refused.stderr
    finally:
        victim.kill()
        victim.wait()
        for h in own_hierarchies():
            for d in (f"{tag}.slice/inner", f"{tag}.slice", f"{tag}-empty"):
                with contextlib.suppress(OSError):
                    (h / d).rmdir()


@pytest.mark.parametrize("kind", FREEZER_KINDS)
def test_a_cgroups_path_below_a_frozen_cgroup_is_refused(oci: Oci, bundle: Callable[..., Path],
                                                         kind: str) -> None:
    """A cgroupsPath whose own directory is thawed but whose parent is frozen (an existing one, and
    a new one create would make, born frozen): the process would stop as it is moved in, and
    create wait for it forever. Refused by what the kernel says is the effective state
    (cgroups.frozen: v1 freezer.state, v2 cgroup.events), and create's directories go."""
    with frozen_parent(own_hierarchies(), kind) as frozen:
        for n, path in enumerate([f"/{frozen.parent}", f"/{frozen.parent}/new"]):
            b = bundle(["true"])
            config = json.loads((b / "config.json").read_text())
            config["linux"]["cgroupsPath"] = path
            (b / "config.json").write_text(json.dumps(config))
            refused = oci("create", "--bundle", str(b), f"c33{n}", check=False, timeout=30)
            assert refused.returncode == 125 and refused.stderr.count("\n") == 1, refused.stderr
            assert "the cgroup is frozen" in refused.stderr and "Traceback" not in refused.stderr
            assert not any((h / frozen.parent / "new").exists() for h in own_hierarchies())
            frozen.thaw()  # (before the fix: what stopped there can be deleted now)
            oci("delete", "--force", f"c33{n}", check=False)
            frozen.freezer.write_text("FROZEN" if kind == "v1 freezer" else "1")


@pytest.mark.parametrize("userns", [False, True], ids=["root", "userns"])
def test_without_a_cgroup_namespace_only_its_own_cgroup_is_shown(oci: Oci, bundle: Callable[..., Path],
                                                                  tmp_path: Path, userns: bool) -> None:
    """A bundle without a cgroup namespace (podman's default on this v1/hybrid host): /sys/fs/cgroup
    shows the container's own cgroup of each hierarchy, read-only, never the host's tree; in a user
    namespace too (`podman run --uidmap`), where mounting cgroupfs is refused (EPERM)."""
    v2 = cgroups.mode() == "v2"  # one tree: its own cgroup is /sys/fs/cgroup itself
    pids = "/sys/fs/cgroup" if v2 else "/sys/fs/cgroup/pids"
    command = f"ls /sys/fs/cgroup; ls -F {pids} /sys/fs/cgroup/memory | grep /$; " \
              f"echo 1 > {pids}/pids.max && echo WRITABLE; cat {pids}/pids.max"
    b = bundle(["sh", "-c", command])
    config = json.loads((b / "config.json").read_text())
    config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != "cgroup"]
    config["linux"]["resources"] = {"pids": {"limit": 77}}
    config["mounts"].append({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]})  # as podman's
    if userns:
        config["linux"]["namespaces"].append({"type": "user"})
        config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 300000, "size": 65536}]
        config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 300000, "size": 65536}]
    (b / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    with contextlib.ExitStack() as stack:
        if userns:  # its root (host uid 300000) must reach the bundle: not through pytest's 0700 dirs
            where = Path(tempfile.mkdtemp(prefix="minirun-test-oci-"))
            stack.callback(shutil.rmtree, where, ignore_errors=True)
            where.chmod(0o755)
            b = Path(shutil.move(b, where / "bundle"))
        with open(out, "w") as o, open(tmp_path / "err", "w") as e:
            oci("create", "--bundle", str(b), "c19", stdout=o, stderr=e)
        oci("start", "c19")
        oci.wait_status("c19", "stopped")
        oci("delete", "c19")
    shown = out.read_text().split()
    expected = {"pids.max", "cgroup.procs"} if v2 else \
        {h.mountpoint.name for h in cgroups.hierarchies() if h.mountpoint.parent == cgroups.CGROUP_ROOT}
    assert expected and expected <= set(shown), (shown, (tmp_path / "err").read_text())
    assert "WRITABLE" not in shown and shown[-1] == "77", shown  # its own pids.max, read-only
    assert not [s for s in shown if s.endswith("/")], "no cgroup below its own: not the host's tree"
    assert "Read-only file system" in (tmp_path / "err").read_text()


def test_run_waits_for_the_program_and_removes_it(oci: Oci, bundle: Callable[..., Path]) -> None:
    b = bundle(["sh", "-c", "echo ran; exit 6"])
    done = oci("run", "--bundle", str(b), "c10", check=False, stderr=subprocess.PIPE)
    assert (done.returncode, done.stdout) == (6, "ran\n"), done
    assert oci("state", "c10", check=False).returncode == 125


def test_pause_resume_and_kill_all(oci: Oci, bundle: Callable[..., Path]) -> None:
    config_ns = [{"type": t} for t in ("network", "ipc", "uts", "mount")]  # no pid namespace: --pid=host
    b = bundle(["sh", "-c", "sleep 100 & sleep 100 & wait"], linux={
        "namespaces": config_ns, "resources": {"pids": {"limit": 50}}})
    oci("create", "--bundle", str(b), "c5")
    oci("start", "c5")
    paths = json.loads((oci.root / "c5" / "state.json").read_text())["cgroup_paths"]
    procs = next(Path(p) / "cgroup.procs" for p in paths if (Path(p) / "pids.max").exists())
    assert (procs.parent / "pids.max").read_text().strip() == "50"
    pids = wait_for(lambda: len(found := procs.read_text().split()) == 3 and [int(p) for p in found],
                    what="three processes")
    oci("pause", "c5")
    assert oci.state("c5")["status"] == "paused"
    assert wait_for(lambda: frozen(paths), what="the cgroup frozen")
    oci("resume", "c5")
    assert oci.state("c5")["status"] == "running"
    oci("kill", "--all", "c5", "KILL")
    wait_for(lambda: not any(process_exists(p) for p in pids), what="every process of the cgroup killed")
    oci.wait_status("c5", "stopped")
    oci("delete", "c5")


def test_delete_removes_the_cgroups_made_inside_the_containers(oci: Oci, bundle: Callable[..., Path]) -> None:
    """Cgroups made inside the container's own, its process moved into the deepest, as systemd or
    a nested runtime in the container makes them (here by the host's root, as the container's
    would with the rights to): `delete --force` kills it there and removes them with its own
    (atk19: rmdir said EBUSY for 5 s, quietly given up: the directories stayed for good)."""
    b = bundle(["sleep", "100"])
    oci("create", "--bundle", str(b), "c15")
    oci("start", "c15")
    paths = [Path(p) for p in json.loads((oci.root / "c15" / "state.json").read_text())["cgroup_paths"]]
    pid = oci.state("c15")["pid"]
    for path in paths:
        (path / "inner" / "deeper").mkdir(parents=True, exist_ok=True)
        v1_cpuset = (path / "cpuset.cpus").exists() and not (path / "cgroup.controllers").exists()
        if not v1_cpuset:  # (whose new cgroups have no cpus until given some: cpuset(7))
            (path / "inner" / "deeper" / "cgroup.procs").write_text(str(pid))
    began = time.monotonic()
    oci("delete", "--force", "c15")
    assert time.monotonic() - began < 10
    assert not [p for p in paths if p.exists()]
    assert not process_exists(pid)


def frozen(paths: list[str]) -> bool:
    """What the kernel says, not what was asked: v1's freezer.state reads FROZEN once every task
    is; v2's cgroup.freeze is only the request, cgroup.events says `frozen 1` once it is done
    (cgroup-v2.rst, "cgroup.freeze")."""
    for p in map(Path, paths):
        if (p / "freezer.state").exists():
            return (p / "freezer.state").read_text().strip() == "FROZEN"
    events = next(p / "cgroup.events" for p in map(Path, paths) if (p / "cgroup.freeze").exists())
    return "frozen 1" in events.read_text().splitlines()


def test_bad_input_is_one_line_and_125(oci: Oci, bundle: Callable[..., Path], tmp_path: Path) -> None:
    b = bundle(["true"])
    cases = [("create", "--bundle", str(tmp_path / "nowhere"), "x1"), ("create", "--bundle", str(b), "../x"),
             ("kill", "nosuch", "9"), ("start", "nosuch"), ("delete", "nosuch"), ("create", "--nope", "x")]
    broken = bundle(["true"])
    (broken / "config.json").write_text('{"ociVersion": "1.0.2", "process": {"args": "not a list"}}')
    cases.append(("create", "--bundle", str(broken), "x2"))
    for args in cases:
        result = oci(*args, check=False)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 125 and len(lines) == 1, (args, result)
        assert "Traceback" not in result.stderr
    oci("create", "--bundle", str(b), "c6")
    assert oci("kill", "c6", "NOSIG", check=False).returncode == 125
    assert oci("create", "--bundle", str(b), "c6", check=False).returncode == 125  # the id is taken
    oci("delete", "--force", "c6")
    assert oci("delete", "--force", "c6").returncode == 0  # as runc: --force on a gone id is fine


def one_line_125(result: subprocess.CompletedProcess[str], wanted: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 125 and len(lines) == 1 and wanted in lines[0], result
    assert "Traceback" not in result.stderr


def test_apparmor_profiles_are_applied_or_refused_selinux_labels_refused(
        oci: Oci, bundle: Callable[..., Path], tmp_path: Path) -> None:
    """Attack review of issue 15: process.apparmorProfile, selinuxLabel and linux.mountLabel were
    silently ignored, so the program ran unconfined. Without the module (this host), runc refuses
    each (minirun/oci/config.py, refuse_label): one line, 125, nothing created; exec's process.json
    too. With AppArmor on (the VM tier's Debian kernel, Ubuntu hosts), the profile confines the
    program from its execve (child.apparmor_on_exec): "unconfined" runs and /proc/self/attr/current
    says so; a profile the kernel has not loaded is one line. SELinux labels: refused either way."""
    apparmor = config.lsm_enabled("apparmor")
    why = {"apparmor": "apparmor profile 'containers-default-0.50.1'" if apparmor
           else "AppArmor is not enabled on this host",
           "selinux": "minirun-oci has no SELinux support" if config.lsm_enabled("selinux")
           else "SELinux is not enabled on this host"}
    label = "system_u:system_r:container_t:s0"
    cases: list[tuple[dict[str, dict[str, str]], Literal["apparmor", "selinux"]]] = [
        ({"process": {"apparmorProfile": "containers-default-0.50.1"}}, "apparmor"),
        ({"process": {"selinuxLabel": label}}, "selinux"),
        ({"linux": {"mountLabel": "system_u:object_r:container_file_t:s0"}}, "selinux")]
    for change, lsm in cases:
        b = bundle(["true"])
        data = json.loads((b / "config.json").read_text())
        for key, value in change.items():
            data[key].update(value)
        (b / "config.json").write_text(json.dumps(data))
        one_line_125(oci("create", "--bundle", str(b), "c35", check=False), why[lsm])
        assert not (oci.root / "c35").exists()
    if apparmor:
        b = bundle(["cat", "/proc/self/attr/current"], process={"apparmorProfile": "unconfined"})
        done = oci("run", "--bundle", str(b), "c36", check=False, stderr=subprocess.PIPE)
        assert (done.returncode, done.stdout.strip()) == (0, "unconfined"), done
    b = bundle(["sleep", "60"])
    oci("create", "--bundle", str(b), "c35")
    for key, lsm in (("apparmorProfile", "apparmor"), ("selinuxLabel", "selinux")):
        process = {"args": ["true"], "cwd": "/", key: "containers-default-0.50.1"}
        (tmp_path / "p.json").write_text(json.dumps(process))
        one_line_125(oci("exec", "--process", str(tmp_path / "p.json"), "c35", check=False), why[lsm])
    oci("delete", "--force", "c35")


def test_bad_ids_records_and_process_users_are_one_line(oci: Oci, bundle: Callable[..., Path],
                                                        tmp_path: Path) -> None:
    """Attack review of issue 15. User ids that are not uint32 (uid -1 is setresuid's "unchanged":
    the program would stay root; a string in additionalGids was a traceback), in config.json and
    in exec's process.json; an oomScoreAdj out of -1000..1000; an id longer than a file name may
    be (delete --force said "[Errno 36]"); a record changed by hand (cgroup_paths a string, whose
    letters became directories relative to the cwd for delete to kill and rmdir; hooks not a
    table: tracebacks): one line and 125, and delete --force removes such a record so that the
    id can be used again."""
    for user in ({"uid": -1}, {"uid": 2**32}, {"uid": 0, "gid": 0, "additionalGids": ["a"]}):
        b = bundle(["true"], process={"user": user})
        one_line_125(oci("create", "--bundle", str(b), "c20", check=False), "an id from 0 to 4294967294")
        assert not (oci.root / "c20").exists()
    b = bundle(["true"], process={"oomScoreAdj": 5000})  # was "[Errno 22] Invalid argument"
    one_line_125(oci("create", "--bundle", str(b), "c20", check=False), "oomScoreAdj 5000: a number")
    b = bundle(["sleep", "60"])
    oci("create", "--bundle", str(b), "c21")
    process = tmp_path / "process.json"
    for user in ({"uid": -1, "gid": 0}, {"uid": 0, "gid": 0, "additionalGids": [1, "a"]}):
        process.write_text(json.dumps({"args": ["id"], "cwd": "/", "user": user}))
        one_line_125(oci("exec", "--process", str(process), "c21", check=False), "an id from 0 to 4294967294")
    one_line_125(oci("exec", "--user", "99999999999", "c21", "id", check=False), "--user 99999999999: an id")
    one_line_125(oci("delete", "--force", "x" * 1000, check=False), "invalid container id")
    one_line_125(oci("state", "c" * 256, check=False), "invalid container id")
    assert oci("state", "c" * 255, check=False).stderr.endswith("does not exist\n")
    oci("delete", "--force", "c21")
    (oci.root / "c22").mkdir()
    (tmp_path / "h").mkdir()  # the letters of a cgroup_paths string, as directories of the cwd
    for bad in ({"pid": 0, "cgroup_paths": "h"}, {"pid": 0, "cgroup_paths": [1]},
                {"pid": 0, "cgroup_paths": ["/sys/fs/cgroup/../../tmp"]}, {"pid": 0, "hooks": "x"},
                {"pid": 0, "hooks": {"poststop": [{"x": 1}]}}, {"pid": "1"}, []):
        (oci.root / "c22" / "state.json").write_text(json.dumps(bad))
        for verb in ("state", "kill", "delete"):
            one_line_125(oci(verb, "c22", check=False, cwd=tmp_path), "bad state.json")
        listed = oci("list").stdout
        assert re.search(r"^c22 +0 +unknown", listed, re.M), listed
        forced = oci("delete", "--force", "c22", check=False, cwd=tmp_path)
        assert forced.returncode == 0 and "record removed" in forced.stderr, forced
        assert not (oci.root / "c22").exists() and (tmp_path / "h").is_dir()
        (oci.root / "c22").mkdir()
    (oci.root / "c22").rmdir()


def test_a_hook_in_the_container_is_killed_at_its_timeout(oci: Oci, bundle: Callable[..., Path]) -> None:
    """config.md: a hook's timeout is the seconds it may take. createContainer and startContainer
    hooks run from the container's child (fork + execve) and were waited for without one: a hook
    that hangs held create (or start) as long as it liked."""
    hang = {"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}
    b = bundle(["true"], hooks={"createContainer": [hang]})
    started = time.monotonic()
    refused = oci("create", "--bundle", str(b), "c23", check=False, stderr=subprocess.PIPE)
    assert time.monotonic() - started < 15, "create waited for the hook"
    one_line_125(refused, "createContainer hook /bin/sleep timed out after 1 s")
    assert not (oci.root / "c23").exists()
    b = bundle(["true"], hooks={"startContainer": [hang]})
    oci("create", "--bundle", str(b), "c24")
    started = time.monotonic()
    oci("start", "c24", check=False)
    assert time.monotonic() - started < 15, "start waited for the hook"
    oci.wait_status("c24", "stopped")


def test_a_hook_in_the_container_with_a_timeout_of_weeks_runs(oci: Oci, bundle: Callable[..., Path]) -> None:
    """config.md: a hook's timeout is any positive number of seconds. One of 30 days is more
    milliseconds than poll(2) takes (a C int): the hook must still run, and create succeed."""
    quick = {"path": "/bin/true", "args": ["true"], "timeout": 30 * 24 * 3600}
    b = bundle(["true"], hooks={"createContainer": [quick], "startContainer": [quick]})
    oci("create", "--bundle", str(b), "c-weeks")
    oci("start", "c-weeks")
    oci.wait_status("c-weeks", "stopped")
    oci("delete", "c-weeks")


def test_a_container_killed_before_start_leaves_nothing(oci: Oci, bundle: Callable[..., Path]) -> None:
    """Attack from outside: the waiting process dies (an OOM kill, a stray kill -9) between
    create and start. start must not hang on the fifo, and delete must clean up."""
    b = bundle(["true"])
    oci("create", "--bundle", str(b), "c7")
    state = oci.state("c7")
    os.kill(state["pid"], signal.SIGKILL)
    oci.wait_status("c7", "stopped")
    started = oci("start", "c7", check=False, timeout=20)
    assert started.returncode == 125 and "stopped" in started.stderr
    paths = json.loads((oci.root / "c7" / "state.json").read_text())["cgroup_paths"]
    oci("delete", "c7")
    assert not any(Path(p).exists() for p in paths)


def test_create_killed_half_way_leaves_what_delete_removes(oci: Oci, bundle: Callable[..., Path]) -> None:
    """Attack by killing minirun: create is SIGKILLed while the child runs a createContainer
    hook (before the child's answer). The child dies with it (its death signal), `state` says
    stopped, and `delete` removes the record and the cgroup that were already made."""
    b = bundle(["true"], hooks={"createContainer": [{"path": "/bin/sleep", "args": ["sleep", "30"]}]})
    create = subprocess.Popen([str(oci.script), "create", "--bundle", str(b), "c11"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    oci.ids.add("c11")
    record = oci.root / "c11" / "state.json"
    paths = wait_for(lambda: record.exists() and json.loads(record.read_text())["cgroup_paths"],
                     what="the record naming the cgroup")
    wait_for(lambda: any(Path(p, "cgroup.procs").exists() and Path(p, "cgroup.procs").read_text().strip()
                         for p in paths), what="the child in its cgroup")
    assert oci.state("c11")["status"] == "creating"
    create.send_signal(signal.SIGKILL)
    create.wait(10)
    oci.wait_status("c11", "stopped")
    oci("delete", "c11")
    wait_for(lambda: not any(Path(p).exists() for p in paths), what="the cgroup removed")
    assert not (oci.root / "c11").exists()


def test_the_container_cannot_reach_the_fifo_or_the_host(oci: Oci, bundle: Callable[..., Path]) -> None:
    """Attack from inside: the program looks for the exec fifo and the host's root through its
    fds and /proc/1; it finds the container's own root, no descriptor beyond 0-2, and cannot
    write the read-only /proc/sys."""
    b = bundle(["sh", "-c", "ls /proc/1/fd; readlink /proc/1/root; ls /run 2>&1; "
                "echo 1 > /proc/sys/kernel/sysrq 2>&1 || echo refused"])
    out = b / "out"
    with open(out, "w") as o:
        oci("create", "--bundle", str(b), "c8", stdout=o, stderr=subprocess.STDOUT)
    oci("start", "c8")
    oci.wait_status("c8", "stopped")
    lines = out.read_text().splitlines()
    assert lines[:4] == ["0", "1", "2", "/"], lines
    assert "refused" in lines[-1], lines


def test_a_mount_target_that_is_a_symlink_out_of_the_root_never_reaches_the_host(
        oci: Oci, bundle: Callable[..., Path], tmp_path: Path) -> None:
    """Attack through the bundle: the image's /escape is a link to a host directory (absolute,
    or climbing with ..). The target is resolved inside the root (openat2 RESOLVE_IN_ROOT),
    where it does not exist, and the link is not replaced: create refuses (one line, 125), and
    nothing is mounted on the host or left behind."""
    host = tmp_path / "host-dir"
    host.mkdir()
    for link, target in (("escape", str(host)), ("up", "../../../../../../" + str(host).lstrip("/"))):
        b = bundle(["true"], mounts=[{"destination": f"/{link}", "type": "tmpfs", "source": "tmpfs"}])
        (b / "rootfs" / link).symlink_to(target)
        refused = oci("create", "--bundle", str(b), f"c9{link}", check=False)
        assert refused.returncode == 125 and len(refused.stderr.splitlines()) == 1, refused
        assert str(host) not in Path("/proc/self/mountinfo").read_text()
        assert not list(host.iterdir()) and not (oci.root / f"c9{link}").exists()


@pytest.mark.timeout(1800)
def test_runtime_tools_validation_suite(tmp_path: Path) -> None:
    """The conformance kit: build (offline, Debian's Go), run all 58 programs, classify."""
    out = Path(os.environ.get("MINIRUN_OCI_KIT_DIR", "/tmp/minirun-oci-validation"))
    subprocess.run(["bash", str(KIT / "build.sh"), str(out)], check=True, capture_output=True, timeout=600)
    runtime = oci_runtime(tmp_path, tmp_path / "state")
    subprocess.run(["bash", str(KIT / "run.sh"), str(runtime), str(out), "60"], check=True,
                   capture_output=True, timeout=1700)
    classified = (out / "results" / runtime.name / "classified.txt").read_text()
    status = dict(re.findall(r"^(\S+)\s+(PASS|FAIL|CRASH|TIMEOUT)\b", classified, re.M))
    assert len(status) == 58, classified
    must = (KIT / "pass-with-runc-and-crun.txt").read_text().split()
    assert [n for n in must if status.get(n) != "PASS"] == [], classified
    assert [n for n, s in status.items() if s == "TIMEOUT"] == [], classified
    passed = sorted(n for n, s in status.items() if s == "PASS")
    assert len(passed) >= MIN_PASS, classified
    with contextlib.suppress(FileNotFoundError):
        leftovers = [p.name for p in (tmp_path / "state").iterdir()]
        assert leftovers == [], leftovers


def test_podman_drives_it(podman: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    """The engine on top: `podman --runtime minirun-oci` (conmon calls create/start/exec/kill/
    delete/pause/resume with runc's argv): exit codes, -t through the console socket, exec
    (-t, -d), pause/unpause, kill -s, stop, restart, wait, rm -f, and --pid=host's kill --all."""
    runtime = oci_runtime(tmp_path, tmp_path / "state")
    base = ["podman", "--runtime", str(runtime)]
    flags = ["--pull", "never", "--network", "none",
             "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]  # see README
    name = f"mrt-oci-{os.getpid()}"

    def pm(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)

    def in_pty(*args: str) -> subprocess.CompletedProcess[str]:  # script(1): podman -t wants a terminal
        line = " ".join(f"'{a}'" if " " in a else a for a in [*base, *args])
        return subprocess.run(["script", "-eqc", line, "/dev/null"], capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL, check=False)

    def status() -> str:
        return pm("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", name).stdout.strip()

    try:
        assert pm("run", "--rm", *flags, PODMAN_IMAGE, "sh", "-c", "echo hi; exit 3").returncode == 3
        # podman's systemd cgroup manager: `--systemd-cgroup create` with machine.slice:libpod:ID.
        # The host's cgroup namespace, so the path shows: podman's default is a private one on a
        # v2 host (where the container sees its cgroup as "0::/"), the host's on v1 and hybrid.
        systemd = pm("--cgroup-manager", "systemd", "run", "--rm", "--cgroupns", "host", *flags,
                     PODMAN_IMAGE, "cat", "/proc/self/cgroup")
        assert re.search(r"^0::/machine\.slice/libpod-[0-9a-f]{64}\.scope$", systemd.stdout, re.M), systemd
        tty = in_pty("run", "--rm", "-t", *flags, PODMAN_IMAGE, "sh", "-c", "tty; exit 4")
        assert tty.returncode == 4 and "/dev/pts/0" in tty.stdout, tty
        assert pm("run", "-d", "--name", name, *flags, PODMAN_IMAGE, "sleep", "100").returncode == 0
        assert pm("inspect", "-f", "{{.OCIRuntime}}", name).stdout.strip() == str(runtime)
        done = pm("exec", name, "sh", "-c", "echo in; exit 5")
        assert (done.returncode, done.stdout) == (5, "in\n"), done
        assert "/dev/pts/" in in_pty("exec", "-t", name, "tty").stdout
        assert pm("exec", "-d", name, "sleep", "50").returncode == 0
        assert "sleep 50" in pm("top", name).stdout
        assert pm("pause", name).returncode == 0 and status() == "paused 0"
        assert pm("unpause", name).returncode == 0 and status() == "running 0"
        assert pm("kill", "-s", "USR1", name).returncode == 0  # PID 1 without a handler: ignored
        time.sleep(0.5)
        assert status() == "running 0"
        assert pm("stop", "-t", "2", name).returncode == 0 and status() == "exited 137"
        assert pm("restart", name).returncode == 0 and status() == "running 0"
        assert pm("kill", name).returncode == 0
        assert pm("wait", name).stdout.strip() == "137"
        assert pm("rm", "-f", name).returncode == 0
        started = pm("run", "-d", "--name", name, "--pid=host", *flags, PODMAN_IMAGE, "sh", "-c",
                     "sleep 100 & sleep 100")
        assert started.returncode == 0, started.stderr
        assert pm("stop", "-t", "2", name).returncode == 0  # kill --all: every process of the cgroup
        assert status().startswith("exited")
    finally:
        pm("rm", "-f", name)
    assert not [p for p in (tmp_path / "state").glob("*")]
