"""`minirun exec`: one more process in a running container, held to the container's own plan
(minirun/enter.py). Both tiers (fixture `minirun`), pids.max as root (limits need root here).

What is compared is read by the host from PID 1 itself (/proc/PID/ns, /proc/PID/status), so a
process that merely *looked* contained would not pass.
"""

import contextlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cgroup_helpers import exec_and_check_joined
from helpers import IMAGE, Tier, container, one_line_error, process_exists, read_until, wait_for

NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")
STATUS_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "Seccomp", "NoNewPrivs", "Uid", "Gid")
PROMPT = r"# (\x1b\[J)?$"


def status_fields(text: str) -> dict[str, str]:
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k: " ".join(fields[k].split()) for k in STATUS_FIELDS}


def test_exec_is_in_every_namespace_and_under_the_same_security(minirun: Tier,
                                                               names: Callable[[], str]) -> None:
    name = names()
    # Not the defaults, so that the plan really comes from the container's record.
    flags = ("--cap-drop", "CHOWN", "--cap-add", "SYS_PTRACE", "--security-opt", "no-new-privileges",
             "--network", "none")
    with container(minirun, name, *flags) as (pid, _):
        script = ("for n in " + " ".join(NAMESPACES) + "; do readlink /proc/self/ns/$n; done; "
                  "cat /proc/self/status; echo ---; cat /proc/1/status")
        out = minirun(["exec", name, "sh", "-c", script], check=0).stdout
        lines = out.splitlines()
        expected = [os.readlink(f"/proc/{pid}/ns/{n}") for n in NAMESPACES]
        assert lines[:len(NAMESPACES)] == expected
        # /proc/self/status of the shell (exec'd as the container's root) against PID 1's: as
        # the container sees both (ids), and as the host sees PID 1 (the rest).
        own, pid1 = "\n".join(lines[len(NAMESPACES):]).split("---")
        ours = status_fields(own)
        assert ours == status_fields(pid1)
        theirs = status_fields(Path(f"/proc/{pid}/status").read_text())
        assert {k: v for k, v in ours.items() if k[1:3] != "id"} == \
            {k: v for k, v in theirs.items() if k[1:3] != "id"}
        assert theirs["NoNewPrivs"] == "1" and theirs["Seccomp"] == "2"
        # The environment, host name and working directory are the container's, -e over them.
        out = minirun(["exec", "-e", "EXTRA=1", "-w", "/tmp", name, "sh", "-c",
                       'echo "$HOSTNAME $PATH $EXTRA $(pwd) $(hostname)"'], check=0).stdout.split()
        assert out[0] == out[4] == minirun.inspect(name)["Config"]["Hostname"]
        assert out[1].startswith("/usr/local/sbin") and out[2:4] == ["1", "/tmp"]
        # -u: a user from the container's /etc/passwd, without capabilities.
        out = minirun(["exec", "-u", "nobody", name, "sh", "-c", "id -u; grep CapEff /proc/self/status"],
                      check=0).stdout.split()
        assert out[0] == "65534" and out[-1] == "0000000000000000"


