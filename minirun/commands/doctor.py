"""`minirun doctor`: what this host allows, one line per piece, and the fix for each missing one.

For a learner at a new machine and a CI job on a rootless runner: run it first. Every line is a
fact about this host *for the user running it* (root and a user are told different things), and
the kernel features are tried for real (minirun/probes.py), not guessed from version numbers.
`--json` gives the same as a list of objects. The exit status is 1 when a plain `minirun run`
cannot work here (a line marked "needed" failed), 0 otherwise: what is only missing for some
flags (limits, published ports, subordinate ids) is shown but does not fail.
"""

import argparse
import importlib.util
import json
import os
import pwd
import re
import shutil
import stat
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from minirun import cgroups, paths, probes, userns

# The oldest kernel minirun supports (README, "Kernel requirements"): 5.12, for idmapped mounts;
# rootful remapped containers on kernels before 5.19 use shifted copies of the layers instead of
# idmapped ones (userns.layers_mode), and rootless containers need overlay in a user namespace (5.11).
MIN_KERNEL = (5, 12)

# What systemd needs to hand a user's session cgroups to that user (systemd.resource-control(5)).
DELEGATE_DROPIN = ("/etc/systemd/system/user@.service.d/delegate.conf with [Service] "
                   "Delegate=cpu cpuset io memory pids, then systemctl daemon-reload and log in again")


@dataclass(frozen=True)
class Check:
    check: str  # a stable id: kernel, userns, subids, ...
    ok: bool
    needed: bool  # does a plain `minirun run` fail here without it?
    detail: str  # what was found
    fix: str = ""  # what to do about it ("" when ok)
    value: Any = None  # the raw fact, for --json readers (and the tests)


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("doctor", help="check what this host allows, and how to fix what is missing",
                       description="Check, for the user running it, what this host allows containers "
                                   "to do; one line each, with the fix. Exit 1 if `run` cannot work here.")
    p.add_argument("--json", action="store_true", help="print the checks as a JSON list")


def run(args: argparse.Namespace) -> int:
    rootless = paths.is_rootless()
    checks = diagnose(rootless)
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        who = f"as {_user_name()} (rootless)" if rootless else "as root"
        print(f"minirun doctor, {who}:")
        for c in checks:
            mark = "✓" if c.ok else ("✗" if c.needed else "!")
            print(f"{mark} {c.detail}" + (f"; fix: {c.fix}" if c.fix else ""))
    return 1 if any(c.needed and not c.ok for c in checks) else 0


def diagnose(rootless: bool) -> list[Check]:
    """Every check, in the order `minirun run` meets them."""
    store = _existing(paths.store_dir())
    return [kernel_version(), user_namespaces(rootless), subordinate_ids(rootless),
            id_map_helpers(rootless), cgroup_delegation(rootless), store_filesystem(store),
            overlay(_scratch(store)), idmapped_mounts(rootless, store), seccomp(), packages(rootless),
            slirp4netns(rootless), nft(rootless), unprivileged_ports(rootless)]


# --- the checks, each one line ---------------------------------------------------------------------


def kernel_version() -> Check:
    release = os.uname().release
    numbers = tuple(int(n) for n in re.findall(r"\d+", release)[:2])
    ok = numbers >= MIN_KERNEL
    want = ".".join(map(str, MIN_KERNEL))
    return Check("kernel", ok, True, f"kernel {release} (minirun needs {want} or later)",
                 "" if ok else f"boot a kernel {want} or later (Debian 12 has 6.1, Ubuntu 22.04 5.15)",
                 release)


