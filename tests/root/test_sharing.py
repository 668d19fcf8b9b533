"""Shared namespaces (minirun/sharing.py): --pid, --ipc, --uts and --network with `host` or
`container:NAME`, which also joins that container's user namespace. Both tiers.

Also the command line around them: no abbreviated flags (`--pid` is not `--pids-limit`), one
line for a flag minirun does not have, docker's management spellings, ps/port/top.
"""

import os
import re
import tarfile
from collections.abc import Callable
from pathlib import Path

from helpers import IMAGE, Tier, container, one_line_error, read_until, wait_for

# A PID 1 that honours SIGTERM (PID 1 gets only the signals it has a handler for).
TRAPPING = ("sh", "-c", 'trap "echo got-term; exit 7" TERM; echo up; while :; do sleep 0.1; done')


def test_pid_container_sees_and_signals_the_others_pid_1(minirun: Tier, names: Callable[[], str]) -> None:
    target = names()
    with container(minirun, target, "--network", "none", cmd=TRAPPING) as (pid, monitor):
        namespace = os.readlink(f"/proc/{pid}/ns/pid")
        debug = minirun(["run", "--rm", "--network", "none", "--pid", f"container:{target}", IMAGE,
                         "sh", "-c", "ps -o pid,args; readlink /proc/1/ns/pid; kill -TERM 1"], check=0).stdout
        assert re.search(r"^\s*1 sh -c trap", debug, re.M), debug
        assert namespace in debug
        assert monitor.wait(timeout=30) == 7
        assert monitor.stdout is not None and "got-term" in monitor.stdout.read()


def test_web_server_in_the_db_containers_network_binds_port_80(minirun: Tier,
                                                               names: Callable[[], str]) -> None:
    """Seed 002: `docker run -d --name=web --net=container:db nginx`. Rootful (remapped root) and
    rootless: in db's user namespace, web's root may bind a port below 1024 in db's network."""
    db, web = names(), names()
    serve = "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 80 -h /www"
    with container(minirun, db) as (db_pid, _), \
            container(minirun, web, "--net", f"container:{db}", cmd=("sh", "-c", serve)) as (web_pid, _):
        for kind in ("net", "user"):
            assert os.readlink(f"/proc/{web_pid}/ns/{kind}") == os.readlink(f"/proc/{db_pid}/ns/{kind}")
        assert os.readlink(f"/proc/{web_pid}/ns/mnt") != os.readlink(f"/proc/{db_pid}/ns/mnt")

        def fetched() -> str:
            return minirun(["exec", db, "wget", "-q", "-O", "-", "http://127.0.0.1:80/"]).stdout

        assert wait_for(lambda: "hello-from-web" in fetched(), timeout=20, what="web's page from db")
        if not minirun.rootless:  # the remapped root: web's root is host uid 1000000, as db's
            assert Path(f"/proc/{web_pid}/uid_map").read_text() == Path(f"/proc/{db_pid}/uid_map").read_text()
            assert Path(f"/proc/{web_pid}/uid_map").read_text().split()[1] != "0"


def test_joining_an_init_container(minirun: Tier, names: Callable[[], str]) -> None:
    """--init's PID 1 is never dumpable; rootless, the join goes through its command (enter.py)."""
    target = names()
    with container(minirun, target, "--init", "--network", "none") as (pid, _):
        out = minirun(["run", "--rm", "--network", "none", "--pid", f"container:{target}", IMAGE,
                       "readlink", "/proc/self/ns/pid"], check=0).stdout
        assert out.strip() == os.readlink(f"/proc/{pid}/ns/pid")


def test_uts_host_gives_the_hosts_hostname(minirun: Tier) -> None:
    out = minirun(["run", "--rm", "--network", "none", "--uts", "host", IMAGE, "hostname"], check=0).stdout
    assert out.strip() == os.uname().nodename
    one_line_error(minirun(["run", "--rm", "--uts", "host", "-h", "other", IMAGE, "true"], check=125))


