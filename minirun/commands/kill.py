"""`minirun kill [-s SIGNAL] CONTAINER...`: send a signal (default SIGKILL) to PID 1.

Through a pidfd proven to be the container's PID 1 (container.open_pid1): never a bare pid
from a record, which may by now belong to another process. A paused container is thawed after
SIGKILL or its stop signal, so that it acts on it (docker's rule); any other signal waits, queued,
until `minirun unpause`.
"""

import argparse
import signal
import sys

from minirun import container, paths, state
from minirun.errors import MinirunError


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("kill", help="signal running containers")
    p.add_argument("-s", "--signal", default="KILL", help="signal name or number (default KILL)")
    p.add_argument("names", nargs="+", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    number = container.parse_signal(args.signal)  # bad: 125, before any container is touched
    code = 0
    for name in args.names:
        try:
            record = state.find(paths.state_dir(), name)
            if not container.send_signal(record, number):
                raise MinirunError(f"cannot kill container {name}: it is not running")
            stop_signal = container.image_stop_signal(str(record.config.get("StopSignal") or ""))
            if number in (signal.SIGKILL, signal.Signals[stop_signal]):
                container.thaw_for_signal(record)
            print(name)
        except MinirunError as e:
            print(f"minirun: {e}", file=sys.stderr)
            code = 1
    return code
