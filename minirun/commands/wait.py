"""`minirun wait CONTAINER...`: block until each container stops, print its exit code."""

import argparse
import sys

from minirun import container, paths, state
from minirun.errors import MinirunError


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("wait", help="wait for containers to stop, print their exit codes")
    p.add_argument("names", nargs="+", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    code = 0
    state_dir = paths.state_dir()
    for name in args.names:
        try:
            record = state.find(state_dir, name)
            if record.status in ("running", "created"):
                # Its monitor records the exit code, then ends: wait for that, however long.
                # (A "created" container that never started has no monitor: its code is now.)
                after = container.wait_monitor(state_dir, record)
                if after is None:
                    raise MinirunError(f"container {name} was removed before its exit code could be read")
                record = after
            print(record.exit_code, flush=True)
        except MinirunError as e:
            print(f"minirun: {e}", file=sys.stderr)
            code = 1
    return code
