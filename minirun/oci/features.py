"""`minirun-oci features`: what this runtime implements, as the runtime spec's features.md JSON,
and `minirun-oci spec`: a default config.json (the container of `runc spec`, with busybox's sh)."""

import json
import os

from minirun.errors import MinirunError
from minirun.oci.child import FLAGS, PROPAGATION
from minirun.oci.config import HOOK_KINDS, NAMESPACE_FLAGS
from minirun.security.capabilities import DEFAULT, NUMBERS


def features() -> int:
    print(
        json.dumps(
            {
                "ociVersionMin": "1.0.0",
                "ociVersionMax": "1.0.2",
                "hooks": list(HOOK_KINDS),
                "mountOptions": sorted([*FLAGS, *PROPAGATION]),
                "linux": {
                    "namespaces": sorted(NAMESPACE_FLAGS),
                    "capabilities": sorted(NUMBERS),
                    "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
                    "seccomp": {
                        "enabled": True,
                        "actions": [
                            "SCMP_ACT_ALLOW",
                            "SCMP_ACT_ERRNO",
                            "SCMP_ACT_KILL",
                            "SCMP_ACT_KILL_PROCESS",
                            "SCMP_ACT_LOG",
                            "SCMP_ACT_TRAP",
                        ],
                    },
                    "apparmor": {"enabled": True},  # applied where the host has it (child.py)
                    "selinux": {"enabled": False},
                },
                "annotations": {"org.opencontainers.runc.checkpoint.enabled": "false"},
            },
            indent=2,
        )
    )
    return 0


def default_spec() -> dict[str, object]:
    caps = sorted(DEFAULT)
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "minirun",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")],
            "maskedPaths": [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/proc/scsi",
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def spec(bundle: str) -> int:
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise MinirunError(f"{path} exists already: remove it first")
    with open(path, "w") as f:
        json.dump(default_spec(), f, indent=2)
        f.write("\n")
    return 0