def test_ipc_container_sees_the_others_segment(minirun: Tier, names: Callable[[], str],
                                               escape_probe_dir: Path) -> None:
    donor, private = names(), names()
    make_segment = ("sh", "-c", "/probe/escape_probe shmget 4242; sleep 300")
    with container(minirun, donor, "--network", "none", "--ipc", "shareable", "-v",
                   f"{escape_probe_dir}:/probe:ro", cmd=make_segment) as (_, monitor):
        assert monitor.stdout is not None
        read_until(monitor.stdout, "ok\n")
        seen = minirun(["run", "--rm", "--network", "none", "--ipc", f"container:{donor}", IMAGE,
                        "cat", "/proc/sysvipc/shm"], check=0).stdout
        assert re.search(r"^\s*4242\s", seen, re.M), seen
        alone = minirun(["run", "--rm", "--network", "none", IMAGE, "cat", "/proc/sysvipc/shm"],
                        check=0).stdout
        assert not re.search(r"^\s*4242\s", alone, re.M), "a private IPC namespace does not see it"
    with container(minirun, private, "--network", "none"):
        # docker's rule: only a shareable IPC namespace may be joined.
        result = minirun(["run", "--rm", "--ipc", f"container:{private}", IMAGE, "true"], check=125)
        assert "shareable" in one_line_error(result)


def test_ipc_container_shares_the_donors_dev_shm(minirun: Tier, names: Callable[[], str]) -> None:
    """docker gives a container joining --ipc=container:NAME the donor's /dev/shm as well (POSIX
    shared memory is files there, shm_overview(7)): what one writes the other reads, both ways."""
    donor = names()
    with container(minirun, donor, "--network", "none", "--ipc", "shareable",
                   cmd=("sh", "-c", "echo from-donor > /dev/shm/a; echo up; sleep 300")) as (_, monitor):
        assert monitor.stdout is not None
        read_until(monitor.stdout, "up\n")
        seen = minirun(["run", "--rm", "--network", "none", "--ipc", f"container:{donor}", IMAGE, "sh", "-c",
                        "cat /dev/shm/a; echo from-joiner > /dev/shm/b; grep ' /dev/shm ' /proc/self/mounts"],
                       check=0).stdout
        assert seen.startswith("from-donor\n"), seen
        assert "nosuid,nodev,noexec" in seen, seen
        assert minirun(["exec", donor, "cat", "/dev/shm/b"], check=0).stdout == "from-joiner\n"
        alone = minirun(["run", "--rm", "--network", "none", IMAGE, "ls", "/dev/shm"], check=0).stdout
        assert alone == "", "a private IPC namespace has a /dev/shm of its own"
    # A donor's root makes its /dev/shm a symbolic link (to its /etc): the joiner is refused, and
    # gets neither that nor anything a link could lead to (a magic link of /proc, say).
    linked = names()
    swap = "umount /dev/shm && rmdir /dev/shm && ln -s /etc /dev/shm && echo up; sleep 300"
    with container(minirun, linked, "--network", "none", "--ipc", "shareable", "--cap-add", "SYS_ADMIN",
                   cmd=("sh", "-c", swap)) as (_, monitor):
        assert monitor.stdout is not None
        read_until(monitor.stdout, "up\n")
        refused = minirun(["run", "--rm", "--network", "none", "--ipc", f"container:{linked}", IMAGE, "true"],
                          check=125)
        assert "openat2(/dev/shm)" in one_line_error(refused)


def test_pid_host_sees_the_hosts_processes(minirun: Tier) -> None:
    out = minirun(["run", "--rm", "--network", "none", "--pid", "host", IMAGE, "sh", "-c",
                   "readlink /proc/self/ns/pid; echo $$"], check=0).stdout.split()
    assert out[0] == os.readlink("/proc/self/ns/pid")
    assert int(out[1]) > 1, "the shell has a host pid"


