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
    record = state.find(state_dir, name)
    if record.status == "created" and record.monitor_alive():
        raise MinirunError(f"container {record.name} is still starting: try again in a moment")
    if record.status == "running":
        if not force:
            raise MinirunError(f"container {record.name} is running: stop it first, or use rm -f")
        # Through a pidfd proven to be its PID 1, never the bare pid of the record; then its
        # monitor records the exit and cleans up (with --rm, everything).
        container.send_signal(record, signal.SIGKILL)
        container.wait_monitor(state_dir, record, 10)
    with state.exclusive(state_dir):
        try:
            # Read it again: its monitor has recorded the exit and cleaned up what it could
            # (with --rm, everything), so only what is still listed is left to remove.
            record = state.find(state_dir, record.id)
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
