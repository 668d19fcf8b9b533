"""`minirun stop [-t SECONDS] [-s SIGNAL] CONTAINER...`: stop running containers, as docker does.

The stop signal (`--stop-signal` of run/create, docker's default SIGTERM; `-s` here) goes to
PID 1; if it has not exited after the timeout (`--stop-timeout`, default 10 s; `-t` here),
SIGKILL follows. A container that honoured SIGTERM exits 143 (128 + 15), a killed one 137.
All the named containers are stopped together, as docker's CLI does. Signals go through a
pidfd proven to be the container's PID 1 (container.open_pid1).
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


def how(record: state.Record, timeout: int | None, sig: str | None) -> tuple[state.Record, float, int]:
    """(record, seconds before SIGKILL, stop signal) from the flags, else the container's own."""
    default = int(record.config.get("StopTimeout", container.DEFAULT_STOP_TIMEOUT))
    seconds = timeout if timeout is not None else default
    return record, seconds, container.parse_signal(sig or str(record.config.get("StopSignal") or "SIGTERM"))


def stop(names: list[str], timeout: int | None, sig: str | None) -> tuple[int, list[str]]:
    """Stop every container found: 1 if any was not found, and the names of those stopped."""
    state_dir = paths.state_dir()
    code, found = 0, []
    for name in names:
        try:
            found.append((name, how(state.find(state_dir, name), timeout, sig)))
        except MinirunError as e:
            print(f"minirun: {e}", file=sys.stderr)
            code = 1
    container.stop(state_dir, [plan for _, plan in found])
    return code, [name for name, _ in found]


def run(args: argparse.Namespace) -> int:
    if args.signal is not None:
        container.parse_signal(args.signal)  # a bad signal is a usage error: 125 before anything
    code, stopped = stop(args.names, args.time, args.signal)
    for name in stopped:
        print(name)
    return code
