"""Issue 12, item 6b: every rootful container gets host ids of its own (podman's --userns=auto),
claimed in the host's book (minirun/idranges.py) with its record and freed when it goes.

The attack that made it necessary: container A leaves a set-id program in a volume; a host user
runs it and, as A's root, reads a 0600 file in container B's layer. With one range for all
(--userns=shared, kept for the labs) A's root is B's root; with ranges of their own it is not.
"""

import contextlib
import dataclasses
import os
import secrets
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import IMAGE, Tier, wait_for
from test_hostile_state import private_state

from minirun import idranges

pytestmark = pytest.mark.root


def host_range(tier: Tier, name: str) -> tuple[int, int, int]:
    """(uid, gid, count) of a container's root on the host, from `inspect` (HostConfig.IDMappings)."""
    maps = tier.inspect(name)["HostConfig"]["IDMappings"]
    _, uid, count = map(int, maps["UidMap"][0].split(":"))
    _, gid, _ = map(int, maps["GidMap"][0].split(":"))
    return uid, gid, count


def sleeper(tier: Tier, name: str, *flags: str, script: str = "sleep 600") -> int:
    tier(["run", "-d", "--name", name, "--network", "none", *flags, IMAGE, "sh", "-c", script], check=0)
    pid: int = tier.inspect(name)["State"]["Pid"]
    return pid


def overlaps(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    return (a[0] < b[0] + b[2] and b[0] < a[0] + a[2]) or (a[1] < b[1] + b[2] and b[1] < a[1] + a[2])


def test_two_containers_get_disjoint_ranges(root_minirun: Tier, names: Callable[[], str]) -> None:
    a, b = names(), names()
    pid_a, pid_b = sleeper(root_minirun, a), sleeper(root_minirun, b)
    range_a, range_b = host_range(root_minirun, a), host_range(root_minirun, b)
    assert range_a[2] == range_b[2] == 65536, "podman's default size"
    assert not overlaps(range_a, range_b), (range_a, range_b)
    shared = idranges.shared_range("uid")
    assert not overlaps(range_a, (shared[0], idranges.shared_range("gid")[0], shared[1])), \
        "not the range --userns=shared gives every container"
    for pid, (uid, gid, count) in ((pid_a, range_a), (pid_b, range_b)):
        assert Path(f"/proc/{pid}/uid_map").read_text().split() == ["0", str(uid), str(count)]
        assert Path(f"/proc/{pid}/gid_map").read_text().split() == ["0", str(gid), str(count)]
        status = os.stat(f"/proc/{pid}")
        assert (status.st_uid, status.st_gid) == (uid, gid), "the host sees the container's root as its range"
    assert root_minirun.inspect(a)["HostConfig"]["UsernsMode"] == "auto:size=65536"
    # A range of another size, and the shared one, which every such container has.
    small = names()
    out = root_minirun(["run", "--rm", "--name", small, "--network", "none", "--userns=auto:size=1000", IMAGE,
                        "cat", "/proc/self/uid_map"], check=0).stdout.split()
    assert out[0] == "0" and out[2] == "1000"
    out = root_minirun(["run", "--rm", "--network", "none", "--userns=shared", IMAGE, "cat",
                        "/proc/self/uid_map"], check=0).stdout.split()
    assert out == ["0", str(shared[0]), "65536"]
    bad = root_minirun(["run", "--rm", "--userns=auto:size=0", IMAGE, "true"], check=125)
    assert bad.stderr.count("\n") == 1 and "--userns" in bad.stderr and "Traceback" not in bad.stderr
    root_minirun(["rm", "-f", a, b], check=0)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A host directory every container root may write into (1777, as /tmp)."""
    path = Path(tempfile.mkdtemp(prefix="minirun-test-userns-"))
    try:
        path.chmod(0o1777)
        yield path
    finally:
        subprocess.run(["rm", "-rf", str(path)], timeout=60, check=False)


def test_a_set_id_program_from_one_container_cannot_read_another(
        root_minirun: Tier, names: Callable[[], str], escape_probe_dir: Path, open_dir: Path) -> None:
    """The issue's attack, with one range for all (it works: the baseline) and with ranges of their
    own (the default: it does not). B keeps a 0600 file in its layer and one in its own volume;
    A leaves a set-id copy of the probe in a volume; a host user (nobody) runs it, as A's root."""
    results = {}
    for userns in ("--userns=shared", "--userns=auto"):
        a, b = names(), names()
        b_dir = open_dir / f"volume-of-{b}"
        b_dir.mkdir(mode=0o755)
        pid_b = sleeper(root_minirun, b, userns, "-v", f"{b_dir}:/b", script=(
            "echo secret > /secret; chmod 600 /secret; while ! touch /b/ok 2>/dev/null; do sleep 0.1; done; "
            "echo secret > /b/secret; chmod 600 /b/secret; sleep 600"))
        range_b = host_range(root_minirun, b)
        os.chown(b_dir, range_b[0], range_b[1])  # given to B's root, as a user gives a volume
        wait_for(lambda: (b_dir / "secret").exists(), timeout=20, what="B's secret")  # noqa: B023
        planted = open_dir / f"planted-{a}"
        root_minirun(["run", "--rm", "--name", a, "--network", "none", userns,
                      "-v", f"{escape_probe_dir}:/probe:ro", "-v", f"{open_dir}:/data", IMAGE, "sh", "-c",
                      f"cp /probe/escape_probe /data/{planted.name}; chmod 6755 /data/{planted.name}; "
                      "echo from-a > /data/from-a"], check=0)
        assert planted.stat().st_mode & 0o6000 == 0o6000, "set-id bits on the host file"
        upper = Path(root_minirun.inspect(b)["GraphDriver"]["Data"]["UpperDir"])
        targets = {"volume": b_dir / "secret", "layer": upper / "secret",
                   "proc": f"/proc/{pid_b}/root/secret"}
        for where, target in targets.items():
            attack = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                     str(planted), "open-ro", str(target)], capture_output=True, text=True,
                                    timeout=30, check=False)
            results[userns, where] = attack.stdout.strip()
        owner = (open_dir / "from-a").stat()
        if userns == "--userns=auto":
            assert not range_b[0] <= owner.st_uid < range_b[0] + range_b[2], "a file A wrote is not B's"
            assert not range_b[1] <= owner.st_gid < range_b[1] + range_b[2]
        (open_dir / "from-a").unlink()
        root_minirun(["rm", "-f", b], check=0)
    # One range: A's root is B's root, and B's volume is open to it (the finding). (B's layer
    # is under STORE/containers, root's alone now, 0700; the shared range's group could pass it
    # while that was 0710.) Ranges of their own: nothing of B's is A's.
    assert results["--userns=shared", "volume"] == "ok", results
    assert results["--userns=shared", "proc"] == "errno EACCES", "ptrace rights over B's PID 1 are needed"
    assert {where: result for (userns, where), result in results.items() if userns == "--userns=auto"} == \
        {"volume": "errno EACCES", "layer": "errno EACCES", "proc": "errno EACCES"}, results


