"""What only the rootless tier has: the user's own id range, the user's store and records, and
no more power than the user has on the host.

These run minirun as the test user `mrtest` (tests/conftest.py), who has the subordinate range
from /etc/subuid and /etc/subgid (the README's rootless set-up line gives one).
"""

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import IMAGE, TEST_USER, Tier, read_until, subid_range

pytestmark = pytest.mark.rootless


def test_id_maps_are_the_user_and_its_range(rootless_minirun: Tier) -> None:
    out = rootless_minirun(["run", "--rm", IMAGE, "sh", "-c", "cat /proc/self/uid_map; echo --; "
                            "cat /proc/self/gid_map"], check=0).stdout
    uid_map, gid_map = ([line.split() for line in part.strip().splitlines()] for part in out.split("--"))
    uid_start, uid_count = subid_range("/etc/subuid", TEST_USER)  # type: ignore[misc]
    gid_start, gid_count = subid_range("/etc/subgid", TEST_USER)  # type: ignore[misc]
    assert uid_map == [["0", str(rootless_minirun.uid), "1"], ["1", str(uid_start), str(uid_count)]]
    assert gid_map == [["0", str(rootless_minirun.gid), "1"], ["1", str(gid_start), str(gid_count)]]


def test_chown_inside_uses_the_range(rootless_minirun: Tier) -> None:
    out = rootless_minirun(["run", "--rm", IMAGE, "sh", "-c",
                            "touch /tmp/f && chown 1000:1000 /tmp/f && ls -ln /tmp/f"], check=0).stdout
    assert out.split()[2:4] == ["1000", "1000"], out




def test_ids_inside_are_the_range_outside(rootless_minirun: Tier, shared_dir: Path) -> None:
    os.chown(shared_dir, rootless_minirun.uid, rootless_minirun.gid)
    rootless_minirun(["run", "--rm", "-v", f"{shared_dir}:/data", IMAGE, "sh", "-c",
                      "touch /data/mine /data/theirs && chown 1000:1000 /data/theirs"], check=0)
    uid_start, _ = subid_range("/etc/subuid", TEST_USER)  # type: ignore[misc]
    gid_start, _ = subid_range("/etc/subgid", TEST_USER)  # type: ignore[misc]
    mine, theirs = (shared_dir / "mine").stat(), (shared_dir / "theirs").stat()
    assert (mine.st_uid, mine.st_gid) == (rootless_minirun.uid, rootless_minirun.gid), "root = the user"
    assert (theirs.st_uid, theirs.st_gid) == (uid_start + 999, gid_start + 999), "1000 = range start + 999"


def test_container_root_is_not_host_root(rootless_minirun: Tier, shared_dir: Path) -> None:
    secret = shared_dir / "secret"
    secret.write_text("host root only\n")
    secret.chmod(0o600)
    result = rootless_minirun(["run", "--rm", "-v", f"{shared_dir}:/data", IMAGE, "sh", "-c",
                               "cat /data/secret; ls -ln /data/secret; echo x > /data/new"])
    assert "host root only" not in result.stdout
    assert "Permission denied" in result.stderr
    # Host root appears as the overflow id: it is not mapped into the user's namespace.
    assert result.stdout.split()[2:4] == ["65534", "65534"], result.stdout
    assert not (shared_dir / "new").exists()


def test_user_store_and_records(rootless_minirun: Tier, root_tier: Tier, names: Callable[[], str]) -> None:
    name = names()
    proc = rootless_minirun.popen(["run", "--name", name, IMAGE, "sh", "-c", "echo ready; sleep 600"])
    read_until(proc.stdout, "ready\n")
    item = rootless_minirun.inspect(name)
    container_id, pid = item["Id"], item["State"]["Pid"]
    home = Path(f"/home/{TEST_USER}")
    record = Path(f"/run/user/{rootless_minirun.uid}/minirun/{container_id}.json")
    assert record.is_file(), "the record is in $XDG_RUNTIME_DIR/minirun"
    assert record.stat().st_uid == rootless_minirun.uid
    assert not (Path("/run/minirun") / f"{container_id}.json").exists()
    upper = Path(item["GraphDriver"]["Data"]["UpperDir"])
    assert upper.is_relative_to(home / ".local" / "share" / "minirun"), upper
    assert item["Rootless"] is True
    with open(f"/proc/{pid}/status") as f:
        uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
    assert uids == [str(rootless_minirun.uid)] * 4, "the container's root is the user on the host"
    # The user's containers are the user's: root's `ps -a` does not list them.
    assert container_id[:12] not in root_tier(["ps", "-a", "-q"], check=0).stdout.split()
    rootless_minirun(["rm", "-f", name], check=0)
    proc.communicate(timeout=30)
    assert not record.exists() and not upper.exists()
