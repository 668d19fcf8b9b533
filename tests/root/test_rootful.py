"""What only the root tier has: an identity user namespace, root's store and records, cgroups."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import IMAGE, Tier, read_until

pytestmark = pytest.mark.root


def test_identity_id_maps(root_minirun: Tier) -> None:
    # With --userns=host, rootful containers run in a user namespace that maps every id to itself
    # (the default remaps root: tests/root/test_security_remap.py); the file shows the three
    # columns inside, outside, count.
    out = root_minirun(["run", "--rm", "--userns=host", IMAGE, "cat", "/proc/self/uid_map",
                        "/proc/self/gid_map"], check=0)
    assert [line.split() for line in out.stdout.splitlines()] == [["0", "0", "4294967295"]] * 2


def test_records_and_store_are_roots(root_minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    proc = root_minirun.popen(["run", "--name", name, "--userns=host", IMAGE, "sh", "-c",
                               "echo ready; sleep 600"])
    read_until(proc.stdout, "ready\n")
    item = root_minirun.inspect(name)
    container_id, pid = item["Id"], item["State"]["Pid"]
    record = Path("/run/minirun") / f"{container_id}.json"
    assert record.is_file(), "the record of a root container is in /run/minirun"
    assert json.loads(record.read_text())["name"] == name
    assert record.stat().st_mode & 0o077 == 0, "records are private to root"
    upper = Path(item["GraphDriver"]["Data"]["UpperDir"])
    assert upper.is_relative_to("/var/lib/minirun"), upper
    # The container's PID 1 runs as host root, in its own cgroup in every hierarchy we use
    # (v1: one line per hierarchy, `ID:CONTROLLERS:PATH`; v2: the one line `0::PATH`).
    with open(f"/proc/{pid}/status") as f:
        assert next(line for line in f if line.startswith("Uid:")).split()[1] == "0"
    cgroups = [line for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
               if "name=systemd" not in line]
    assert cgroups and all(container_id in line for line in cgroups), cgroups
    root_minirun(["rm", "-f", name], check=0)
    proc.communicate(timeout=30)
    assert not record.exists() and not upper.exists()
