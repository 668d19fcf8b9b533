"""What a container looks like from inside: `minirun run busybox ...`, in both tiers.

Every test here runs twice, as root and as the unprivileged user `mrtest` (fixture `minirun`,
ids "root" and "rootless"): a container must look the same from inside whoever started it.
Select one tier with `pytest -m root` or `pytest -m rootless`.
"""

import os
import re
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import IMAGE, Tier, describe

NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")


def sh(minirun: Tier, script: str, *flags: str, check: int | None = 0) -> str:
    """Run a shell script in a fresh --rm container and return its stdout."""
    result = minirun(["run", "--rm", *flags, IMAGE, "sh", "-c", script], check=check)
    return result.stdout


def test_pid_1_hostname_and_root(minirun: Tier) -> None:
    lines = sh(minirun, "echo $$; hostname; id").splitlines()
    assert lines[0] == "1", "the command is PID 1 of its own PID namespace"
    assert lines[1] and lines[1] != socket.gethostname(), "the container has its own host name"
    assert re.fullmatch(r"[0-9a-f]{12}", lines[1]), "docker's default host name: the short container id"
    assert lines[2].startswith("uid=0(root) gid=0(root)")


def test_ps_shows_only_the_container(minirun: Tier) -> None:
    out = sh(minirun, "ps -o pid,comm")
    rows = [line.split() for line in out.splitlines()[1:]]
    pids = sorted(int(r[0]) for r in rows)
    assert pids == [1], f"only the shell, which exec'd ps, lives in this PID namespace:\n{out}"
    # The same with a child alive next to PID 1: still nothing from the host.
    out = sh(minirun, 'sleep 30 & while [ "$(cat /proc/$!/comm)" != sleep ]; do :; done; '
                      "ps -o pid,comm; kill $!")
    comms = sorted(r[1] for r in (line.split() for line in out.splitlines()[1:]))
    assert comms == ["ps", "sh", "sleep"], out


def test_all_namespaces_are_new(minirun: Tier) -> None:
    script = "for n in " + " ".join(NAMESPACES) + "; do echo $n $(readlink /proc/self/ns/$n); done"
    inside = dict(line.split() for line in sh(minirun, script).splitlines())
    assert sorted(inside) == sorted(NAMESPACES)
    for kind in NAMESPACES:
        assert re.fullmatch(rf"{kind}:\[\d+\]", inside[kind]), inside[kind]
        # The test process lives in the host's namespaces (/proc/1/ns may be unreadable, e.g.
        # when the host is itself a sandbox whose PID 1 belongs to an outer user namespace).
        assert inside[kind] != os.readlink(f"/proc/self/ns/{kind}"), f"{kind}: same as the host's"


def test_network_none_has_only_loopback_up(minirun: Tier) -> None:
    out = sh(minirun, "cat /proc/net/dev; ip -o link show", "--network", "none")
    interfaces = [line.split(":")[0].strip() for line in out.splitlines()[2:] if ":" in line
                  and not line[:1].isdigit()]
    assert interfaces == ["lo"], out
    lo = next(line for line in out.splitlines() if re.match(r"\d+: lo:", line))
    assert "UP" in lo.split("<")[1].split(">")[0].split(","), lo


def test_network_host_shares_the_host_network(minirun: Tier) -> None:
    inside = sh(minirun, "readlink /proc/self/ns/net; ls /sys/class/net", "--network", "host").split()
    # minirun runs in the test session's network namespace (tests/conftest.py): that is its host's
    assert inside[0] == f"net:[{os.stat(f'/run/netns/{minirun.netns}').st_ino}]"
    assert sorted(inside[1:]) == sorted(os.listdir("/sys/class/net"))


def test_no_host_path_is_mounted(minirun: Tier) -> None:
    mountinfo = sh(minirun, "cat /proc/self/mountinfo")
    mounts = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        mounts[fields[4]] = fields[fields.index("-") + 1]
    assert mounts.get("/") == "overlay", mountinfo
    forbidden = ["/var/lib/minirun", "/home", "/work", "/root", "/run", "/opt", str(minirun.store_dir),
                 str(Path(__file__).resolve().parents[2])]
    for target in mounts:
        assert not any(target == f or target.startswith(f + "/") for f in forbidden), (target, mountinfo)
        # What a container may see mounted: its root, the kernel's file systems and the three
        # files docker provides. Anything else (the old root, a store path) is a leak.
        allowed = target in ("/", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf") or any(
            target == top or target.startswith(top + "/") for top in ("/proc", "/dev", "/sys"))
        assert allowed, f"unexpected mount point {target} in the container:\n{mountinfo}"


def test_writes_stay_in_the_container(minirun: Tier, names: Callable[[], str]) -> None:
    marker = f"marker-{os.getpid()}-{names()}"
    name = names()
    minirun(["run", "--name", name, IMAGE, "sh", "-c", f"echo secret > /{marker}; cat /{marker}; "
             f"echo secret > /bin/{marker}"], check=0)
    container_id = minirun.inspect(name)["Id"]
    found = [Path(root) / f for root, _, files in os.walk(minirun.store_dir) for f in files if f == marker]
    assert found, "the file should be in the container's own layer while the container exists"
    for path in found:
        assert container_id in str(path), f"{path}: a container's write reached the image"
    # Another container of the same image starts from the unchanged image.
    out = sh(minirun, f"ls /{marker} /bin/{marker} 2>&1; echo rc=$?")
    assert "rc=1" in out, out
    minirun(["rm", name], check=0)
    left = [Path(root) / f for root, _, files in os.walk(minirun.store_dir) for f in files if f == marker]
    assert not left, f"rm left the container's files behind: {left}"


