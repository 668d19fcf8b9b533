"""`minirun wait CONTAINER...`: block until each container stops, print its exit code.

A --rm container removes itself once it has exited, record and exit code file included; a
waiter that started while it ran still prints its code, as docker's does: it holds the exit
code file open from before (state.open_exit_file), and the monitor writes the code into that
very inode before it removes the name. One that is gone already: "no such container", exit 1."""

import argparse
import os
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
                code_fd = state.open_exit_file(state_dir, record.id)
                try:
                    after = container.wait_monitor(state_dir, record)
                    kept = state.read_exit_fd(code_fd) if after is None and code_fd is not None else None
                finally:
                    if code_fd is not None:
                        os.close(code_fd)
                if after is not None:
                    record = after
                elif kept is not None:  # removed (--rm, rm -f) after its monitor wrote the code
                    record.exit_code = kept
                else:
                    raise MinirunError(f"container {name} was removed before its exit code could be read")
            print(record.exit_code, flush=True)
        except MinirunError as e:
            print(f"minirun: {e}", file=sys.stderr)
            code = 1
    return code
