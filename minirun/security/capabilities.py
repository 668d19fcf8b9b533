"""Capabilities: root's power cut into ~40 pieces, and the few a container keeps (capabilities(7)).

A process has five sets. *Bounding* limits what any execve(2) can ever grant; *permitted* is
what it may use; *effective* what is in force now; *inheritable* and *ambient* what may pass
across execve. For root, execve(2) makes permitted = bounding (root's programs count as having
every file capability), so the bounding set is what really limits a container's root.

minirun keeps Docker's default set (CapBnd = 00000000a80425fb in /proc/self/status): enough
to chown files, bind port 80, use ping (net_raw) and switch users, and nothing that reaches
the kernel's shared state: no sys_admin (mount, namespaces), sys_module, sys_ptrace, sys_boot.
The inheritable set stays empty, as in Docker since 23.0: a non-empty one let a program with
inheritable file capabilities gain them (CVE-2022-24769). Nothing is ambient.

The system calls are wrapped in minirun/kernel.py (capset, prctl), not taken from
python-prctl: three system calls do not justify a C extension that needs libcap-dev and a
compiler to install (it imports fast, 1.5 ms, but so does ctypes, already loaded).
"""

from pathlib import Path

from minirun import kernel
from minirun.errors import MinirunError

# <linux/capability.h>
NUMBERS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3, "CAP_FSETID": 4,
    "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15, "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19, "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23, "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27, "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31, "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35, "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38, "CAP_BPF": 39, "CAP_CHECKPOINT_RESTORE": 40,
}

DEFAULT = frozenset({
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_CHROOT",
    "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SETFCAP",
})


def _name(value: str) -> str:
    name = value.strip().upper()
    name = name if name.startswith("CAP_") else "CAP_" + name
    if name != "CAP_ALL" and name not in NUMBERS:
        raise MinirunError(f"invalid capability {value!r}: see capabilities(7) for the names")
    return name


def resolve(add: list[str], drop: list[str]) -> frozenset[str]:
    """Docker's rule: start from the default set, drop (ALL empties it), then add (ALL = every one)."""
    added, dropped = {_name(v) for v in add}, {_name(v) for v in drop}
    caps = set() if "CAP_ALL" in dropped else set(DEFAULT) - dropped
    caps |= set(NUMBERS) if "CAP_ALL" in added else added
    return frozenset(caps)


def mask(caps: frozenset[str]) -> int:
    """The set as the kernel writes it in /proc/PID/status (CapEff, CapBnd, ...)."""
    return sum(1 << NUMBERS[c] for c in caps)


def last_cap() -> int:
    """The highest capability this kernel knows; the bounding set covers 0..last_cap."""
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return max(NUMBERS.values())


def drop_bounding(keep: frozenset[str]) -> None:
    """PR_CAPBSET_DROP every capability not kept. Needs CAP_SETPCAP, so it is done while root."""
    kept = mask(keep)
    for cap in range(last_cap() + 1):
        if not kept & (1 << cap):
            kernel.drop_bounding(cap)


def apply(caps: frozenset[str], uid: int) -> None:
    """Set the process's own sets, after the switch to the container user.

    Root keeps `caps` effective and permitted. Any other user gets none: setresuid(2) away from
    root already cleared them ("Effect of user ID changes on capabilities" in capabilities(7)),
    and execve(2) gives a non-root program no capabilities unless ambient, which stays empty.
    """
    kernel.clear_ambient()
    bits = mask(caps) if uid == 0 else 0
    kernel.capset(bits, bits, 0)
