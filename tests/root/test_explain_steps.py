"""`run --explain` and `exec --explain` narrate each step with the real values: checked against
what the container itself sees (its /proc/self/uid_map, CapBnd, /proc/self/cgroup), and the
container's stdout stays exactly its own. Root and rootless."""

import re

import pytest
from helpers import Tier

from minirun.security.capabilities import NUMBERS

PROBE = "cat /proc/self/uid_map; grep CapBnd /proc/self/status; cat /proc/self/cgroup"


def names(mask: int) -> list[str]:
    return [
        name[4:].lower() for name, bit in sorted(NUMBERS.items(), key=lambda item: item[1]) if mask >> bit & 1
    ]


def narration(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith(("minirun explain:", "    "))]
    assert lines, stderr
    return "\n".join(lines)


def test_run_explain_shows_the_real_values(minirun: Tier) -> None:
    name = minirun.auto_name() if minirun.auto_name else "mrt-explain"
    result = minirun(
        [
            "run",
            "--explain",
            "--name",
            name,
            "--network",
            "none",
            "--cgroupns",
            "host",
            "--cap-drop",
            "NET_RAW",
            "busybox",
            "sh",
            "-c",
            PROBE,
        ],
        check=True,
    )
    try:
        container_id = minirun(["inspect", "-f", "{{.Id}}", name], check=True).stdout.strip()
    finally:
        minirun(["rm", "-f", name])
    out = result.stdout.splitlines()
    # stdout is the container's, untouched: the probe's lines and nothing else
    assert "minirun explain" not in result.stdout
    uid_map = [" ".join(line.split()) for line in out if re.fullmatch(r"\s*\d+\s+\d+\s+\d+", line)]
    cap_bnd = next(line for line in out if line.startswith("CapBnd:"))
    cgroup = [line for line in out if re.match(r"^\d+:", line)]
    assert len(out) == len(uid_map) + 1 + len(cgroup)
    said = narration(result.stderr)
    # clone: the real pid, PID 1 inside
    clone = re.search(
        r"clone\((CLONE_NEWUSER\|CLONE_NEWPID\|CLONE_NEWNS\|[A-Z_|]+)\): the child is host pid "
        r"(\d+) and PID 1 inside",
        said,
    )
    assert clone and "CLONE_NEWNET" in clone.group(1), said
    # the user namespace's map, as the container reads it
    for line in uid_map:
        assert f"uid_map: {line}" in said
    # the overlay with this container's own upperdir
    upper = re.search(r"upperdir=(\S+)", said)
    assert upper and upper.group(1) == str(minirun.store_dir / "containers" / container_id / "upper"), said
    assert re.search(r"lowerdir=\S+", said)
    assert 'pivot_root(".", ".") then umount2(".", MNT_DETACH)' in said
    # the bounding set, by name: the container's CapBnd decoded; 13 of them (NET_RAW dropped)
    kept = names(int(cap_bnd.split()[1], 16))
    assert len(kept) == 13 and "net_raw" not in kept
    assert re.search(rf"bounding set: 13 of \d+ capabilities kept: {', '.join(kept)}$", said, flags=re.M), (
        said
    )
    assert re.search(r"seccomp\(SECCOMP_SET_MODE_FILTER\): \d+ BPF instructions; now Seccomp: 2", said)
    assert re.search(r"seccomp profile \S+: defaultAction SCMP_ACT_ERRNO; \d+ of \d+ rules apply", said)
    # the cgroup it joined: the container's own /proc/self/cgroup (host cgroup namespace: full paths)
    joined = said.split("] join cgroup\n", 1)[1].split("minirun explain:", 1)[0]
    assert [line.strip() for line in joined.splitlines()[1:]] == cgroup
    # with a v2 directory of its own (pure v2 hosts; the unified tree of hybrid ones), the child
    # was born there (clone3's CLONE_INTO_CGROUP), never moved: kernel.clone_into_cgroup
    if any(line.startswith("0::/") and line.endswith(container_id) for line in cgroup):
        assert "born in its v2 cgroup by clone3(2) with CLONE_INTO_CGROUP" in joined, joined
    made = re.findall(r"^    mkdir (\S+); its limit files now hold:$", said, flags=re.M)
    if made:  # a cgroup of its own, named after the container (root; rootless where delegated)
        assert all(path.startswith("/sys/fs/cgroup/") and path.endswith(container_id) for path in made), made
    else:
        assert "no cgroup of its own" in said and minirun.name != "root", said
    assert "execve('sh -c " in said


@pytest.mark.root
def test_run_explain_with_limits_shows_the_files_written(root_tier: Tier) -> None:
    # Root only: limits rootless need a delegated cgroup, which this host does not give (doctor).
    result = root_tier(
        ["run", "--rm", "--explain", "--network", "none", "--pids-limit", "77", "busybox", "echo", "hi"],
        check=True,
    )
    assert result.stdout == "hi\n"
    said = narration(result.stderr)
    assert re.search(r"^    mkdir /sys/fs/cgroup/\S+; its limit files now hold:$", said, flags=re.M), said
    assert re.search(r"^      pids\.max = 77$", said, flags=re.M), said


def test_exec_explain(minirun: Tier) -> None:
    name = minirun.auto_name() if minirun.auto_name else "mrt-explain-exec"
    minirun(["run", "-d", "--name", name, "--network", "none", "busybox", "sleep", "300"], check=True)
    try:
        result = minirun(["exec", "--explain", name, "grep", "CapBnd", "/proc/self/status"], check=True)
    finally:
        minirun(["rm", "-f", name])
    assert result.stdout.startswith("CapBnd:") and len(result.stdout.splitlines()) == 1
    said = narration(result.stderr)
    assert re.search(r"the plan, from the container's record before any fork: join CLONE_NEWUSER\|", said)
    assert re.search(r"setns\(pidfd of PID 1, CLONE_NEWUSER\|CLONE_NEWPID\|CLONE_NEWNS\|[A-Z_|]*\)", said), (
        said
    )
    kept = names(int(result.stdout.split()[1], 16))
    assert f"capabilities kept: {', '.join(kept)}" in said
    assert "execve('grep CapBnd /proc/self/status')" in said


def test_run_d_explain_narrates_to_the_caller_and_not_into_the_logs(minirun: Tier) -> None:
    # -d: the monitor's own 0, 1, 2 are /dev/null and the container's output goes to its log; the
    # narration (the child's too) still reaches the caller's stderr, and never the log.
    name = minirun.auto_name() if minirun.auto_name else "mrt-explain-d"
    result = minirun(["run", "-d", "--explain", "--name", name, "--network", "none", "busybox", "echo", "hi"],
                     check=True)
    try:
        assert re.fullmatch(r"[0-9a-f]{64}\n", result.stdout)
        said = narration(result.stderr)
        assert "pivot_root" in said and "execve('echo hi')" in said
        assert minirun(["wait", name], check=True).stdout.strip() == "0"
        logs = minirun(["logs", name], check=True)
        assert logs.stdout == "hi\n" and "minirun explain" not in logs.stderr
    finally:
        minirun(["rm", "-f", name])