@pytest.fixture
def host_shm_segment() -> Iterator[tuple[int, str]]:
    """A SysV shared memory segment on the host: (shmid, key), removed afterwards."""
    out = subprocess.run(["ipcmk", "-M", "1024"], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    shmid = int(out.split(":")[1])
    try:
        table = subprocess.run(["ipcs", "-m"], capture_output=True, text=True, timeout=30, check=True).stdout
        row = next(line.split() for line in table.splitlines() if line.split()[1:2] == [str(shmid)])
        yield shmid, row[0]
    finally:
        subprocess.run(["ipcrm", "-m", str(shmid)], capture_output=True, timeout=30, check=False)


def test_host_sysv_ipc_is_invisible(minirun: Tier, host_shm_segment: tuple[int, str]) -> None:
    shmid, key = host_shm_segment
    with open("/proc/sysvipc/shm") as f:
        host_rows = [line.split() for line in f.readlines()[1:]]
    # /proc/sysvipc/shm prints the key as a signed decimal, ipcs as hex.
    assert any(int(r[0]) & 0xFFFFFFFF == int(key, 16) and int(r[1]) == shmid for r in host_rows)
    # busybox-static has no ipcs applet; /proc/sysvipc/shm is what ipcs reads, per IPC namespace.
    out = sh(minirun, "cat /proc/sysvipc/shm")
    lines = out.splitlines()
    assert lines and lines[0].split()[:2] == ["key", "shmid"], out
    assert lines[1:] == [], f"the container sees the host's shared memory:\n{out}"


def test_stdin_passes_through_with_i(minirun: Tier) -> None:
    result = minirun(["run", "--rm", "-i", IMAGE, "sh", "-c", "read a; read b; echo got-$a-$b"],
                     input="one\ntwo\n", check=0)
    assert result.stdout == "got-one-two\n"


def test_stdout_and_stderr_are_separate(minirun: Tier) -> None:
    result = minirun(["run", "--rm", IMAGE, "sh", "-c", "echo to-out; echo to-err >&2"], check=0)
    assert result.stdout == "to-out\n"
    assert result.stderr == "to-err\n"


def test_env_workdir_hostname(minirun: Tier) -> None:
    out = sh(minirun, 'echo "$GREETING|$EMPTY|$(pwd)|$(hostname)|$(cat /etc/hostname)"',
             "-e", "GREETING=hello world", "-e", "EMPTY=", "-w", "/tmp", "--hostname", "box1")
    assert out == "hello world||/tmp|box1|box1\n"
    # The image's PATH stays when -e adds other variables.
    assert "/bin" in sh(minirun, "echo $PATH", "-e", "X=1")


def test_user_numeric_and_by_name(minirun: Tier) -> None:
    assert sh(minirun, "id -u; id -g", "--user", "1000:1000").split() == ["1000", "1000"]
    assert sh(minirun, "id -u; id -g", "-u", "1000").split()[0] == "1000"
    out = sh(minirun, "id", "--user", "nobody")
    assert out.startswith("uid=65534(nobody) gid=65534(nogroup)"), out
    # The user applies to the process, also to what it creates.
    assert sh(minirun, "touch /tmp/f; stat -c %u:%g /tmp/f", "--user", "1000:1000").strip() == "1000:1000"


@pytest.fixture
def host_dir(minirun: Tier) -> Iterator[Path]:
    """A host directory the container's root can write to (in the rootless tier container root
    is the test user, so the directory belongs to that user)."""
    path = Path(tempfile.mkdtemp(prefix="minirun-test-bind-"))
    try:
        (path / "from-host").write_text("hello from the host\n")
        for p in (path, path / "from-host"):
            os.chown(p, *minirun.container_root)
        path.chmod(0o755)
        yield path
    finally:
        subprocess.run(["rm", "-rf", str(path)], timeout=60, check=False)


def test_bind_mount_read_write(minirun: Tier, host_dir: Path) -> None:
    out = sh(minirun, "cat /data/from-host; echo written > /data/from-ctr", *minirun.shared,
             "-v", f"{host_dir}:/data")
    assert out == "hello from the host\n"
    assert (host_dir / "from-ctr").read_text() == "written\n"
    st = (host_dir / "from-ctr").stat()
    assert (st.st_uid, st.st_gid) == minirun.container_root, "container root is this tier's (remapped) root"


def test_bind_mount_read_only(minirun: Tier, host_dir: Path) -> None:
    result = minirun(["run", "--rm", *minirun.shared, "-v", f"{host_dir}:/data:ro", IMAGE, "sh", "-c",
                      "cat /data/from-host; echo x > /data/from-ctr"])
    assert result.returncode != 0, describe(minirun, ["run", "..."], result)
    assert result.stdout == "hello from the host\n"
    assert "Read-only file system" in result.stderr
    assert not (host_dir / "from-ctr").exists()


def test_bind_mount_of_a_file_and_a_new_target(minirun: Tier, host_dir: Path) -> None:
    out = sh(minirun, "cat /etc/greeting; ls -d /new/dir/deep",
             "-v", f"{host_dir}/from-host:/etc/greeting:ro", "-v", f"{host_dir}:/new/dir/deep")
    assert out == "hello from the host\n/new/dir/deep\n"


def test_bad_volume_is_refused_before_anything_runs(minirun: Tier, host_dir: Path) -> None:
    bad_values = ("relative:/data", f"{host_dir}:relative", f"{host_dir}/missing:/data",
                  f"{host_dir}:/data:rx", f"{host_dir}:/")
    for bad in bad_values:
        result = minirun(["run", "--rm", "-v", bad, IMAGE, "echo", "ran"], check=125)
        assert "ran" not in result.stdout