def test_seed_004_exec_touch_shows_in_proc_root(minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    with container(minirun, name) as (pid, _):
        minirun(["exec", name, "touch", "/new_test_file"], check=0)
        assert "new_test_file" in os.listdir(f"/proc/{pid}/root")


def test_exit_codes(minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    with container(minirun, name) as _:
        assert minirun(["exec", name, "true"]).returncode == 0
        assert minirun(["exec", name, "sh", "-c", "exit 3"]).returncode == 3
        result = minirun(["exec", name, "/etc/passwd"], check=126)
        assert "permission denied" in one_line_error(result)
        result = minirun(["exec", name, "no-such-command"], check=127)
        assert "not found" in one_line_error(result)
        assert minirun(["exec", name, "sh", "-c", "kill -9 $$"]).returncode == 137
        one_line_error(minirun(["exec", "-w", "/no/such/dir", name, "true"], check=126))
        one_line_error(minirun(["exec", "-u", "nosuchuser", name, "true"], check=125))
    one_line_error(minirun(["exec", name, "true"], check=125))  # gone
    stopped = names()
    minirun(["run", "--name", stopped, IMAGE, "true"], check=0)
    assert "not running" in one_line_error(minirun(["exec", stopped, "true"], check=125))
    minirun(["rm", stopped], check=0)


def test_exec_is_counted_in_pids_max(root_minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    pids = 'P=/sys/fs/cgroup/pids; [ -e $P/pids.current ] || P=/sys/fs/cgroup; '
    with container(root_minirun, name, "--pids-limit", "3") as _:
        # PID 1 + this shell + cat: the helper that joined for it is gone already.
        out = root_minirun(["exec", name, "sh", "-c", pids + "cat $P/pids.current; true"], check=0).stdout
        assert out.split() == ["3"]
        # PID 1 + sh + one child fill the 3: the shell's second fork fails.
        result = root_minirun(["exec", name, "sh", "-c", "sleep 5 & sleep 5 & echo forked"])
        assert "forked" not in result.stdout and "fork" in result.stderr, result


def test_exec_killed_by_its_containers_limits(root_minirun: Tier, names: Callable[[], str]) -> None:
    """An exec'd command the container's OOM killer SIGKILLs: exec says 137, at once (its helper
    is long gone, nothing waits on it). With pids.max reached, exec cannot clone its process:
    one line, 125, no hang; PID 1 runs on, and exec works again once a pid is free (atk19)."""
    name = names()
    with container(root_minirun, name, "--network", "none", "--memory", "32m", "--memory-swap", "32m",
                   "--pids-limit", "3") as (pid, _):
        began = time.monotonic()
        oom = root_minirun(["exec", name, "dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"])
        assert oom.returncode == 137 and time.monotonic() - began < 30, oom
        root_minirun(["exec", "-d", name, "sleep", "1005"], check=0)  # PID 1 + this: 2 of 3
        full = root_minirun(["exec", name, "echo", "ran"], timeout=60)  # its helper is the 3rd
        assert full.returncode == 125 and "ran" not in full.stdout and full.stderr.count("\n") == 1, full
        assert process_exists(pid)
        for p in exec_processes(pid):  # the sleep: from the host (an exec would need a pid)
            os.kill(p, signal.SIGKILL)
        wait_for(lambda: root_minirun(["exec", name, "echo", "ran"], timeout=60).stdout == "ran\n",
                 what="exec to work again")


def test_exec_is_in_the_containers_cgroups_and_cgroup_namespace(minirun: Tier,
                                                                names: Callable[[], str]) -> None:
    """The exec'd process is in the container's cgroup in every hierarchy (v1: its helper wrote
    0 to each `tasks`; v2: the helper was born there by clone3), as the host reads it, and in
    PID 1's cgroup namespace, rooted there. Rootless here: no cgroup of its own, the namespace."""
    exec_and_check_joined(minirun, names())


# clone3(2) refused with ENOSYS, as docker's default seccomp profile refuses it, for `minirun exec`
# and all it starts: a BPF filter (seccomp(2), struct sock_filter) loaded before it execs argv.
NO_CLONE3 = r"""
import ctypes, os, struct, sys
arch = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}[os.uname().machine]  # AUDIT_ARCH_*
ld, jeq, ret = 0x20, 0x15, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET|BPF_K
allow, enosys = 0x7FFF0000, 0x00050000 | 38  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | ENOSYS
code = [(ld, 0, 0, 4), (jeq, 1, 0, arch), (ret, 0, 0, allow),  # seccomp_data.arch
        (ld, 0, 0, 0), (jeq, 0, 1, 435), (ret, 0, 0, enosys), (ret, 0, 0, allow)]  # .nr: clone3
program = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in code))
fprog = struct.pack("HxxxxxxP", len(code), ctypes.addressof(program))  # struct sock_fprog
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(22, 2, fprog, 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER (root: no nnp needed)
    sys.exit(f"prctl(PR_SET_SECCOMP): {os.strerror(ctypes.get_errno())}")
os.execvp(sys.argv[1], sys.argv[1:])
"""


def test_exec_without_clone3_joins_every_cgroup_all_the_same(root_minirun: Tier,
                                                             names: Callable[[], str]) -> None:
    """Where a seccomp filter above minirun answers clone3 with ENOSYS, the helper is forked and
    writes itself into the v2 cgroup.procs (enter.fork_helper): slower, just as contained."""
    exec_and_check_joined(root_minirun, names(), via=(sys.executable, "-c", NO_CLONE3))


def test_exec_it_is_a_shell_on_the_containers_pty(minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    with container(minirun, name) as _:
        term = minirun.spawn_pty(["exec", "-it", name, "sh"], rows=25, cols=90)
        term.expect(PROMPT)
        term.type("tty; stty size; echo $TERM-$((2+3))\n")
        term.expect(r"/dev/pts/\d+\r\n25 90\r\nxterm-5\r\n")
        term.expect(PROMPT)
        # The pty comes from the container's devpts: PID 1 (sleep, no terminal) sees it there.
        term.type("ls /dev/pts | grep -c '^[0-9]'; echo listed\n")
        term.expect(r"1\r\nlisted\r\n")
        term.type("sleep 100\n")
        term.type("\x03")  # Ctrl-C reaches the foreground sleep, not minirun
        term.expect(PROMPT)
        term.type("exit 4\n")
        assert term.wait(timeout=30) == 4


def exec_processes(pid1: int) -> list[int]:
    """Host pids of the processes in PID 1's PID namespace, PID 1 excepted."""
    ns = os.readlink(f"/proc/{pid1}/ns/pid")
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != pid1:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry}/ns/pid") == ns:
                    found.append(int(entry))
    return found


def test_exec_processes_die_with_the_container(minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    with container(minirun, name) as (pid, monitor):
        # -d returns once the command runs; it outlives `minirun exec`.
        minirun(["exec", "-d", name, "sleep", "1001"], check=0)
        foreground = minirun.popen(["exec", name, "sleep", "1002"])

        def sleeping() -> bool:  # both exec'd: their command lines are the sleeps' own
            lines = set()
            for p in exec_processes(pid):
                with contextlib.suppress(OSError), open(f"/proc/{p}/cmdline", "rb") as f:
                    lines.add(f.read())
            return lines == {b"sleep\x001001\x00", b"sleep\x001002\x00"}

        wait_for(sleeping, what="both exec'd sleeps")
        inside = exec_processes(pid)
        assert all(process_exists(p) for p in inside)
        minirun(["rm", "-f", name], check=0)
        for p in inside:
            wait_for(lambda p=p: not process_exists(p), timeout=10, what=f"exec'd process {p} to die")
        assert foreground.wait(timeout=30) == 137
        monitor.wait(timeout=30)


def wchan(pid: int) -> str:
    """Where in the kernel `pid` sleeps (proc(5)) ("" once it is gone)."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/wchan") as f:
        return f.read()
    return ""


def reads_a_pipe(pid: int) -> bool:
    return "pipe" in wchan(pid)  # anon_pipe_read (6.x), pipe_read, pipe_wait (older kernels)


def reads_a_socket(pid: int) -> bool:
    return "skb" in wchan(pid)  # a SOCK_SEQPACKET's recvmsg: __skb_wait_for_more_packets


def stopped(pid: int) -> bool:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] in "tT"
    return False


def held_before_go(execd: subprocess.Popen[str], pid1: int) -> int:
    """Stop `minirun exec` as soon as it waits for its helper's report (a tight loop: the helper
    lives a few milliseconds), before it has read it: its process then waits for "go". That
    process's pid, or 0 if minirun got past "go" first (the caller tries again)."""
    deadline = time.monotonic() + 30
    while not reads_a_pipe(execd.pid) and execd.poll() is None and time.monotonic() < deadline:
        pass
    os.kill(execd.pid, signal.SIGSTOP)
    wait_for(lambda: stopped(execd.pid), what="minirun to stop")
    end = time.monotonic() + 10
    while time.monotonic() < end:
        for pid in exec_processes(pid1):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().startswith(b"sleep"):  # (before its execve: minirun's python, its argv)
                    return 0  # it ran: "go" had been said
            if reads_a_socket(pid):
                return pid
        time.sleep(0.01)
    return 0


def test_exec_never_runs_alone_when_minirun_died_before_its_process_ran(
        root_minirun: Tier, names: Callable[[], str]) -> None:
    """A `minirun exec` SIGKILLed after it said "go" but before its process set its parent-death
    signal (a busy machine that had not run the process yet) must not leave the command running
    with nobody to relay or wait for it (atk19: the process set PR_SET_PDEATHSIG after its parent
    was gone, which sends nothing, and ran `sleep` on, reparented, until the container's rm).
    The scheduler's delay, made deterministic: minirun is stopped before it can say "go"
    (held_before_go); the process, cloned, waits for "go" and is stopped; minirun goes on, says
    "go", waits for the execve, and is SIGKILLed; then the process goes on. (The container's
    cgroup was frozen to hold the helper before; exec refuses a paused container now.)"""
    minirun, name = root_minirun, names()
    with container(minirun, name, "--network", "none") as (pid1, _):
        process = 0
        for _ in range(30):
            execd = minirun.popen(["exec", name, "sleep", "1003"])
            process = held_before_go(execd, pid1)
            if process:
                break
            execd.kill()
            execd.wait(timeout=30)
            for pid in exec_processes(pid1):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        assert process, "minirun was never stopped before it said go, in 30 tries"
        try:
            os.kill(process, signal.SIGSTOP)
            wait_for(lambda: stopped(process), what="the process to stop")
            os.kill(execd.pid, signal.SIGCONT)  # reaps the helper, says "go", waits for the execve
            wait_for(lambda: reads_a_socket(execd.pid), what="minirun to say go")
            execd.kill()
            execd.wait(timeout=30)  # (its pipes: the stopped process holds their other ends)
            os.kill(process, signal.SIGCONT)
            with contextlib.suppress(AssertionError):
                wait_for(lambda: not process_exists(process), timeout=5, what="the process to end")
            command = b""
            with contextlib.suppress(OSError), open(f"/proc/{process}/cmdline", "rb") as f:
                command = f.read()
            assert not process_exists(process), f"it runs on without minirun: {command!r}"
        finally:
            execd.kill()
            with contextlib.suppress(ProcessLookupError):
                os.kill(process, signal.SIGCONT)


# PID 1 of the attacked container: /etc/passwd becomes a FIFO, so an exec'd process blocks while
# it reads it, before its execve, still the host's python. The attacker (with CAP_SYS_PTRACE in the
# container) finds it and tries to reach it; first, as a baseline, the same attempts on a plain
# process of the container (`sleep`) must work.
ATTACKER = r"""
attack() {
    readlink /proc/$1/exe >/dev/null 2>&1 && echo "$2 exe ok" || echo "$2 exe denied"
    ls /proc/$1/fd >/dev/null 2>&1 && echo "$2 fd ok" || echo "$2 fd denied"
    cat /proc/$1/environ >/dev/null 2>&1 && echo "$2 environ ok" || echo "$2 environ denied"
    echo "$2 ptrace $(/probe/escape_probe ptrace-attach $1)"
}
trap 'go=1' USR1
sleep 1000 & attack $! baseline
FIFO=${FIFO:-/etc/passwd}
[ -p $FIFO ] || { rm $FIFO; mkfifo $FIFO; }
echo ready
while :; do
    for p in /proc/[0-9]*; do
        case "$(tr '\0' ' ' < $p/cmdline 2>/dev/null)" in
        *m[i]nirun*) echo found; while [ -z "$go" ]; do sleep 0.05; done; attack ${p#/proc/} target
                     echo 'root:x:0:0:root:/root:/bin/sh' > $FIFO; echo released; wait; exit 0;;
        esac
    done
done
"""


def attacked(pid1: int, monitor: subprocess.Popen[str], start: Callable[[], None]) -> None:
    """Wait for the attacker (PID 1 of `monitor`'s container) to be ready, start the victim;
    once the victim is blocked on the FIFO (its wait channel, which the host can read), let the
    attacker go; check its report: the baseline reached, the victim not."""
    assert monitor.stdout is not None
    seen = read_until(monitor.stdout, "ready\n")
    start()
    seen += read_until(monitor.stdout, "found\n")

    def blocked() -> bool:
        for p in exec_processes(pid1):
            with contextlib.suppress(OSError), open(f"/proc/{p}/wchan") as f:
                if f.read() == "wait_for_partner":
                    return True
        return False

    wait_for(blocked, timeout=30, what="the victim to block on the FIFO")
    os.kill(pid1, signal.SIGUSR1)
    seen += read_until(monitor.stdout, "released\n")
    report = dict(re.findall(r"^(\w+ \w+) (.+)$", seen, re.M))
    for what in ("exe", "fd", "environ"):
        assert report[f"baseline {what}"] == "ok", seen
        assert report[f"target {what}"] == "denied", seen
    assert report["baseline ptrace"] == "ok" and report["target ptrace"] == "errno EPERM", seen


def test_exec_cannot_be_reached_from_inside_before_its_execve(minirun: Tier, names: Callable[[], str],
                                                             escape_probe_dir: Path) -> None:
    name = names()
    victim: list[subprocess.Popen[str]] = []
    with container(minirun, name, "--cap-add", "SYS_PTRACE", "-v", f"{escape_probe_dir}:/probe:ro",
                   cmd=("sh", "-c", ATTACKER)) as (pid1, monitor):
        attacked(pid1, monitor, lambda: victim.append(minirun.popen(["exec", name, "echo", "ran"])))
        out, err = victim[0].communicate(timeout=60)
    assert victim[0].returncode == 0 and out == "ran\n", (out, err)


def test_a_joining_container_cannot_be_reached_before_its_execve(
        minirun: Tier, names: Callable[[], str], escape_probe_dir: Path, shared_dir: Path) -> None:
    """--pid=container:NAME puts the new container in sight of NAME's processes while it is
    still minirun's python; its /etc/passwd is a FIFO that NAME releases, to hold it there."""
    fifo = shared_dir / "passwd"
    os.mkfifo(fifo, 0o666)
    os.chmod(fifo, 0o666)
    name = names()
    joiner: list[subprocess.Popen[str]] = []
    with container(minirun, name, "--cap-add", "SYS_PTRACE", "--network", "none", "-e", "FIFO=/fifo",
                   "-v", f"{escape_probe_dir}:/probe:ro", "-v", f"{fifo}:/fifo",
                   cmd=("sh", "-c", ATTACKER)) as (pid1, monitor):
        attacked(pid1, monitor, lambda: joiner.append(minirun.popen(
            ["run", "--rm", "--network", "none", "--pid", f"container:{name}", "-v", f"{fifo}:/etc/passwd",
             IMAGE, "echo", "ran"])))
        out, err = joiner[0].communicate(timeout=60)
    assert joiner[0].returncode == 0 and out == "ran\n", (out, err)


def test_exec_into_an_init_container(minirun: Tier, names: Callable[[], str]) -> None:
    """With --init, PID 1 stays minirun's python and never becomes dumpable: its /proc/PID/ns
    files are closed to an unprivileged user, yet exec joins its namespaces (by its pidfd)."""
    name = names()
    with container(minirun, name, "--init", "--network", "none") as (pid, _):
        script = "readlink /proc/self/ns/pid; readlink /proc/self/ns/mnt"
        out = minirun(["exec", name, "sh", "-c", script], check=0).stdout
        assert out.split() == [os.readlink(f"/proc/{pid}/ns/{n}") for n in ("pid", "mnt")]


def test_exec_i_passes_stdin_and_without_i_stdin_is_empty(minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    with container(minirun, name):
        out = minirun(["exec", "-i", name, "tr", "a-z", "A-Z"], input="piped in\n", check=0).stdout
        assert out == "PIPED IN\n"
        assert minirun(["exec", name, "cat"], input="ignored\n", check=0).stdout == ""


@pytest.mark.parametrize("flags", [[], ["-t"], ["-d"]], ids=["pipes", "tty", "detached"])
def test_exec_gives_its_command_only_0_1_2(minirun: Tier, names: Callable[[], str], flags: list[str]) -> None:
    """Nothing minirun opened for exec reaches the command: not the v1 `tasks` files nor the v2
    directory it opened for the helper (enter.run), not PID 1's pidfd, the sync socket or the
    report pipe; nor a descriptor its caller left inheritable (CVE-2024-21626: a host directory)."""
    name = names()
    held = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(held, True)
    try:
        with container(minirun, name):
            # -d: what it says is discarded, so it says it into a file of the container
            script = "(ls /proc/$$/fd; readlink /proc/$$/cwd) > /tmp/fds; mv /tmp/fds /tmp/fds.done"
            argv = ["exec", *flags, name, "sh", "-c", script]
            if flags == ["-t"]:  # on a terminal of its own (pty.fork keeps the inheritable fd)
                minirun.spawn_pty(argv)
            else:
                proc = minirun.popen(argv, pass_fds=(held,))
                _, err = proc.communicate(timeout=60)
                assert proc.returncode == 0, err
            out = wait_for(lambda: minirun(["exec", name, "cat", "/tmp/fds.done"]).stdout, timeout=30,
                           what="the list of its descriptors")
    finally:
        os.close(held)
    assert out.split() == ["0", "1", "2", "/"], out


def test_exec_needs_a_command_and_a_container(minirun: Tier) -> None:
    one_line_error(minirun(["exec", "no-such-container-xyz", "true"], check=125))
    one_line_error(minirun(["exec", "no-such-container-xyz"], check=125))


def test_exec_has_the_containers_umask_and_limits_not_the_callers(minirun: Tier,
                                                                  names: Callable[[], str]) -> None:
    """Attack review of issue 11: exec's process had the umask and rlimits of the shell that typed
    `minirun exec` (umask 0000 made world-writable files). Now: umask 0022 as PID 1, PID 1's limits."""
    name = names()
    with container(minirun, name, "--network", "none") as (pid, _):
        pid1_files = next(line.split()[3] for line in Path(f"/proc/{pid}/limits").read_text().splitlines()
                          if line.startswith("Max open files"))
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        old_umask = os.umask(0)
        resource.setrlimit(resource.RLIMIT_NOFILE, (777, hard))
        try:
            out = minirun(["exec", name, "sh", "-c", "umask; ulimit -n"], check=0).stdout.split()
            started = minirun(["run", "--rm", "--network", "none", IMAGE, "sh", "-c", "umask"], check=0)
        finally:
            os.umask(old_umask)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert pid1_files != "777"
        assert out == ["0022", pid1_files]
        assert started.stdout.split() == ["0022"], "PID 1 too: not the caller's umask"


def in_mount_namespace(pid1: int) -> list[int]:
    """Host pids of the processes in PID 1's mount namespace, PID 1 excepted (with --pid=host it
    has no PID namespace of its own; its mount namespace is always its own)."""
    ns = os.readlink(f"/proc/{pid1}/ns/mnt")
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != pid1:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry}/ns/mnt") == ns and process_exists(int(entry)):
                    found.append(int(entry))
    return found


@pytest.mark.parametrize("crash", [False, True], ids=["rm", "monitor-killed"])
def test_exec_processes_die_with_a_container_without_a_pid_namespace(minirun: Tier, names: Callable[[], str],
                                                                      crash: bool) -> None:
    """Attack review of issue 11: with --pid=host no PID namespace ends what exec started, and
    rootless on this host there is no cgroup to kill either: `exec -d` outlived `rm -f`. Now it
    dies with the container as in docker and podman (rootful: the cgroup; rootless:
    stragglers.kill), a shell's background child too (no death signal reaches it), and
    also when the monitor was SIGKILLed first (a crash of minirun: `rm -f` finds them then)."""
    name = names()
    minirun(["run", "-d", "--name", name, "--pid=host", "--network", "none", IMAGE, "sleep", "300"], check=0)
    try:
        found = minirun.inspect(name)
        pid1 = found["State"]["Pid"]
        minirun(["exec", "-d", name, "sh", "-c", "sleep 1003 & exec sleep 1004"], check=0)
        foreground = minirun.popen(["exec", name, "sleep", "1005"])
        inside = wait_for(lambda: len(p := in_mount_namespace(pid1)) == 3 and p,
                          what="the three exec'd sleeps")
        if crash:
            record = json.loads((minirun.state_dir / f"{found['Id']}.json").read_text())
            os.kill(record["monitor_pid"], signal.SIGKILL)
            wait_for(lambda: not process_exists(pid1), timeout=10, what="PID 1 to die with its monitor")
        minirun(["rm", "-f", name], check=0)
        for p in inside:
            wait_for(lambda p=p: not process_exists(p), timeout=10, what=f"exec'd process {p} to die")
        assert foreground.wait(timeout=30) == 137
    finally:
        minirun(["rm", "-f", name], timeout=60)


def chrooted(pid: int, where: str) -> bool:
    """`pid` runs sleep 1006 with `where` (in its container) as its root."""
    with contextlib.suppress(OSError):
        return (Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:2] == [b"1006"]
                and os.readlink(f"/proc/{pid}/root") == where)
    return False


@pytest.mark.parametrize("where", ["/tmp/r", "/tmp/r/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z"],
                         ids=["chroot", "deep-chroot"])
def test_exec_processes_that_chroot_die_with_a_container_without_a_pid_namespace(
        minirun: Tier, names: Callable[[], str], where: str) -> None:
    """Attack on stragglers.kill: CAP_SYS_CHROOT is in the default set, and a process
    that chroots has another /proc/PID/root, where etc/hostname is not the bundle's file. It is
    still in the container's mount namespace (chroot(2) changes no namespace); it must still die
    with the container, however deep its new root."""
    name = names()
    inside: list[int] = []
    minirun(["run", "-d", "--name", name, "--pid=host", "--network", "none", IMAGE, "sleep", "300"], check=0)
    try:
        pid1 = minirun.inspect(name)["State"]["Pid"]
        minirun(["exec", "-d", name, "sh", "-c",
                 f"mkdir -p {where} && cp -a /bin {where}/ && exec chroot {where} /bin/sleep 1006"], check=0)
        inside += wait_for(lambda: [p for p in in_mount_namespace(pid1) if chrooted(p, where)],
                           what="the chrooted sleep")
        minirun(["rm", "-f", name], check=0)
        wait_for(lambda: not process_exists(inside[0]), timeout=10, what="the chrooted process to die")
    finally:
        minirun(["rm", "-f", name], timeout=60)
        for p in inside:  # (before the fix it lived on)
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)


HOPS = 5000  # the hopper gives up after so many pids: its zombies wait for the host's init to reap them


def hopped(beat: Path) -> tuple[int, int]:
    """(process group, pids so far) from the hopper's beat file; (0, 0) before its first pid."""
    with contextlib.suppress(OSError, ValueError):
        group, count = beat.read_text().split()
        return int(group), int(count)
    return 0, 0


def probes_in_group(group: int) -> list[int]:
    """The live escape_probe processes of process group `group` (not a list of pids taken before:
    a fast fork stream wraps pids around, pid_max may be 32768)."""
    members = []
    for entry in [e for e in os.listdir("/proc") if e.isdigit()]:
        with contextlib.suppress(OSError, IndexError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            if "(escape_probe)" in stat and int(fields[2]) == group and fields[0] != "Z":
                members.append(int(entry))
    return members


def end_hopper(group: int) -> None:
    """Whatever stragglers.kill did: SIGKILL the hopper's process group until no process of it is
    alive. One kill(2) of a group reaches every member: a fork the signal meets is restarted
    (kernel/fork.c, copy_process), so no successor slips out, as it may from a kill of one pid."""
    def alive() -> list[int]:
        return probes_in_group(group)
    for _ in range(200):
        if not alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        time.sleep(0.05)
    raise AssertionError(f"the hopper lives on: process group {group}, {alive()}")


@pytest.mark.parametrize("usec", [2000, 0], ids=["every-2ms", "flat-out"])
def test_exec_processes_that_hop_pids_die_with_a_container_without_a_pid_namespace(
        minirun: Tier, names: Callable[[], str], escape_probe_dir: Path, shared_dir: Path, usec: int) -> None:
    """Attack on stragglers.kill: one look at /proc misses a process that keeps starting its
    successor and exiting (each one at a new pid, after the list was read). It counts its pids in
    a file: the count must stop at `rm -f`, before the hopper's own budget (HOPS: it gives up by
    itself, so that a kill that failed leaves no hopper behind; and end_hopper ends it anyway)."""
    name = names()
    shared_dir.chmod(0o777)
    beat = shared_dir / "beat"
    minirun(["run", "-d", "--name", name, "--pid=host", "--network", "none",
             "-v", f"{escape_probe_dir}:/probe:ro", "-v", f"{shared_dir}:/beat", IMAGE, "sleep", "300"],
            check=0)
    try:
        minirun(["exec", "-d", name, "/probe/escape_probe", "hop", str(usec), str(HOPS), "/beat/beat"],
                check=0)
        wait_for(lambda: hopped(beat)[1] > 0, what="the hopping process to count")
        minirun(["rm", "-f", name], check=0)
        _, stopped_at = hopped(beat)
        time.sleep(0.5)
        assert stopped_at < HOPS, "it gave up by itself before rm -f: nothing was shown"
        assert hopped(beat)[1] == stopped_at, "the hopping process lives on"  # (before the fix it did)
    finally:
        try:
            minirun(["rm", "-f", name], timeout=60)
        finally:
            if group := hopped(beat)[0]:
                end_hopper(group)


def threads_alive(pid: int) -> list[int]:
    """The threads of `pid` not yet ended (its leader may have: its thread group lives on)."""
    alive = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, IndexError):
                if Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX":
                    alive.append(int(tid))
    return alive


def leaderless(pid1: int) -> list[int]:
    """Host pids of escape_probe processes whose main thread has ended while another of their
    threads is in PID 1's mount namespace (seen through /proc/PID/task/TID: /proc/PID shows no
    namespace once the leader has ended)."""
    ns = os.readlink(f"/proc/{pid1}/ns/mnt")
    found = []
    for entry in [e for e in os.listdir("/proc") if e.isdigit()]:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{entry}/comm").read_text().strip() != "escape_probe":
                continue
            tasks = [f"/proc/{entry}/task/{tid}" for tid in threads_alive(int(entry))]
            if any(os.readlink(f"{task}/ns/mnt") == ns for task in tasks):
                found.append(int(entry))
    return found


def test_exec_processes_whose_main_thread_ended_die_with_a_container_without_a_pid_namespace(
        minirun: Tier, names: Callable[[], str], escape_probe_dir: Path) -> None:
    """Attack on stragglers.kill: a process whose main thread ends with exit(2) (not
    exit_group(2)) lives on in its other threads, and /proc still lists it; but /proc/PID/ns/mnt
    and /proc/PID/root are the leader's, gone with it (ENOENT). It must still die with the
    container: its live threads show where it is (/proc/PID/task/TID)."""
    name = names()
    inside: list[int] = []
    minirun(["run", "-d", "--name", name, "--pid=host", "--network", "none",
             "-v", f"{escape_probe_dir}:/probe:ro", IMAGE, "sleep", "300"], check=0)
    try:
        pid1 = minirun.inspect(name)["State"]["Pid"]
        minirun(["exec", "-d", name, "/probe/escape_probe", "leader-exit", "120"], check=0)
        inside += wait_for(lambda: leaderless(pid1), what="the process whose main thread ended")
        minirun(["rm", "-f", name], check=0)
        wait_for(lambda: not threads_alive(inside[0]), timeout=10, what="its last thread to die")
    finally:
        try:
            minirun(["rm", "-f", name], timeout=60)
        finally:
            for p in inside:  # (before the fix it lived on, until its own 120 s were up)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)



SWARM = 2500  # more than twice a user session's usual soft RLIMIT_NOFILE (1024, systemd's default)


@contextlib.contextmanager
def open_files_limit(soft: int) -> Iterator[None]:
    """What minirun starts meanwhile runs with at most `soft` open files (RLIMIT_NOFILE's soft
    limit, inherited through fork and execve), as in a user's session; the suite's own is higher."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, old[1]), old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


def process_group(pids: list[int]) -> int:
    """The process group of the first of `pids` still there (the swarm's briefest ones are gone)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            return os.getpgid(pid)
    raise AssertionError(f"none of {len(pids)} processes is left")


def swarm_in(pid1: int) -> list[int]:
    """The processes in PID 1's mount namespace, once the swarm is all there."""
    found = in_mount_namespace(pid1)
    return found if len(found) > SWARM else []


def test_exec_processes_that_outnumber_the_sweeps_file_descriptors_die_with_a_container_without_pid_ns(
        minirun: Tier, names: Callable[[], str], escape_probe_dir: Path) -> None:
    """Attack on stragglers.kill: a sweep that holds a pidfd for each process it stops runs out
    of file descriptors (EMFILE) on SWARM sleeping processes, and fails (the monitor's, then
    rm's: `os.listdir("/proc")` needs one more) with the rest still running. All must die with
    the container at the first `rm -f`, in less than the sweep's whole time."""
    name = names()
    group = 0
    try:
        with open_files_limit(1024):  # the monitor's (its teardown sweeps first) and rm's
            minirun(["run", "-d", "--name", name, "--pid=host", "--network", "none",
                     *([] if minirun.rootless else ["--pids-limit=-1"]),  # (rootless: no cgroup, no limit)
                     "-v", f"{escape_probe_dir}:/probe:ro", IMAGE, "sleep", "300"], check=0)
            pid1 = minirun.inspect(name)["State"]["Pid"]
            minirun(["exec", "-d", name, "/probe/escape_probe", "swarm", str(SWARM), "90"], check=0)
            inside = wait_for(lambda: swarm_in(pid1), timeout=60, what=f"{SWARM} processes of the swarm")
            group = process_group(inside)
            began = time.monotonic()
            minirun(["rm", "-f", name], check=0, timeout=60)
            took = time.monotonic() - began
        left = probes_in_group(group)
        assert not left, f"{len(left)} processes of the container live on ({left[:5]}...)"
        assert took < 8, f"rm -f took {took:.1f} s"
    finally:
        try:
            minirun(["rm", "-f", name], timeout=60)
        finally:
            if group:
                end_hopper(group)


def test_exec_processes_left_stopped_by_a_killed_sweep_die_at_the_next_rm(
        minirun: Tier, names: Callable[[], str]) -> None:
    """Attack by killing minirun: the sweep (stragglers.kill) stops each process it finds and kills
    them at the end of its round; SIGKILLed between the two, it leaves them stopped. The next
    `rm -f` must still end them (a stopped process is still in the container's namespace)."""
    name = names()
    inside: list[int] = []
    minirun(["run", "-d", "--name", name, "--pid=host", "--network", "none", IMAGE, "sleep", "300"], check=0)
    try:
        pid1 = minirun.inspect(name)["State"]["Pid"]
        minirun(["exec", "-d", name, "sh", "-c", "sleep 1009 & exec sleep 1009"], check=0)
        inside += wait_for(lambda: (lambda found: found if len(found) == 2 else [])(in_mount_namespace(pid1)),
                           what="the two sleeps")
        for p in inside:  # as a sweep SIGKILLed in the middle of its round leaves them
            os.kill(p, signal.SIGSTOP)
        minirun(["rm", "-f", name], check=0)
        for p in inside:
            wait_for(lambda p=p: not process_exists(p), timeout=10, what=f"stopped process {p} to die")
    finally:
        try:
            minirun(["rm", "-f", name], timeout=60)
        finally:
            for p in inside:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
