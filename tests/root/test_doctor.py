"""`minirun doctor`, as root and as the rootless user: each line checked against facts this test
establishes on its own, with the host's tools (unshare, mount, findmnt, stat, /proc), run as the
same user in the same network namespace as minirun.
"""

import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, TEST_USER, Tier, subid_range

# The minimum the README states ("Kernel requirements"): doctor must hold hosts to the same one.
_MIN = re.search(r"The minimum is \*\*Linux (\d+)\.(\d+)\*\*", (REPO / "README.md").read_text())
assert _MIN, "README.md states no minimum kernel"
MIN_KERNEL = (int(_MIN.group(1)), int(_MIN.group(2)))


def as_user(tier: Tier, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a host command as the tier's user, where the tier runs minirun (its prefix without
    `python -m minirun`)."""
    prefix = tier.prefix[:-3]
    assert tier.prefix[-2:] == ["-m", "minirun"], tier.prefix
    return subprocess.run([*prefix, *argv], env=tier.env, capture_output=True, text=True, timeout=60,
                          check=False, **kwargs)


def doctor(tier: Tier) -> tuple[dict[str, dict[str, Any]], subprocess.CompletedProcess[str]]:
    result = tier(["doctor", "--json"])
    checks = json.loads(result.stdout)
    assert [c["check"] for c in checks] == ["kernel", "userns", "subids", "idmap-helpers", "cgroups",
                                            "store-fs", "overlay", "idmap", "seccomp", "packages",
                                            "slirp4netns", "nft", "ports"]
    return {c["check"]: c for c in checks}, result


def test_every_line_matches_the_host(minirun: Tier) -> None:
    checks, result = doctor(minirun)
    # Exit status: 1 exactly when a check that `run` needs failed; this host runs containers.
    assert result.returncode == (1 if any(c["needed"] and not c["ok"] for c in checks.values()) else 0)
    assert result.returncode == 0, result.stdout

    release = os.uname().release
    numbers = tuple(int(n) for n in re.findall(r"\d+", release)[:2])
    assert checks["kernel"]["value"] == release and checks["kernel"]["ok"] == (numbers >= MIN_KERNEL)

    unshare = as_user(minirun, ["unshare", "--user", "--map-root-user", "true"])
    assert checks["userns"]["value"]["works"] == (unshare.returncode == 0) and checks["userns"]["ok"]
    assert checks["userns"]["value"]["user.max_user_namespaces"] == \
        Path("/proc/sys/user/max_user_namespaces").read_text().strip()

    user = TEST_USER if minirun.rootless else "root"
    subuid, subgid = subid_range("/etc/subuid", user), subid_range("/etc/subgid", user)
    if minirun.rootless:
        assert checks["subids"]["value"] == {"uid": list(subuid) if subuid else None,
                                             "gid": list(subgid) if subgid else None}
    else:
        assert checks["subids"]["value"]["uid"] == list(subuid or (1000000, 65536))

    for helper in ("newuidmap", "newgidmap"):
        path = shutil.which(helper)
        assert path and checks["idmap-helpers"]["value"][helper]["path"] == path
        st = os.stat(path)
        caps = subprocess.run(["getcap", path], capture_output=True, text=True, check=False).stdout.strip()
        expected = ("setuid root" if st.st_uid == 0 and st.st_mode & stat.S_ISUID else
                    "file capabilities" if caps else None)
        assert checks["idmap-helpers"]["value"][helper]["privilege"] == expected

    mounts = [line.split() for line in Path("/proc/self/mounts").read_text().splitlines()]
    kinds = {m[2] for m in mounts if m[1].startswith("/sys/fs/cgroup") and m[2] in ("cgroup", "cgroup2")}
    mode = "v2" if kinds == {"cgroup2"} else "hybrid" if kinds == {"cgroup", "cgroup2"} else "v1"
    assert checks["cgroups"]["value"]["mode"] == mode
    if minirun.rootless:
        # Delegated: a cgroup on the user's own path that the user owns (as systemd's Delegate= makes).
        own = as_user(minirun, ["cat", "/proc/self/cgroup"]).stdout.splitlines()
        owned = []
        for line in own:
            _, controllers, path = line.split(":", 2)
            base = Path("/sys/fs/cgroup") / (controllers.split(",")[0] if controllers else "unified")
            if base.is_dir() and (base / path.lstrip("/")).is_dir() and \
                    (base / path.lstrip("/")).stat().st_uid == minirun.uid:
                owned.append(str(base / path.lstrip("/")))
        assert bool(checks["cgroups"]["value"]["delegated"]) == bool(owned)
        assert checks["cgroups"]["ok"] == bool(owned)

    store = checks["store-fs"]["value"]
    assert store["path"] == str(minirun.store_dir)
    existing = minirun.store_dir if minirun.store_dir.exists() else minirun.store_dir.parent
    fstype = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", str(existing)], capture_output=True,
                            text=True, check=True).stdout.strip()
    assert store["fstype"] == fstype

    # Overlay in a user namespace, on the store's file system, with the host's mount(8).
    with tempfile.TemporaryDirectory(dir=minirun.store_dir / "tmp") as tmp:
        for d in ("lower", "upper", "work", "merged"):
            os.mkdir(f"{tmp}/{d}")
        os.chown(tmp, minirun.uid, minirun.gid)
        for d in ("lower", "upper", "work", "merged"):
            os.chown(f"{tmp}/{d}", minirun.uid, minirun.gid)
        options = f"lowerdir={tmp}/lower,upperdir={tmp}/upper,workdir={tmp}/work,userxattr"
        overlay = as_user(minirun, ["unshare", "--user", "--map-root-user", "--mount", "mount", "-t",
                                    "overlay", "overlay", "-o", options, f"{tmp}/merged"])
        assert checks["overlay"]["ok"] == (overlay.returncode == 0), overlay.stderr
        if not minirun.rootless:
            idmap = subprocess.run(["unshare", "--mount", "mount", "--bind", "-o",
                                    "X-mount.idmap=0:1000000:65536", str(minirun.store_dir), f"{tmp}/merged"],
                                   capture_output=True, text=True, check=False)
            assert checks["idmap"]["ok"] == (idmap.returncode == 0), idmap.stderr

    actions = Path("/proc/sys/kernel/seccomp/actions_avail").read_text().split()
    assert checks["seccomp"]["ok"] == ("errno" in actions and "allow" in actions)

    for package in ("pyseccomp", "zstandard"):
        code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec('{package}') is None)"
        found = as_user(minirun, [minirun.prefix[-3], "-c", code])
        assert checks["packages"]["value"][package] == (found.returncode == 0), package

    tun_mode = stat.S_IMODE(os.stat("/dev/net/tun").st_mode)
    assert checks["slirp4netns"]["value"] == {"path": shutil.which("slirp4netns"), "tun_mode": oct(tun_mode)}
    assert checks["nft"]["value"] == shutil.which("nft", path="/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")

    port_start = as_user(minirun, ["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"]).stdout.strip()
    assert checks["ports"]["value"] == int(port_start)


def test_human_output_is_one_line_per_check(minirun: Tier) -> None:
    checks, _ = doctor(minirun)
    result = minirun(["doctor"], check=0)
    # The probes' scratch directories are gone (and named so that a killed doctor's would be
    # removed by the next import, as a killed import's are).
    assert not list((minirun.store_dir / "tmp").glob("import-*-doctor-*"))
    header, *lines = result.stdout.splitlines()
    assert header == f"minirun doctor, as {'mrtest (rootless)' if minirun.rootless else 'root'}:"
    assert len(lines) == len(checks)
    for line, check in zip(lines, checks.values(), strict=True):
        mark = "✓" if check["ok"] else ("✗" if check["needed"] else "!")
        assert line.startswith(f"{mark} {check['detail']}")
        assert check["ok"] or f"; fix: {check['fix']}" in line


@pytest.mark.root
def test_a_store_where_run_cannot_work_fails(root_minirun: Tier) -> None:
    # A store on a file system that takes no overlay upper layer (and no idmapped mount): /proc.
    # The probes try it for real and fail, the lines say so with a fix, and doctor exits 1.
    tier = Tier("root", root_minirun.prefix, {**root_minirun.env, "MINIRUN_ROOT": "/proc/minirun-store"},
                0, 0, Path("/proc/minirun-store"), root_minirun.state_dir)
    result = tier(["doctor", "--json"], check=1)
    checks = {c["check"]: c for c in json.loads(result.stdout)}
    assert checks["store-fs"]["value"]["fstype"] == "proc" and not checks["store-fs"]["ok"]
    assert not checks["overlay"]["ok"] and checks["overlay"]["fix"]
    assert not checks["idmap"]["ok"] and "--userns=host" in checks["idmap"]["fix"]
    human = tier(["doctor"], check=1).stdout
    assert re.search(r"^✗ overlay in a user namespace: fails .*; fix: ", human, re.MULTILINE), human