@contextlib.contextmanager
def small_pool(tier: Tier, ranges: int) -> Iterator[tuple[Tier, int]]:
    """The tier with subordinate id files of its own (MINIRUN_SUBUID/MINIRUN_SUBGID): root's
    line gives the shared 65536 ids and `ranges` ranges of 65536 more, at ids nothing else uses."""
    # Between useradd's ranges (up to 600100000) and minirun's default pool (655360000 up).
    start = 600_113_152 + secrets.randbelow(400) * 65536 * (1 + ranges)
    directory = Path(tempfile.mkdtemp(prefix="mrt-subids-"))
    for kind in ("subuid", "subgid"):
        (directory / kind).write_text(f"root:{start}:{65536 * (1 + ranges)}\nmrtest:100000:65536\n")
    env = {**tier.env, "MINIRUN_SUBUID": str(directory / "subuid"),
           "MINIRUN_SUBGID": str(directory / "subgid")}
    try:
        yield dataclasses.replace(tier, env=env, processes=tier.processes), start + 65536
    finally:
        subprocess.run(["rm", "-rf", str(directory)], check=False)


def test_exhaustion_rm_and_reuse(root_minirun: Tier, names: Callable[[], str]) -> None:
    with small_pool(root_minirun, ranges=1) as (tier, pool_start):
        first, second, third = names(), names(), names()
        sleeper(tier, first)
        assert host_range(tier, first) == (pool_start, pool_start, 65536)
        full = tier(["run", "--rm", "--name", second, "--network", "none", IMAGE, "true"], check=125)
        assert full.stderr.count("\n") == 1 and "no free range of 65536 ids" in full.stderr, full.stderr
        assert "Traceback" not in full.stderr
        assert tier(["ps", "-a", "-q", "-f", f"name={second}"], check=0).stdout == "", "no record left"
        # A smaller one does not fit either; --userns=shared and host still work.
        tier(["run", "--rm", "--network", "none", "--userns=auto:size=10", IMAGE, "true"], check=125)
        tier(["run", "--rm", "--network", "none", "--userns=shared", IMAGE, "true"], check=0)
        first_id = tier.inspect(first)["Id"]
        tier(["rm", "-f", first], check=0)
        assert idranges.claims_of(first_id) == []
        # Freed by rm: the next container gets the same ids; freed by --rm as well.
        out = tier(["run", "--rm", "--name", third, "--network", "none", IMAGE, "cat", "/proc/self/uid_map"],
                   check=0).stdout.split()
        assert out == ["0", str(pool_start), "65536"]
        out = tier(["run", "--rm", "--network", "none", IMAGE, "cat", "/proc/self/uid_map"],
                   check=0).stdout.split()
        assert out == ["0", str(pool_start), "65536"], "--rm gave it back"
        # create holds a range until rm, as podman's.
        created = tier(["create", "--network", "none", IMAGE, "true"], check=0).stdout.strip()
        tier(["run", "--rm", "--network", "none", IMAGE, "true"], check=125)
        assert [c["uid"] for c in idranges.claims_of(created)] == [pool_start]
        tier(["start", "-a", created], check=0)
        assert host_range(tier, created)[0] == pool_start, "kept across starts"
        tier(["rm", created], check=0)
        assert idranges.claims_of(created) == []


