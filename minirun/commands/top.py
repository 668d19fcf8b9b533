"""`minirun top CONTAINER [ps OPTIONS]`: the container's processes, as the host's `ps -ef` shows them.

Like `docker top`: the processes are those in the container's PID namespace (PID 1's, as
/proc/PID/ns/pid names it), which includes what `minirun exec` started there; their pids are
the host's. The table is the host's `ps` (procps), given those pids.
"""

import argparse
import contextlib
import os
import subprocess

from minirun import paths, procfs, state
from minirun.errors import MinirunError


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("top", help="show a container's processes")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("ps_options", nargs=argparse.REMAINDER, metavar="PS-OPTIONS", help="default: -f")


def processes(pid1: int) -> list[int]:
    """Every process in PID 1's PID namespace (or one below it), PID 1 first."""
    try:
        namespace = os.readlink(f"/proc/{pid1}/ns/pid")
    except OSError:
        return []
    found = [pid1]
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != pid1:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry}/ns/pid") == namespace or _below(int(entry), pid1):
                    found.append(int(entry))
    return found


def _below(pid: int, ancestor: int) -> bool:
    """Is `pid` a descendant of `ancestor` (for namespaces a container's own children made)?"""
    for _ in range(64):
        pid = procfs.parent(pid)
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
    return False


def run(args: argparse.Namespace) -> int:
    record = state.find(paths.state_dir(), args.container)
    if record.status != "running" or not record.pid:
        raise MinirunError(f"container {record.name} is not running")
    pids = processes(record.pid)
    if not pids:
        raise MinirunError(f"container {record.name} is not running")
    options = args.ps_options or ["-f"]
    try:
        result = subprocess.run(["ps", *options, "-p", ",".join(map(str, pids))], capture_output=True,
                                text=True, timeout=30, check=False)
    except FileNotFoundError:
        raise MinirunError("top needs the host's ps (procps)") from None
    if result.returncode not in (0, 1) or not result.stdout:
        raise MinirunError(f"ps {' '.join(options)}: {result.stderr.strip() or 'failed'}")
    print(result.stdout, end="")
    return 0
