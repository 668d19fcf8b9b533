"""The labs in examples/labs/ replay the seed articles with minirun; they must keep working.

Each lab runs as root exactly as a learner would run it (`sh examples/labs/NN-*.sh`), with
MINIRUN pointing at this checkout, and the test checks the facts each step is meant to show.
"""

import os
import re
import subprocess
import sys

import pytest
from helpers import REPO, Tier

LABS = REPO / "examples" / "labs"

pytestmark = pytest.mark.root


def run_lab(name: str, tier: Tier) -> str:
    """Run a lab as root, in the session's network namespace (as the root tier runs minirun)."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MINIRUN_")},
           "MINIRUN": f"{sys.executable} -m minirun", "PYTHONPATH": str(REPO)}
    result = subprocess.run(["nsenter", f"--net=/run/netns/{tier.netns}", "sh", str(LABS / name)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def section(output: str, title_start: str) -> str:
    """The output of one `== step` of a lab."""
    parts = re.split(r"^== ", output, flags=re.M)
    return next(p for p in parts if p.startswith(title_start))


def test_lab_01_seven_namespaces(root_tier: Tier) -> None:
    out = run_lab("01-seven-namespaces.sh", root_tier)
    assert "my pid: 1" in section(out, "PID namespace")
    net = section(out, "Network namespace")
    assert "lo:" in net
    uts = section(out, "UTS namespace")
    assert "\nfoo\n" in uts and f"host: {os.uname().nodename}" in uts
    assert "uid=0(root)" in section(out, "User namespace")
    assert "host mounts of the container's overlay: 0" in section(out, "Mount namespace")
    ipc = section(out, "IPC namespace")
    assert "container segments: 0" in ipc and "host segments: 0" not in ipc
    assert re.search(r"^0::/$", section(out, "cgroup namespace"), flags=re.M)


def test_lab_02_nsenter_a_container(root_tier: Tier) -> None:
    out = run_lab("02-nsenter-a-container.sh", root_tier)
    pid = int(section(out, "docker inspect").splitlines()[1])
    assert pid > 1
    for ns in ("mnt", "uts", "ipc", "pid", "net", "user", "cgroup"):
        host, container = re.search(rf"^{ns}: host (\S+)  container (\S+)$", out, flags=re.M).groups()  # type: ignore[union-attr]
        assert host != container
    assert section(out, "nsenter --target $PID --uts").splitlines()[1] == "webserver"
    ps = section(out, "nsenter --target $PID -m -p ps")
    # nsenter joined the mount and PID namespaces but not the user namespace: ps shows the host's
    # view of the container's root, the remapped uid (README, "Security").
    found = re.search(r"^\s+1 (\d+)\s+sleep 300$", ps, flags=re.M)
    assert found and int(found[1]) >= 65536, ps  # a range of its own, far from host users' ids
    assert "bin" in section(out, "nsenter --target $PID --mount ls").split()