def test_a_joined_container_shares_the_range(root_minirun: Tier, names: Callable[[], str]) -> None:
    donor, joined = names(), names()
    donor_pid = sleeper(root_minirun, donor)
    joined_pid = sleeper(root_minirun, joined, f"--pid=container:{donor}")
    assert host_range(root_minirun, joined) == host_range(root_minirun, donor)
    assert Path(f"/proc/{joined_pid}/uid_map").read_text() == Path(f"/proc/{donor_pid}/uid_map").read_text()
    donor_id = root_minirun.inspect(donor)["Id"]
    joined_id = root_minirun.inspect(joined)["Id"]
    [claim] = idranges.claims_of(donor_id)
    assert sorted(h[1] for h in claim["holders"]) == sorted([donor_id, joined_id])
    root_minirun(["rm", "-f", donor], check=0)
    assert [c["uid"] for c in idranges.claims_of(joined_id)] == [claim["uid"]], "held by the joined one"
    root_minirun(["rm", "-f", joined], check=0)
    assert idranges.claims_of(joined_id) == []


def test_concurrent_starts_never_overlap(root_minirun: Tier, names: Callable[[], str]) -> None:
    chosen = [names() for _ in range(10)]
    procs = [root_minirun.popen(["run", "-d", "--name", n, "--network", "none", IMAGE, "sleep", "600"])
             for n in chosen]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    ranges = [host_range(root_minirun, n) for n in chosen]
    for i, one in enumerate(ranges):
        for other in ranges[i + 1:]:
            assert not overlaps(one, other), (one, other)
    ids = [root_minirun.inspect(n)["Id"] for n in chosen]
    root_minirun(["rm", "-f", *chosen], check=0)
    assert not [c for i in ids for c in idranges.claims_of(i)], "all freed"


def test_a_killed_start_leaves_no_range_prune_cannot_reclaim(root_minirun: Tier) -> None:
    with private_state(root_minirun) as tier:
        # Exactly the window: a claim written, the record not (a SIGKILL between the two).
        orphan = secrets.token_hex(32)
        claimed = idranges.allocate(tier.state_dir, orphan, 65536, tier.store_dir)
        # ... and SIGKILLs at random moments of real starts.
        seen = set()
        for _ in range(15):
            proc = tier.popen(["run", "--rm", "--network", "none", IMAGE, "sleep", "600"])
            time.sleep(0.02 + secrets.randbelow(250) / 1000)
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
            seen |= {p.name.removesuffix(".json") for p in tier.state_dir.glob("*.json")}
        assert idranges.claims_of(orphan)
        out = tier(["prune"], check=0)
        assert idranges.claims_of(orphan) == [], out.stdout
        left = [c for i in seen for c in idranges.claims_of(i)]
        assert not left, left
        # The ids can be given out again.
        again = idranges.allocate(tier.state_dir, orphan, 65536, tier.store_dir)
        assert again.count == claimed.count
        idranges.release(tier.state_dir, orphan, lambda _claim: None)