def user_namespaces(rootless: bool) -> Check:
    sysctls = {name: _read(f"/proc/sys/{name.replace('.', '/')}") for name in (
        "user.max_user_namespaces", "kernel.unprivileged_userns_clone",
        "kernel.apparmor_restrict_unprivileged_userns")}
    error = probes.user_namespace()
    shown = ", ".join(f"{k} = {v}" for k, v in sysctls.items() if v is not None)
    value = {"works": not error, **{k: v for k, v in sysctls.items() if v is not None}}
    if not error:
        return Check("userns", True, True, f"user namespaces: can create one ({shown})", value=value)
    fix = "sysctl -w user.max_user_namespaces=15000"
    if sysctls["user.max_user_namespaces"] not in (None, "0"):
        if rootless and sysctls["kernel.unprivileged_userns_clone"] == "0":
            fix = "sysctl -w kernel.unprivileged_userns_clone=1 (Debian before 11)"
        elif rootless and sysctls["kernel.apparmor_restrict_unprivileged_userns"] == "1":
            fix = ("sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile "
                   "that allows `userns` for minirun's python (Ubuntu 23.10+)")
        elif "Operation not permitted" in error:
            # The sysctls allow it, so something else refuses unshare(2): the seccomp profile or
            # missing capabilities of a container we run in (docker's default profile blocks it).
            fix = ("inside a container, run minirun on the host, or give the container "
                   "--security-opt seccomp=unconfined and --cap-add SYS_ADMIN; else an LSM refuses it")
        else:
            fix = "a kernel with CONFIG_USER_NS=y"
    return Check("userns", False, True, f"user namespaces: cannot create one: {error} ({shown})", fix, value)


def subordinate_ids(rootless: bool) -> Check:
    if not rootless:
        from minirun import idranges

        uids, gids = idranges.shared_range("uid"), idranges.shared_range("gid")
        listed = userns.subordinate_range(idranges.subid_file("uid"), "root", 0) is not None
        where = "/etc/subuid" if listed else "the default, root has no line in /etc/subuid"
        pool = idranges.pool()
        return Check("subids", True, True,
                     f"remapped root: each container gets 65536 ids of its own from {pool.describe()}; "
                     f"--userns=shared: container ids 0-{uids[1] - 1} are host "
                     f"{uids[0]}-{uids[0] + uids[1] - 1} ({where})",
                     value={"uid": list(uids), "gid": list(gids), "pool": {"uid": pool.uids, "gid": pool.gids,
                                                                            "default": pool.default}})
    user, uid = _user_name(), os.getuid()
    subuid = userns.subordinate_range("/etc/subuid", user, uid)
    subgid = userns.subordinate_range("/etc/subgid", user, uid)
    value = {"uid": list(subuid) if subuid else None, "gid": list(subgid) if subgid else None}
    if subuid and subgid:
        return Check("subids", True, False,
                     f"subordinate ids: {user} has uids {subuid[0]}-{subuid[0] + subuid[1] - 1} and gids "
                     f"{subgid[0]}-{subgid[0] + subgid[1] - 1} (container ids 1..)", value=value)
    return Check("subids", False, False,
                 f"subordinate ids: {user} has no range in /etc/subuid or /etc/subgid, so only root "
                 "exists in containers (chown and --user fail)",
                 f"as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}", value)


def id_map_helpers(rootless: bool) -> Check:
    """newuidmap/newgidmap (shadow's uidmap package) write a user's subordinate ranges into a
    child's maps, which the user may not do: they must be setuid root or carry file capabilities
    (cap_setuid / cap_setgid, as Fedora installs them)."""
    found = {}
    for name in ("newuidmap", "newgidmap"):
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
        found[name] = (path, _privileged_how(path) if path else "")
    value = {name: {"path": p, "privilege": how or None} for name, (p, how) in found.items()}
    missing = [n for n, (p, how) in found.items() if not p or not how]
    if not missing:
        shown = ", ".join(f"{p} ({how})" for p, how in found.values())
        return Check("idmap-helpers", True, False, f"id map helpers: {shown}", value=value)
    needed = rootless and userns.subordinate_range("/etc/subuid", _user_name(), os.getuid()) is not None
    what = ", ".join(n if not found[n][0] else f"{found[n][0]} (neither setuid root nor file caps)"
                     for n in missing)
    return Check("idmap-helpers", False, False,
                 f"id map helpers: {what}" + (
                     "; rootless containers get only root" if needed
                     else "; only rootless containers with subordinate ids use them"),
                 "apt-get install uidmap (or: chmod u+s /usr/bin/newuidmap /usr/bin/newgidmap)", value)


