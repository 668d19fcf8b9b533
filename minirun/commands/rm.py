"""`minirun rm [-f] NAME...`: remove containers; -f kills a running one first.

A container is removed under the records' lock, and only if, under that lock, it neither runs
nor starts: `start` claims a container under the same lock (state.claim), so an `rm -f` racing
a `start` either removes it first (the start then finds no such container) or waits for the
start to end and then stops and removes what it started, never reports success while it runs.
"""

import argparse
import signal
import sys
import time
from pathlib import Path

from minirun import container, paths, state
from minirun.errors import ContainerNotFound, MinirunError

START_WAIT = 120.0  # seconds rm -f waits for a start under way (a pull is not part of `start`)


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
    deadline, killed = time.monotonic() + START_WAIT, False
    while True:
        with state.exclusive(state_dir):
            try:
                # Read it again, under the lock: its monitor may have recorded the exit and
                # cleaned up what it could (with --rm, everything), or a `start` claimed it.
                record = state.find(state_dir, record.id, warn=False)
            except ContainerNotFound:
                return
            # (Killed and still "running": its monitor did not record the exit in time, or the
            # record names a PID 1 that is not provably the container's: remove what it records.)
            if not record.starting and (record.status != "running" or killed):
                # A record may say its monitor is gone while the kernel shows it still watching:
                # the container is not removed from under it, nor left running without its files.
                if not record.monitor_alive():
                    container.end_detached_monitor(record.id, force, record.name)
                container.remove(state_dir, record)
                return
        if record.starting:  # wait for the start: then it runs (killed below) or it failed
            if not force:
                raise MinirunError(f"container {record.name} is still starting: try again in a moment")
            if time.monotonic() > deadline:
                raise MinirunError(f"container {record.name} is still starting after {START_WAIT:.0f} s")
            time.sleep(0.02)
            continue
        if not force:
            paused = " (it is paused: unpause it, then stop it)" if container.paused(record) else ""
            raise MinirunError(f"container {record.name} is running: stop it first, or use rm -f{paused}")
        # Through a pidfd proven to be its PID 1, never the bare pid of the record; then its
        # monitor records the exit and cleans up (with --rm, everything).
        # (Not its monitor's end if PID 1 still lives but is not provably the container's: the
        # record is lying, and its "monitor" may be any process.)
        exited = state.process_start_time(record.pid) != record.pid_start
        if container.send_signal(record, signal.SIGKILL) or exited:
            container.thaw_for_signal(record)  # paused: v1's freezer holds even SIGKILL
            container.wait_monitor(state_dir, record, 10)
        killed = True


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
