"""User namespace id maps: who the container's users are on the host.

A new user namespace starts with no ids mapped; its processes run as the overflow id 65534
("nobody") and can do little until the parent writes /proc/PID/uid_map and gid_map
(user_namespaces(7), "User and group ID mappings"). Each line is `INSIDE OUTSIDE COUNT`.

 - rootful (for now): an identity map, 0-4294967294 inside = the same ids outside, so root in
   the container is root on the host, as in classic docker. A later step remaps root.
 - rootless: container root is the invoking user (`0 UID 1`). An unprivileged process may
   write only that one line itself, and only after writing "deny" to /proc/PID/setgroups
   (CVE-2014-8989: otherwise dropping supplementary groups could gain access a group denies).
   More ids need the setuid helpers newuidmap/newgidmap, which check /etc/subuid and
   /etc/subgid: with a range there, container ids 1.. map onto it, so `chown 1000 f` works.
"""

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from minirun.errors import MinirunError


@dataclass(frozen=True)
class IdMap:
    inside: int
    outside: int
    count: int

    def line(self) -> str:
        return f"{self.inside} {self.outside} {self.count}"


@dataclass(frozen=True)
class IdMapping:
    uids: list[IdMap]
    gids: list[IdMap]
    helpers: bool  # write through newuidmap/newgidmap (rootless with a subordinate range)

    def maps_uid(self, uid: int) -> bool:
        return any(m.inside <= uid < m.inside + m.count for m in self.uids)

    def maps_gid(self, gid: int) -> bool:
        return any(m.inside <= gid < m.inside + m.count for m in self.gids)


def subordinate_range(path: str, user: str, uid: int) -> tuple[int, int] | None:
    """The first `user:start:count` (or `uid:start:count`) line of /etc/subuid or /etc/subgid."""
    try:
        with open(path) as f:
            for line in f:
                fields = line.strip().split(":")
                if len(fields) == 3 and fields[0] in (user, str(uid)) and int(fields[2]) > 0:
                    return int(fields[1]), int(fields[2])
    except (OSError, ValueError):
        return None
    return None


def plan(rootless: bool) -> IdMapping:
    if not rootless:
        identity = [IdMap(0, 0, 4294967295)]
        return IdMapping(identity, identity, helpers=False)
    uid, gid = os.getuid(), os.getgid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    subuid = subordinate_range("/etc/subuid", user, uid)
    subgid = subordinate_range("/etc/subgid", user, uid)
    have_helpers = bool(shutil.which("newuidmap") and shutil.which("newgidmap"))
    if subuid and subgid and have_helpers:
        return IdMapping([IdMap(0, uid, 1), IdMap(1, subuid[0], subuid[1])],
                         [IdMap(0, gid, 1), IdMap(1, subgid[0], subgid[1])], helpers=True)
    return IdMapping([IdMap(0, uid, 1)], [IdMap(0, gid, 1)], helpers=False)


def check_kernel_allows(rootless: bool) -> None:
    """Fail early, with the fix, where the host forbids unprivileged user namespaces."""
    if not rootless:
        return
    checks = [
        ("/proc/sys/user/max_user_namespaces", "0",
         "user namespaces are disabled (user.max_user_namespaces = 0); "
         "fix: sysctl -w user.max_user_namespaces=15000"),
        ("/proc/sys/kernel/unprivileged_userns_clone", "0",
         "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0); "
         "fix: sysctl -w kernel.unprivileged_userns_clone=1"),
        # Ubuntu 23.10+: AppArmor lets only profiled programs create user namespaces.
        ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1",
         "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns"
         " = 1); fix: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or add an AppArmor "
         "profile allowing `userns` for minirun's python"),
    ]
    for path, bad, message in checks:
        try:
            if Path(path).read_text().strip() == bad:
                raise MinirunError(message)
        except OSError:
            continue


def write_maps(pid: int, mapping: IdMapping) -> None:
    """Map ids for the child `pid`, which waits (blocked on the sync socket) until this is done."""
    if mapping.helpers:
        for helper, maps in (("newuidmap", mapping.uids), ("newgidmap", mapping.gids)):
            args = [helper, str(pid)] + [str(n) for m in maps for n in (m.inside, m.outside, m.count)]
            result = subprocess.run(args, capture_output=True, text=True)
            if result.returncode != 0:
                raise MinirunError(f"{helper} failed: {result.stderr.strip() or result.returncode}")
        return
    with open(f"/proc/{pid}/uid_map", "w") as f:
        f.write("\n".join(m.line() for m in mapping.uids))
    if os.geteuid() != 0:
        with open(f"/proc/{pid}/setgroups", "w") as f:
            f.write("deny")
    with open(f"/proc/{pid}/gid_map", "w") as f:
        f.write("\n".join(m.line() for m in mapping.gids))
