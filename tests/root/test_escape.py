"""The escape battery: from inside a container, try what would reach the host, rootful and rootless.

Every test first shows the attempt *works* without the protection under test (all capabilities,
no seccomp, no masked paths: UNPROTECTED), then that it fails with the defaults. A few actions
need capabilities in the host's *initial* user namespace, which no container ever has, not even
an unprotected one: for those the baseline is the same probe run by root on the host, which
proves the probe does what it says (and the defaults add seccomp as a second wall).

The busybox image has no compiler and lacks most tools, so tests/escape_probe.c is built
statically and bind-mounted read-only into the container at /probe.
"""

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import IMAGE, Tier

UNPROTECTED = ["--cap-add", "ALL", "--security-opt", "seccomp=unconfined",
               "--security-opt", "systempaths=unconfined"]
PROBE = "/probe/escape_probe"


@pytest.fixture(scope="module")
def probe_dir(escape_probe_dir: Path) -> Path:
    """The static probe (tests/escape_probe.c), in a directory the rootless test user can read."""
    return escape_probe_dir


def probe(minirun: Tier, probe_dir: Path, action: str, *flags: str, arg: str = "") -> str:
    """Run the probe in a fresh container; its verdict: "ok" or "errno NAME"."""
    result = minirun(["run", "--rm", "--network", "none", "-v", f"{probe_dir}:/probe:ro", *flags, IMAGE,
                      PROBE, action, *([arg] if arg else [])], check=0)
    return result.stdout.strip()


def on_host(probe_dir: Path, action: str, arg: str = "") -> str:
    """The same probe run by root on the host: what a process with every privilege gets."""
    result = subprocess.run([str(probe_dir / "escape_probe"), action, *([arg] if arg else [])],
                            capture_output=True, text=True, timeout=30, check=True)
    return result.stdout.strip()


# (action, argument, what the defaults give): denied by seccomp (EPERM), except clone3 (ENOSYS,
# so that libc falls back to clone, whose flags seccomp can check).
BLOCKED = [
    ("mount", "", "errno EPERM"),
    ("umount", "/etc/hostname", "errno EPERM"),
    ("unshare-user", "", "errno EPERM"),
    ("unshare-net", "", "errno EPERM"),
    ("setns", "/proc/self/ns/net", "errno EPERM"),
    ("pivot_root", "", "errno EPERM"),
    ("add_key", "", "errno EPERM"),
    ("keyctl", "", "errno EPERM"),
    ("perf_event_open", "", "errno EPERM"),
    ("reboot", "", "errno EPERM"),
    ("clone-newns", "", "errno EPERM"),
    ("clone3", "", "errno ENOSYS"),
    ("socket-alg", "", "errno EPERM"),
    ("socket-vsock", "", "errno EPERM"),
    # The same socket through io_uring's IORING_OP_SOCKET, which seccomp never sees: io_uring_setup
    # itself must be refused (Docker's profile since 25.0).
    ("io_uring-socket-vsock", "", "errno EPERM"),
    ("personality-norandom", "", "errno EPERM"),
]

# Refused by the kernel to every user namespace (the capability must be held in the initial
# one), so even UNPROTECTED gets EPERM: the baseline is root on the host. kexec_load and
# init_module (CAP_SYS_BOOT, CAP_SYS_MODULE) are here too: a distribution kernel (the VM tier's
# Debian 6.1) has both; a kernel built without them says ENOSYS, to root on the host as well.
NEEDS_INITIAL_NAMESPACE = [("bpf", ""), ("swapon", ""), ("mknod-block", "/tmp/minirun-probe-blk"),
                           ("kexec_load", ""), ("init_module", "")]


@pytest.mark.parametrize(("action", "arg", "expected"), BLOCKED, ids=[b[0] for b in BLOCKED])
def test_blocked_by_default(minirun: Tier, probe_dir: Path, action: str, arg: str, expected: str) -> None:
    unprotected = probe(minirun, probe_dir, action, *UNPROTECTED, arg=arg)
    # "ok", or the kernel's own answer about the arguments (EINVAL for reboot's CAD_OFF in a PID
    # namespace, ENOSYS where this kernel lacks kexec or modules, EAFNOSUPPORT for a missing
    # socket family): anything but the refusal we test for means the call got through.
    assert unprotected not in ("errno EPERM", expected), f"{action} refused even unprotected: {unprotected}"
    assert probe(minirun, probe_dir, action, arg=arg) == expected


@pytest.mark.parametrize(("action", "arg"), NEEDS_INITIAL_NAMESPACE,
                         ids=[name for name, _ in NEEDS_INITIAL_NAMESPACE])
