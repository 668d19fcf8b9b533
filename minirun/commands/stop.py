"""`minirun stop [-t SECONDS] [-s SIGNAL] CONTAINER...`: stop running containers, as docker does.

The stop signal (`--stop-signal` of run/create, docker's default SIGTERM; `-s` here) goes to
PID 1; if it has not exited after the timeout (`--stop-timeout`, default 10 s; `-t` here),
SIGKILL follows. A container that honoured SIGTERM exits 143 (128 + 15), a killed one 137.
Signals go through a pidfd proven to be the container's PID 1 (container.open_pid1).
"""

import argparse
import sys

from minirun import container, paths, state
from minirun.errors import MinirunError


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("stop", help="stop running containers")
    p.add_argument("-t", "--time", "--timeout", dest="time", type=int, default=None, metavar="SECONDS",
                   help="seconds before SIGKILL (default: the container's --stop-timeout, 10)")
    p.add_argument("-s", "--signal", help="signal to send first (default: the container's --stop-signal)")
    p.add_argument("names", nargs="+", metavar="CONTAINER")


def stop_one(name: str, timeout: int | None, sig: str | None) -> None:
    state_dir = paths.state_dir()
    record = state.find(state_dir, name)
    default = int(record.config.get("StopTimeout", container.DEFAULT_STOP_TIMEOUT))
    seconds = timeout if timeout is not None else default
    number = container.parse_signal(sig or str(record.config.get("StopSignal") or "SIGTERM"))
    container.stop(state_dir, record, seconds, number)


def run(args: argparse.Namespace) -> int:
    if args.signal is not None:
        container.parse_signal(args.signal)  # a bad signal is a usage error: 125 before anything
    code = 0
    for name in args.names:
        try:
            stop_one(name, args.time, args.signal)
            print(name)
        except MinirunError as e:
            print(f"minirun: {e}", file=sys.stderr)
            code = 1
    return code