def test_pids_limit_cannot_be_spelled_pid(minirun: Tier, names: Callable[[], str]) -> None:
    """argparse would take a unique prefix: `--pid=64` set pids.max to 64."""
    assert "--pid" in one_line_error(minirun(["run", "--rm", "--pid=64", IMAGE, "true"], check=125))
    assert "unknown flag: --pids" in one_line_error(minirun(["run", "--rm", "--pids", "5", IMAGE, "true"],
                                                            check=125))
    assert "no such container" in one_line_error(minirun(["run", "--rm", "--pid=container:nope-xyz", IMAGE,
                                                          "true"], check=125))
    # Flags docker has and minirun does not: one line naming the flag.
    line = one_line_error(minirun(["run", "--restart", "always", IMAGE, "true"], check=125))
    assert "--restart" in line
    assert "--bogus" in one_line_error(minirun(["ps", "--bogus"], check=125))


def test_management_spellings_and_listing(minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    publish = ["-p", "18080:80"]
    with container(minirun, name, *publish) as (pid, _):
        ids = minirun(["container", "ls", "-q"], check=0).stdout.split()
        assert minirun.inspect(name)["Id"][:12] in ids
        table = minirun(["ps", "-f", f"name={name}"], check=0).stdout.splitlines()
        assert table[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS",
                                    "NAMES"]
        assert len(table) == 2 and re.search(r"Up \S+( seconds?)?", table[1]), table
        assert "0.0.0.0:18080->80/tcp" in table[1]
        out = minirun(["ps", "--format", "{{.Names}}\\t{{.Status}}", "-f", f"name={name}"], check=0).stdout
        assert re.fullmatch(rf"{name}\tUp .+\n", out), out
        assert minirun(["ps", "-a", "-q", "-f", "status=exited", "-f", f"name={name}"], check=0).stdout == ""
        assert minirun(["port", name], check=0).stdout == "80/tcp -> 0.0.0.0:18080\n"
        assert minirun(["port", name, "80"], check=0).stdout == "0.0.0.0:18080\n"
        minirun(["exec", "-d", name, "sleep", "301"], check=0)
        top = minirun(["top", name], check=0).stdout.splitlines()
        assert top[0].split()[:3] == ["UID", "PID", "PPID"]
        assert {str(pid)} <= {line.split()[1] for line in top[1:]} and any("sleep 301" in t for t in top)
        minirun(["container", "inspect", name], check=0)
        assert minirun(["container", "export", "-o", "/dev/null", name]).returncode == 0
        assert Path("/dev/null").is_char_device(), "a device is written to, never replaced"
    exited = names()
    minirun(["run", "--name", exited, "--network", "none", IMAGE, "sh", "-c", "exit 3"], check=3)
    row = minirun(["ps", "-a", "-f", f"name={exited}", "--format", "{{.Status}}"], check=0).stdout
    assert re.fullmatch(r"Exited \(3\) (Less than a second|\d+ seconds?) ago\n", row), row
    minirun(["container", "rm", exited], check=0)
    assert "image ls" not in one_line_error(minirun(["container", "nope"], check=125))
    assert "busybox" in minirun(["image", "ls"], check=0).stdout


def test_seed_004_debug_container_workflow(minirun: Tier, names: Callable[[], str], shared_dir: Path) -> None:
    """Seed 004, as a user types it: a detached web server, exec into it, look at it from the
    host, a debug container in its PID and network namespaces, then `container export`."""
    web = names()
    run = minirun(["run", "-d", "--name", web, IMAGE, "sh", "-c",
                   "mkdir /www && echo seed-004 > /www/index.html && exec httpd -f -p 80 -h /www"], check=0)
    try:
        assert re.fullmatch(r"[0-9a-f]{64}\n", run.stdout), run.stdout
        pid = int(minirun(["inspect", "-f", "{{.State.Pid}}", web], check=0).stdout)
        minirun(["exec", web, "touch", "new_test_file"], check=0)
        assert "new_test_file" in os.listdir(f"/proc/{pid}/root")
        debug = minirun(["run", "--rm", "--pid", f"container:{web}", "--network", f"container:{web}", IMAGE,
                         "sh", "-c", "ps -o pid,args; wget -q -O - http://127.0.0.1/"], check=0).stdout
        assert re.search(r"^\s*1 httpd -f -p 80", debug, re.M) and "seed-004" in debug, debug
        shared_dir.chmod(0o777)
        minirun(["container", "export", "-o", str(shared_dir / "web.tar"), web], check=0)
        with tarfile.open(shared_dir / "web.tar") as tar:
            assert "new_test_file" in {name.lstrip("./") for name in tar.getnames()}
    finally:
        minirun(["rm", "-f", web], check=0)


# --- found by the attack review of issue 11 --------------------------------------------------------


def test_without_a_pid_namespace_of_its_own_exec_kill_and_stop_still_reach_it(
        minirun: Tier, names: Callable[[], str]) -> None:
    """--pid=host and --pid=container:NAME: PID 1 is not pid 1 anywhere. Rootless without a
    cgroup, being the live monitor's child is what proves it the container's; exec, kill, stop
    and rm -f used to say "not running" (or nothing) and leave it running."""
    target, joiner, on_host = names(), names(), names()
    with container(minirun, target, "--network", "none"), \
            container(minirun, joiner, "--network", "none", "--pid", f"container:{target}") as (_, joined), \
            container(minirun, on_host, "--network", "none", "--pid", "host") as (host_pid, hosted):
        for name in (joiner, on_host):
            assert minirun(["exec", name, "true"]).returncode == 0, name
        minirun(["kill", joiner], check=0)
        assert joined.wait(timeout=30) == 137
        minirun(["stop", "-t", "1", on_host], check=0)
        assert hosted.wait(timeout=30) == 143, "sleep is not a namespace's PID 1 here: TERM ends it"
        assert wait_for(lambda: not os.path.exists(f"/proc/{host_pid}"), timeout=10, what="its PID 1 gone")


def test_joining_a_userns_host_container_is_refused(root_minirun: Tier, names: Callable[[], str]) -> None:
    """A remapped container joining one that runs with --userns=host would run as the host's root
    (its uid_map read `0 0 4294967295`)."""
    donor = names()
    with container(root_minirun, donor, "--userns", "host", "--network", "none"):
        result = root_minirun(["run", "--rm", "--network", f"container:{donor}", IMAGE,
                               "cat", "/proc/self/uid_map"])
        assert result.returncode == 125, result.stdout
        assert "--userns=host" in one_line_error(result)


def test_pid_host_cannot_signal_other_containers(root_minirun: Tier, names: Callable[[], str]) -> None:
    """Every --userns=shared container's root is one host uid: with the host's PIDs, one could
    SIGKILL the others' processes (kill(2) compares host uids). A range of its own (the default)
    makes that EPERM."""
    result = root_minirun(["run", "--rm", "--network", "none", "--pid", "host", "--userns", "shared",
                           IMAGE, "true"])
    assert result.returncode == 125 and "--userns=shared" in one_line_error(result)
    victim = names()
    with container(root_minirun, victim, "--network", "none") as (pid, monitor):
        tried = root_minirun(["run", "--rm", "--network", "none", "--pid", "host", IMAGE,
                              "sh", "-c", f"kill -9 {pid} && echo killed"])
        assert "killed" not in tried.stdout and tried.returncode != 0, tried.stdout
        assert monitor.poll() is None and os.path.exists(f"/proc/{pid}"), "the other container still runs"


def test_pid_host_exit_is_recorded_while_a_child_keeps_writing(root_minirun: Tier,
                                                               names: Callable[[], str]) -> None:
    """With the host's PID namespace, PID 1's exit kills nothing else: a child that keeps writing
    kept the container "Up" and `wait` hanging for good. Its exit code is recorded all the same,
    and the teardown ends the child with the cgroup. (Rootful: rootless without a cgroup has
    nothing that finds the child; its own PID namespace, the default, is what ends it there.)"""
    minirun, name = root_minirun, names()
    minirun(["run", "-d", "--name", name, "--network", "none", "--pid", "host", IMAGE,
             "sh", "-c", "(while :; do echo x; sleep 0.5; done) & sleep 1; exit 3"], check=0)
    try:
        assert minirun(["wait", name], check=0, timeout=60).stdout == "3\n"
    finally:
        minirun(["rm", "-f", name], check=0)


def test_a_donor_cannot_ptrace_the_helpers_that_join_it(minirun: Tier, names: Callable[[], str],
                                                        escape_probe_dir: Path) -> None:
    """A joining container is cloned by a helper that joins the donor's user namespace (and, for
    --ipc=container:NAME, one more that clones its /dev/shm). Each is the host's root (rootless,
    the user) with minirun's fds (the user's terminal, the joiner's -v clones), no seccomp filter
    and every capability in a namespace where the donor's root has CAP_SYS_PTRACE: a dumpable one
    was seized by a donor that sees the host's PIDs (--pid=host) in one of 1-3 joins. ptrace(2),
    "Ptrace access mode checking": not dumpable before the setns(2), only CAP_SYS_PTRACE in the
    host's user namespace may. (Seizing the joiner's own command after its execve is allowed:
    it joined the donor's user namespace.)"""
    donor = names()
    hunt = f"/probe/escape_probe ptrace-newcomers 200 {0 if minirun.rootless else 65534}"
    with container(minirun, donor, "--network", "none", "--pid", "host", "--ipc", "shareable",
                   "--cap-add", "SYS_PTRACE", "-v", f"{escape_probe_dir}:/probe:ro",
                   cmd=("sh", "-c", f"{hunt} & {hunt}; sleep 300")):
        for attempt in range(30):
            joined = minirun(["run", "--rm", "--network", "none", "--ipc", f"container:{donor}", IMAGE,
                              "echo", "joined"], check=0)
            assert joined.stdout == "joined\n", joined.stderr
            seized = [line for line in minirun(["logs", donor], check=0).stdout.splitlines()
                      if "(python" in line or "(minirun" in line]
            assert not seized, f"join {attempt + 1}: the donor seized minirun's helper: {seized}"


def test_a_donor_that_holds_the_joiners_exit_does_not_hang_its_monitor(
        minirun: Tier, names: Callable[[], str], escape_probe_dir: Path) -> None:
    """A joiner is in the donor's user namespace, where the donor's root may ptrace it (with
    --pid=host it sees it). A tracer that never waits holds the joiner's PID 1, once it has
    exited, as a zombie its monitor cannot reap (ptrace(2): the tracer is told first): the
    monitor waited for good, `wait` with it, and the exit code was lost. The pidfd says it has
    exited, /proc/PID/stat (field 52, exit_code) says how (monitor.held_exit_code)."""
    donor, joiner = names(), names()
    # PID 1 gets no signal (a tracee stops for each, until its tracer lets it go): it waits on
    # a fifo nobody writes, then exits by itself.
    ends = "mkfifo /tmp/never; read -t 4 line <> /tmp/never; exit 5"
    with container(minirun, donor, "--network", "none", "--pid", "host", "--ipc", "shareable",
                   "--cap-add", "SYS_PTRACE", "-v", f"{escape_probe_dir}:/probe:ro"):
        minirun(["run", "-d", "--name", joiner, "--network", "none", "--ipc", f"container:{donor}", IMAGE,
                 "sh", "-c", ends], check=0)
        try:
            pid = minirun.inspect(joiner)["State"]["Pid"]
            hold = f"/probe/escape_probe ptrace-hold {pid} > /dev/shm/held"
            minirun(["exec", "-d", donor, "sh", "-c", hold], check=0)
            wait_for(lambda: minirun(["exec", donor, "cat", "/dev/shm/held"]).stdout == "ok\n", timeout=10,
                     what="the donor to seize the joiner's PID 1")
            assert minirun(["wait", joiner], check=0, timeout=60).stdout == "5\n"
        finally:
            minirun(["rm", "-f", joiner], timeout=60)
