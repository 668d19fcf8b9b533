"""`minirun rm [-f] NAME...`: remove containers; -f kills a running one first."""

import argparse
import signal
import sys
from pathlib import Path

from minirun import container, paths, state
from minirun.errors import ContainerNotFound, MinirunError


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("rm", help="remove containers")
    p.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    p.add_argument("names", nargs="+", metavar="CONTAINER")


def remove(state_dir: Path, name: str, force: bool) -> None:
    try:
        record = state.find(state_dir, name)
    except ContainerNotFound:
        # Its record may be garbage, empty or deleted while the container still exists: then
        # remove it through what the kernel and the store know (its cgroup, its directory).
        store = paths.store_dir()
        with state.exclusive(state_dir):
            orphan = container.orphan_id(state_dir, store, name)
            if orphan is None:
                raise
            container.remove_orphan(state_dir, store, orphan, force)
        return
    if record.status == "created" and record.monitor_alive():
        raise MinirunError(f"container {record.name} is still starting: try again in a moment")
    if record.status == "running":
        if not force:
            raise MinirunError(f"container {record.name} is running: stop it first, or use rm -f")
        # Through a pidfd proven to be its PID 1, never the bare pid of the record; then its
        # monitor records the exit and cleans up (with --rm, everything).
        # (Not its monitor's end if PID 1 still lives but is not provably the container's: the
        # record is lying, and its "monitor" may be any process.)
        exited = state.process_start_time(record.pid) != record.pid_start
        if container.send_signal(record, signal.SIGKILL) or exited:
            container.wait_monitor(state_dir, record, 10)
    with state.exclusive(state_dir):
        try:
            # Read it again: its monitor has recorded the exit and cleaned up what it could
            # (with --rm, everything), so only what is still listed is left to remove.
            record = state.find(state_dir, record.id, warn=False)
        except ContainerNotFound:
            return
        container.remove(state_dir, record)


def run(args: argparse.Namespace) -> int:
    code = 0
    for name in args.names:
        try:
            remove(paths.state_dir(), name, args.force)
            print(name)
        except MinirunError as e:
            print(f"minirun: {e}", file=sys.stderr)
            code = 1
    return code
