"""Rootful containers run with a remapped root: container uid 0 is an unprivileged host uid."""

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import IMAGE, Tier, read_until, wait_running

pytestmark = pytest.mark.root




def sh(tier: Tier, script: str, *flags: str) -> "subprocess.CompletedProcess[str]":
    return tier(["run", "--rm", "--network", "none", *flags, IMAGE, "sh", "-c", script])


def test_maps_and_image_files(root_minirun: Tier) -> None:
    uid, gid = root_minirun.container_root
    out = sh(root_minirun, "cat /proc/self/uid_map /proc/self/gid_map; id -u; "
             "stat -c '%u %g' /bin/busybox /etc", "--userns=shared")
    assert out.returncode == 0, out.stderr
    lines = [line.split() for line in out.stdout.splitlines()]
    assert lines[:2] == [["0", str(uid), "65536"], ["0", str(gid), "65536"]]
    assert lines[2:] == [["0"], ["0", "0"], ["0", "0"]], "image files still look root-owned (idmapped layers)"
    # By default a range of its own (test_userns_auto.py), of the same size.
    out = sh(root_minirun, "cat /proc/self/uid_map /proc/self/gid_map; id -u; stat -c '%u %g' /bin/busybox")
    lines = [line.split() for line in out.stdout.splitlines()]
    assert [line[2] for line in lines[:2]] == ["65536", "65536"] and int(lines[0][1]) != uid
    assert lines[2:] == [["0"], ["0", "0"]], "image files still look root-owned (idmapped layers)"


def test_host_sees_an_unprivileged_uid(root_minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    proc = root_minirun.popen(["run", "--name", name, "--network", "none", IMAGE, "sh", "-c",
                               "echo ready; sleep 600"])
    read_until(proc.stdout, "ready\n")
    pid = wait_running(root_minirun, name, proc)["State"]["Pid"]
    ps = subprocess.run(["ps", "-o", "uid=,gid=", "-p", str(pid)], capture_output=True, text=True, check=True)
    maps = root_minirun.inspect(name)["HostConfig"]["IDMappings"]
    assert ps.stdout.split() == [maps["UidMap"][0].split(":")[1], maps["GidMap"][0].split(":")[1]]
    assert int(ps.stdout.split()[0]) >= 65536
    os.kill(pid, signal.SIGKILL)  # then reap minirun before `rm`: it waits for its monitor to exit
    proc.communicate(timeout=30)
    root_minirun(["rm", name], check=0)


def test_bind_mount_ownership(root_minirun: Tier, shared_dir: Path) -> None:
    uid, gid = root_minirun.container_root
    secret = shared_dir / "secret"
    secret.write_text("host root only\n")
    secret.chmod(0o600)
    # Host root's files are "nobody" to a remapped root: it may not read a 0600 file nor
    # write into a directory of host root's ...
    volume = f"{shared_dir}:/data"
    result = sh(root_minirun, "ls -ln /data/secret; cat /data/secret; touch /data/new", "-v", volume)
    assert result.returncode != 0
    result = sh(root_minirun, "ls -ln /data/secret; cat /data/secret; touch /data/new", "-v", volume,
                "--userns=shared")
    assert result.returncode != 0
    assert result.stdout.split()[2:4] == ["65534", "65534"]
    assert "Permission denied" in result.stderr and not (shared_dir / "new").exists()
    # ... while --userns=host is classic docker: root is root, on the host too.
    assert sh(root_minirun, "cat /data/secret", "-v", volume, "--userns=host").stdout == "host root only\n"
    # A directory given to the remapped root is writable, and what it creates is its own.
    os.chown(shared_dir, uid, gid)
    out = sh(root_minirun, "touch /data/made && chown 1000:1000 /data/made && touch /data/root-made",
             "-v", f"{shared_dir}:/data", "--userns=shared")
    assert out.returncode == 0, out.stderr
    assert ((shared_dir / "root-made").stat().st_uid, (shared_dir / "root-made").stat().st_gid) == (uid, gid)
    assert (shared_dir / "made").stat().st_uid == uid + 1000, "container uid 1000 is host uid start + 1000"


def test_upper_layer_is_owned_by_the_remapped_root(root_minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    proc = root_minirun.popen(["run", "--name", name, "--network", "none", IMAGE, "sh", "-c",
                               "touch /root-file && chown 5:5 /bin/busybox && echo ready; sleep 600"])
    read_until(proc.stdout, "ready\n")
    item = wait_running(root_minirun, name, proc)
    uid = int(item["HostConfig"]["IDMappings"]["UidMap"][0].split(":")[1])
    upper, pid = Path(item["GraphDriver"]["Data"]["UpperDir"]), item["State"]["Pid"]
    containers = upper.parent.parent
    assert containers.stat().st_mode & 0o007 == 0 and containers.stat().st_uid == 0, \
        "no host user may pass (a container enters its own directory by fd)"
    assert (upper.parent.stat().st_mode & 0o777, upper.parent.stat().st_uid) == (0o700, uid), \
        "the container's own directory is its root's alone"
    assert (upper / "root-file").stat().st_uid == uid
    assert (upper / "bin" / "busybox").stat().st_uid == uid + 5, "copied up, then chowned"
    layers = root_minirun.store_dir / "layers"
    assert all(p.stat().st_uid == 0 for p in layers.glob("*/rootfs/bin/busybox")), "the image is untouched"
    os.kill(pid, signal.SIGKILL)  # then reap minirun before `rm`: it waits for its monitor to exit
    proc.communicate(timeout=30)
    root_minirun(["rm", name], check=0)


def test_userns_host_is_identity(root_minirun: Tier, shared_dir: Path) -> None:
    out = sh(root_minirun, "cat /proc/self/uid_map; touch /data/f", "--userns=host",
             "-v", f"{shared_dir}:/data")
    assert out.stdout.split() == ["0", "0", "4294967295"]
    assert (shared_dir / "f").stat().st_uid == 0


def test_ids_beyond_the_range_need_userns_host(root_minirun: Tier) -> None:
    result = root_minirun(["run", "--rm", "--network", "none", "--user", "70000", IMAGE, "true"], check=125)
    assert "0-65535" in result.stderr
    out = root_minirun(["run", "--rm", "--network", "none", "--userns=host", "--user", "70000", IMAGE,
                        "id", "-u"], check=0)
    assert out.stdout == "70000\n"