def test_blocked_for_every_container(minirun: Tier, probe_dir: Path, action: str, arg: str) -> None:
    try:
        on_the_host = on_host(probe_dir, action, arg)
        assert on_the_host != "errno EPERM", "host root can do it"
    finally:
        if arg:
            Path(arg).unlink(missing_ok=True)
    missing = on_the_host == "errno ENOSYS"  # not in this kernel at all
    assert probe(minirun, probe_dir, action, *UNPROTECTED, arg=arg) == ("errno ENOSYS" if missing
                                                                          else "errno EPERM")
    assert probe(minirun, probe_dir, action, arg=arg) == "errno EPERM"  # the filter answers first


def test_ordinary_calls_still_work(minirun: Tier, probe_dir: Path) -> None:
    # The filter is an allow list: threads, fork, unix sockets and plain personality pass.
    for action in ("clone-thread", "socket-unix", "personality-linux"):
        assert probe(minirun, probe_dir, action) == "ok", action


def test_net_raw_is_kept_as_docker_does(minirun: Tier, probe_dir: Path) -> None:
    # The choice (README, Security): CAP_NET_RAW stays, as in docker, because busybox's ping (the
    # labs' image) only knows raw ICMP sockets; podman's way (drop it, set ping_group_range) would
    # break it. The price is AF_PACKET on the container's own eth0; --cap-drop NET_RAW closes it.
    assert probe(minirun, probe_dir, "socket-packet") == "ok"
    assert probe(minirun, probe_dir, "socket-packet", "--cap-drop", "NET_RAW") == "errno EPERM"


def sh(minirun: Tier, script: str, *flags: str) -> "subprocess.CompletedProcess[str]":
    return minirun(["run", "--rm", "--network", "none", *flags, IMAGE, "sh", "-c", script])


@pytest.fixture
def data_dir(minirun: Tier) -> Iterator[Path]:
    """A host directory owned by the tier's container root, so that the container may write."""
    path = Path(tempfile.mkdtemp(prefix="minirun-escape-data-"))
    try:
        os.chown(path, *minirun.container_root)
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_read_only_volume_cannot_be_remounted_writable(minirun: Tier, data_dir: Path) -> None:
    # Found while building minirun: root in its user namespace could `mount -o remount,rw` a
    # `-v ...:ro` volume and write to the host. It needs CAP_SYS_ADMIN and mount(2).
    script = "mount -o remount,rw,bind /data && echo x > /data/written"
    unprotected = sh(minirun, script, *minirun.shared, "-v", f"{data_dir}:/data:ro", "--cap-add", "SYS_ADMIN",
                     "--security-opt", "seccomp=unconfined")
    assert unprotected.returncode == 0, unprotected.stderr
    (data_dir / "written").unlink()
    result = sh(minirun, script, *minirun.shared, "-v", f"{data_dir}:/data:ro")
    assert result.returncode != 0
    assert not (data_dir / "written").exists()


def test_setuid_program_planted_in_a_volume_gives_no_privilege(minirun: Tier, probe_dir: Path,
                                                                 data_dir: Path) -> None:
    # One container (root inside) leaves a setuid-root program in a shared -v directory; another
    # container's unprivileged user runs it. -v mounts are nosuid (and nodev) unless asked, as
    # podman's: the bit is ignored. With `:suid` the same program does run as root: the baseline.
    # (One range for both, as the shared -v of one user's containers: with a range each, the file
    # is not even the other one's root's; test_userns_auto.py.)
    sh(minirun, f"cp {PROBE} /data/planted && chmod 4755 /data/planted", *minirun.shared,
       "-v", f"{probe_dir}:/probe:ro", "-v", f"{data_dir}:/data")
    assert (data_dir / "planted").stat().st_mode & 0o4000, "the setuid bit is on the host file"
    asked = sh(minirun, "/data/planted euid", *minirun.shared, "--user", "1000",
               "-v", f"{data_dir}:/data:suid")
    assert asked.stdout == "euid 0\n", asked.stderr
    result = sh(minirun, "/data/planted euid; grep ' /data ' /proc/mounts", *minirun.shared, "--user", "1000",
                "-v", f"{data_dir}:/data")
    assert result.stdout.split("\n")[0] == "euid 1000", result.stderr
    assert "nosuid" in result.stdout and "nodev" in result.stdout