def _privileged_how(path: str) -> str:
    st = os.stat(path)
    if st.st_uid == 0 and st.st_mode & stat.S_ISUID:
        return "setuid root"
    try:
        os.getxattr(path, "security.capability")
        return "file capabilities"
    except OSError:
        return ""


def cgroup_delegation(rootless: bool) -> Check:
    """Which controllers minirun may use: all of them as root; rootless, those of the highest
    cgroup above ours that belongs to the user (what systemd's Delegate= gives user@UID.service)."""
    kind = cgroups.mode()
    name = {"v2": "cgroup v2 (unified)", "hybrid": "cgroups hybrid (v1 controllers + a v2 tree)",
            "v1": "cgroup v1"}[kind]
    if not rootless:
        controllers = sorted({c for h in cgroups.hierarchies() for c in h.controllers
                              if not c.startswith("name=")})
        return Check("cgroups", True, False, f"{name}: controllers {' '.join(controllers)}",
                     value={"mode": kind, "delegated": controllers})
    delegated: set[str] = set()
    places = []
    for h in cgroups.hierarchies():
        if not h.mountpoint.is_relative_to(cgroups.CGROUP_ROOT):
            continue
        base = cgroups._delegated_base(h)
        if base is None:
            continue
        places.append(str(base))
        if h.version == 1:
            delegated |= set(h.controllers) - {"name=systemd"}
        else:
            delegated |= set((_read(str(base / "cgroup.controllers")) or "").split())
    value = {"mode": kind, "delegated": sorted(delegated), "cgroups": places}
    if delegated:
        return Check("cgroups", True, False, f"{name}: delegated to you: {' '.join(sorted(delegated))} "
                     f"(in {', '.join(places)})", value=value)
    return Check("cgroups", False, False,
                 f"{name}: no controller is delegated to you, so -m/--cpus/--pids-limit are refused "
                 "(containers still run, without a cgroup)",
                 f"cgroup v2 with systemd, and the drop-in {DELEGATE_DROPIN}", value)


def store_filesystem(store: Path) -> Check:
    """overlay needs an upper file system with d_type, xattrs (user.* rootless) and not overlay
    itself; NFS and FUSE won't do. The probe below tries it; this line names the file system."""
    fstype, mountpoint = _filesystem(store)
    good = fstype in ("ext4", "xfs", "btrfs", "tmpfs", "f2fs", "bcachefs")
    detail = f"store {paths.store_dir()}: on {fstype} (mounted at {mountpoint})"
    return Check("store-fs", good, False, detail, "" if good else
                 "move the store to ext4, xfs or btrfs (MINIRUN_ROOT=/path)",
                 {"path": str(paths.store_dir()), "fstype": fstype, "mountpoint": mountpoint})


def overlay(store: Path) -> Check:
    try:
        error = probes.overlay_in_userns(store)
    except OSError as e:  # the temporary directory itself
        error = str(e)
    if not error:
        return Check("overlay", True, True, "overlay in a user namespace: works on the store's file system",
                     value=True)
    return Check("overlay", False, True,
                 f"overlay in a user namespace: fails on the store's file system: {error}",
                 "Linux 5.11+ and a store on ext4, xfs or btrfs (tmpfs needs 6.6+ for user xattrs)", False)


def idmapped_mounts(rootless: bool, store: Path) -> Check:
    if rootless:
        return Check("idmap", True, False,
                     "idmapped mounts: not needed rootless (your files are root's in your containers)",
                     value=None)
    try:
        error = probes.idmapped_mount(store)
    except OSError as e:
        error = str(e)
    if not error:
        return Check("idmap", True, True, "idmapped mounts: the store's file system takes them "
                     "(remapped root sees the image's owners)", value=True)
    return Check("idmap", False, True, f"idmapped mounts: refused on the store: {error}",
                 "Linux 5.19+ with the store on ext4, xfs or btrfs, or run with --userns=host", False)


def seccomp() -> Check:
    error = probes.seccomp_filter()
    if not error:
        return Check("seccomp", True, True, "seccomp: a filter loads and acts", value=True)
    return Check("seccomp", False, True, f"seccomp: {error}",
                 "a kernel with CONFIG_SECCOMP_FILTER, or --security-opt seccomp=unconfined", False)


