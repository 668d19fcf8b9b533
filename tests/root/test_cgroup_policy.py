"""What every rootful container's cgroup gets without asking: runc's device allowlist (v1 files and
a v2 device program), podman's default pids limit, and its own place in systemd's v1 hierarchy."""

import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cgroup_helpers import FREEZER_KINDS, delegated_tier, frozen_parent, with_env
from helpers import IMAGE, Tier, describe, one_line_error, read_until, wait_for

from minirun import cgroups


def host_device() -> Path:
    """A device of this host that root can read and that is not in the allowlist: the PM QoS
    interface (misc 10:259 here) reads as 4 harmless bytes. (This VM refuses even host root its disk.)"""
    path = Path("/dev/cpu_dma_latency")
    assert stat.S_ISCHR(path.stat().st_mode), "the kernel has /dev/cpu_dma_latency (CONFIG_PM)"
    return path


@pytest.fixture
def sync_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="minirun-test-sync-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


READ_DISK = "head -c 4 /disk | wc -c"


def test_devices_outside_the_allowlist_cannot_be_opened(root_minirun: Tier) -> None:
    # Host root (--userns=host) with a host device bound in with `dev`: only the device policy
    # stands between it and the device. Host root itself can read it (the baseline).
    disk = host_device()
    with open(disk, "rb") as f:
        assert len(f.read(4)) == 4
    result = root_minirun(["run", "--rm", "--network", "none", "--userns=host", "-v", f"{disk}:/disk:dev",
                           IMAGE, "sh", "-c", f"{READ_DISK}; cat /dev/null && echo null-ok"])
    assert result.stdout.split() == ["0", "null-ok"], result.stderr
    assert "Operation not permitted" in result.stderr


@pytest.mark.cgroup1("devices")  # on pure v2 the device program below is the policy
def test_v1_devices_list_is_the_allowlist(root_minirun: Tier) -> None:
    out = root_minirun(["run", "--rm", "--network", "none", IMAGE, "cat",
                        "/sys/fs/cgroup/devices/devices.list"], check=0).stdout.splitlines()
    assert "a *:* rwm" not in out
    assert out[:3] == ["c *:* m", "b *:* m", "c 1:3 rwm"] and "c 136:* rwm" in out


def test_device_program_refuses_on_its_own(root_minirun: Tier, sync_dir: Path) -> None:
    # The v2 device program, checked alone: the container waits while the host lifts the v1
    # policy of its cgroup (devices.allow "a"); the device must still be refused, now by the program.
    if not any(h.version == 2 for h in cgroups.hierarchies()):
        pytest.skip("this host has no cgroup v2 hierarchy for a device program")
    disk = host_device()
    name = root_minirun.auto_name() if root_minirun.auto_name else "devices"
    proc = root_minirun.popen(["run", "--rm", "--name", name, "--network", "none", "--userns=host",
                               "-v", f"{disk}:/disk:dev", "-v", f"{sync_dir}:/sync", IMAGE, "sh", "-c",
                               "touch /sync/ready; while [ ! -e /sync/go ]; do sleep 0.05; done; "
                               + READ_DISK])
    wait_for(lambda: (sync_dir / "ready").exists() or proc.poll() is not None, what="the container")
    pid = root_minirun.inspect(name)["State"]["Pid"]
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    v1 = [line.split(":", 2)[2] for line in lines if line.split(":")[1] == "devices"]
    if v1:
        Path(f"/sys/fs/cgroup/devices{v1[0]}/devices.allow").write_text("a")
        assert "a *:* rwm" in Path(f"/sys/fs/cgroup/devices{v1[0]}/devices.list").read_text()
    (sync_dir / "go").touch()
    out, err = proc.communicate(timeout=60)
    assert out.split() == ["0"] and "Operation not permitted" in err, (out, err)


def test_default_pids_limit_is_podmans(root_minirun: Tier) -> None:
    script = "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max"
    for flags, expected in (([], "2048"), (["--pids-limit", "100"], "100"), (["--pids-limit", "-1"], "max")):
        out = root_minirun(["run", "--rm", "--network", "none", *flags, IMAGE, "sh", "-c", script], check=0)
        assert out.stdout == f"{expected}\n", flags