def test_proc_sys_is_read_only(minirun: Tier) -> None:
    # net.* belong to the container's network namespace: its root may write them, whatever the
    # id mapping. kernel.hostname belongs to its UTS namespace, but the file is owned by the host's
    # root, so only a container whose root *is* host root (rootful --userns=host) may write it.
    # In both cases only the read-only mount of /proc/sys (and CAP_SYS_ADMIN) stops the write.
    targets = [("/proc/sys/net/ipv4/ip_default_ttl", "99")]
    extra = [] if minirun.rootless else ["--userns=host"]
    if not minirun.rootless:
        targets.append(("/proc/sys/kernel/hostname", "escaped"))
    for path, value in targets:
        script = f"echo {value} > {path} && cat {path}"
        unprotected = sh(minirun, script, *UNPROTECTED, *extra)
        assert unprotected.returncode == 0 and unprotected.stdout == f"{value}\n", unprotected.stderr
        result = sh(minirun, script, *extra)
        assert result.returncode != 0 and "Read-only file system" in result.stderr, path
    assert sh(minirun, "echo escaped > /proc/sys/kernel/hostname").returncode != 0


def test_sys_is_read_only(minirun: Tier) -> None:
    # sysfs is mounted read-only; with CAP_SYS_ADMIN and mount(2) the mount could be made writable.
    script = "mount -o remount,bind,rw /sys && echo remounted"
    assert sh(minirun, script, *UNPROTECTED).stdout == "remounted\n"
    result = sh(minirun, "mount -o remount,bind,rw /sys; echo 1 > /sys/kernel/profiling")
    assert result.returncode != 0 and "Read-only file system" in result.stderr


def test_masked_paths(minirun: Tier) -> None:
    # /proc/kcore (the host's memory) is masked too where the kernel has it; this VM's has none.
    masked = [p for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug")
              if os.path.exists(p)]
    script = "".join(f"grep -q ' {p} ' /proc/self/mountinfo && echo {p} $(cat {p} | wc -c); " for p in masked)
    unprotected = sh(minirun, script, *UNPROTECTED)
    assert unprotected.stdout == "", "no masks without them"
    out = sh(minirun, script + "ls /sys/firmware | wc -l").stdout.split("\n")
    assert out[:-2] == [f"{p} 0" for p in masked], "each is a mount point, and reads as empty"
    assert out[-2] == "0", "/sys/firmware is an empty tmpfs"


def test_host_process_cannot_be_seen_or_signalled(minirun: Tier) -> None:
    host = subprocess.Popen(["sleep", "600"])
    try:
        # ps to a file, then count: in a pipeline, wc may not be forked yet when ps reads /proc
        # (it was not, in the VM tier's slower guest).
        script = f"ls -d /proc/{host.pid} 2>&1; kill -0 {host.pid} 2>&1; ps -o pid > /tmp/ps; wc -l < /tmp/ps"
        result = sh(minirun, script)
        assert "No such file" in result.stdout
        assert "No such process" in result.stdout or "can't kill" in result.stdout
        assert result.stdout.strip().endswith("\n3"), "ps: its header, sh and ps"
        assert host.poll() is None, "the host process lives on"
    finally:
        host.kill()
        host.wait()


def test_host_files_unreachable_through_proc_root_and_fds(minirun: Tier) -> None:
    marker = Path(tempfile.mkdtemp(prefix="minirun-escape-marker-"))
    try:
        marker.chmod(0o755)
        held = os.open(marker, os.O_RDONLY | os.O_DIRECTORY)  # inheritable: a would-be leaked fd
        os.set_inheritable(held, True)
        try:
            proc = minirun.popen(["run", "--rm", "--network", "none", IMAGE, "sh", "-c",
                                  f"test -e /proc/1/root{marker} && echo reached; "
                                  "test -e /proc/1/root/bin/busybox && echo own-root; "
                                  "ls /proc/$$/fd; readlink /proc/$$/cwd"], pass_fds=(held,))
            out, err = proc.communicate(timeout=60)
        finally:
            os.close(held)
        assert proc.returncode == 0, err
        assert out.split("\n") == ["own-root", "0", "1", "2", "/", ""], "only 0, 1, 2, and cwd inside"
    finally:
        marker.rmdir()


def test_interpreter_unreachable_through_proc_exe(minirun: Tier, probe_dir: Path) -> None:
    # With --init, PID 1 is minirun's python: /proc/1/exe is the host's interpreter. It is not
    # dumpable, so nobody in the container may open that link, whatever its capabilities
    # (CVE-2019-5736 overwrote runc this way). A dumpable process's exe opens fine.
    script = (f"sleep 60 & {PROBE} open-ro /proc/$!/exe; {PROBE} open-ro /proc/1/exe; "
              f"{PROBE} open-rw /proc/1/exe; readlink /proc/1/exe || echo unreadable; kill $!")
    for flags in ([], UNPROTECTED):
        result = sh(minirun, script, "--init", "-v", f"{probe_dir}:/probe:ro", *flags)
        assert result.stdout.split("\n")[:4] == ["ok", "errno EACCES", "errno EACCES", "unreadable"], flags
    # Without --init, every process in the container runs a program of the image.
    out = sh(minirun, "readlink /proc/1/exe").stdout
    assert out == "/bin/busybox\n"