def packages(rootless: bool) -> Check:
    """The Python packages of the default paths: pyseccomp (compiles the seccomp profile, with
    libseccomp2), zstandard (zstd layers only). The bridge network needs none (netlink.py)."""
    found = {name: importlib.util.find_spec(name) is not None for name in ("pyseccomp", "zstandard")}
    wanted = ["pyseccomp"]
    missing = [n for n in wanted if not found[n]]
    shown = ", ".join(f"{n} {'yes' if ok else 'no'}" for n, ok in found.items())
    if not missing:
        return Check("packages", True, True, f"python packages: {shown}", value=found)
    return Check("packages", False, True, f"python packages: {shown}",
                 f"{sys.executable} -m pip install {' '.join(missing)}", found)


def slirp4netns(rootless: bool) -> Check:
    binary = shutil.which("slirp4netns")
    tun = Path("/dev/net/tun")
    try:
        mode = stat.S_IMODE(tun.stat().st_mode)
    except OSError:
        mode = None
    value = {"path": binary, "tun_mode": None if mode is None else oct(mode)}
    usable = mode is not None and (not rootless or os.access(tun, os.R_OK | os.W_OK))
    if binary and usable:
        return Check("slirp4netns", True, False, f"slirp4netns: {binary}, /dev/net/tun mode {mode:o}"
                     + (" (the rootless default network)" if rootless else ""), value=value)
    problem = ("not installed" if not binary else
               "/dev/net/tun is missing" if mode is None else f"/dev/net/tun is mode {mode:o}, not 666")
    fix = ("apt-get install slirp4netns" if not binary else
           "as root: mknod -m 666 /dev/net/tun c 10 200" if mode is None
           else "as root: chmod 666 /dev/net/tun")
    return Check("slirp4netns", False, False, f"slirp4netns: {problem}" +
                 ("; rootless containers get --network none" if rootless else ""), fix, value)


def nft(rootless: bool) -> Check:
    binary = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
    if binary:
        return Check("nft", True, False, f"nft: {binary}" + (" (root's bridge: NAT and -p)" if not rootless
                                                                else " (used by root's bridge only)"),
                     value=binary)
    return Check("nft", False, not rootless, "nft: not installed" +
                 ("; the default bridge network cannot start" if not rootless else " (root's bridge only)"),
                 "apt-get install nftables" + ("" if not rootless else ", or run with --network none"), None)


def unprivileged_ports(rootless: bool) -> Check:
    start = _read("/proc/sys/net/ipv4/ip_unprivileged_port_start")
    value = None if start is None else int(start)
    if not rootless:
        return Check("ports", True, False,
                     f"published ports: any (root; ip_unprivileged_port_start = {start})",
                     value=value)
    ok = value is not None and value <= 80
    detail = f"published ports: from {start} up, rootless (net.ipv4.ip_unprivileged_port_start)"
    return Check("ports", ok, False, detail, "" if ok else
                 "publish a high port (-p 8080:80), or as root: "
                 "sysctl -w net.ipv4.ip_unprivileged_port_start=80",
                 value)


# --- helpers ------------------------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _existing(path: Path) -> Path:
    """The store, or (before the first import) the directory it will be created in."""
    while not path.is_dir() and path != path.parent:
        path = path.parent
    return path


def _scratch(store: Path) -> Path:
    """Where the overlay probe makes its directories: the store's tmp/, beside imports' staging
    directories (made now if need be, as the first import would), else the store's nearest
    existing parent."""
    tmp = paths.store_dir() / "tmp"
    try:
        tmp.mkdir(parents=True, exist_ok=True)
    except OSError:
        return store
    return tmp


def _filesystem(path: Path) -> tuple[str, str]:
    """(fstype, mount point) of the mount that holds `path`, from /proc/self/mountinfo (proc(5))."""
    best = ("unknown", "/")
    resolved = str(path.resolve())
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mountpoint = fields[4].replace("\\040", " ")
            fstype = fields[fields.index("-") + 1]
            inside = resolved == mountpoint or resolved.startswith(mountpoint.rstrip("/") + "/")
            if inside and len(mountpoint) >= len(best[1]):
                best = (fstype, mountpoint)
    return best