@pytest.mark.cgroup1("name=systemd")
def test_systemd_hierarchy_shows_the_container_not_the_host(root_minirun: Tier) -> None:
    # The host's root of it has release_agent (what CVE-2022-0492 wrote to); a child cgroup has none.
    assert Path("/sys/fs/cgroup/systemd/release_agent").exists()
    result = root_minirun(["run", "--rm", "--network", "none", IMAGE, "ls", "/sys/fs/cgroup/systemd"],
                          check=0)
    assert result.stdout.split() == ["cgroup.clone_children", "cgroup.procs", "notify_on_release", "tasks"]


@pytest.mark.parametrize("kind", FREEZER_KINDS)
def test_a_frozen_cgroup_parent_is_one_line_and_leaves_nothing(root_minirun: Tier, names: Callable[[], str],
                                                              kind: str) -> None:
    """Attack review of issues 11/12: MINIRUN_CGROUP_PARENT below a frozen cgroup made `run` wait
    forever for a child frozen at birth. Now: refused before anything is made (cgroups.frozen,
    the check minirun-oci's cgroupsPath uses)."""
    tops = [h.mountpoint for h in cgroups.hierarchies() if h.mountpoint.is_relative_to(cgroups.CGROUP_ROOT)]
    name = names()
    with frozen_parent(tops, kind) as frozen:
        tier = with_env(root_minirun, MINIRUN_CGROUP_PARENT=frozen.parent)
        try:
            result = tier(["run", "--name", name, IMAGE, "echo", "ran"], timeout=30)
            assert result.returncode == 125, describe(tier, ["run"], result)
            assert "is frozen" in one_line_error(result) and "ran" not in result.stdout
            assert name not in root_minirun.recorded_names(), "no record is left"
            left = [p for top in tops for p in (top / frozen.parent).iterdir() if p.is_dir()]
            assert not left, f"cgroups left behind: {left}"
        finally:
            frozen.thaw()  # (before the fix: what hung there can end now)
            tier(["rm", "-f", name], timeout=30)


# The container's own cgroup subtree, as a container manager inside it (systemd, a nested
# runtime) makes one: the container's cgroup namespace shows its cgroup as "/", so a fresh v1
# mount and a cgroup2 mount are rooted there; a sub-cgroup and one below it in each, the shell
# moved into the deepest, then it waits.
NESTED = """
for v in 1 2; do
    mkdir -p /tmp/v$v
    if [ $v = 1 ]; then mount -t cgroup -o pids none /tmp/v1; else mount -t cgroup2 none /tmp/v2; fi &&
    mkdir -p /tmp/v$v/inner/deeper && echo $$ > /tmp/v$v/inner/deeper/cgroup.procs
done
grep -E '^(0|[0-9]+:pids):' /proc/self/cgroup; echo up; exec sleep 300
"""


@pytest.mark.parametrize("kind", ["rootful-userns-host", "rootless-delegated"])
def test_rm_removes_the_cgroups_a_container_made_in_its_own(request: pytest.FixtureRequest,
                                                           names: Callable[[], str], kind: str) -> None:
    """A container whose root may write its cgroup (--userns=host with CAP_SYS_ADMIN; rootless, its
    root is the user a delegated cgroup belongs to) makes cgroups inside its own and moves into
    them: `rm -f` kills it there and removes them with its own, at once (atk19: rmdir of the
    container's directory said EBUSY for 5 s a directory, `rm -f` failed with "[Errno 16] Device
    or resource busy" every time, and the record and the cgroups stayed for good)."""
    name = names()
    if kind == "rootful-userns-host":
        made_inside(request.getfixturevalue("root_minirun"), name, "--userns=host")
        return
    with delegated_tier(request.getfixturevalue("rootless_minirun")) as tier:
        made_inside(tier, name)


def made_inside(tier: Tier, name: str, *flags: str) -> None:
    proc = tier.popen(["run", "--name", name, "--network", "none", *flags, "--cap-add", "SYS_ADMIN",
                       IMAGE, "sh", "-c", NESTED])
    try:
        assert proc.stdout is not None
        inside = read_until(proc.stdout, "up\n")
        container_id = tier.inspect(name)["Id"]
        assert "/inner/deeper" in inside, inside  # it did move: the test tests something
        began = time.monotonic()
        result = tier(["rm", "-f", name])
        took = time.monotonic() - began
        assert result.returncode == 0 and took < 10, describe(tier, ["rm"], result, f"{took:.1f} s")
        assert not [p for p in Path("/sys/fs/cgroup").glob(f"**/minirun/{container_id}")]
        assert name not in tier(["ps", "-a"], check=0).stdout
    finally:
        tier(["rm", "-f", name])  # (gone already if the test passed)
        proc.kill()
        proc.wait(timeout=30)
