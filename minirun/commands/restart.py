"""`minirun restart [-t SECONDS] CONTAINER...`: stop them (as `minirun stop`), then start each
detached, on the same container directory."""

import argparse
import sys

from minirun import paths, runtime
from minirun.commands import start as start_verb
from minirun.commands import stop as stop_verb
from minirun.errors import MinirunError


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("restart", help="restart containers")
    p.add_argument("-t", "--time", "--timeout", dest="time", type=int, default=None, metavar="SECONDS",
                   help="seconds before SIGKILL (default: the container's --stop-timeout, 10)")
    p.add_argument("names", nargs="+", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    code, stopped = stop_verb.stop(args.names, args.time, None)  # all together, as `stop` does
    for name in stopped:
        try:
            _, record = start_verb.start(paths.state_dir(), name, attach=False, interactive=False)
            print(name, flush=True)
            if record is not None:  # a signal held meanwhile: the container gets it
                runtime.interrupted_detached(record)
        except MinirunError as e:
            if e.code > 128:  # interrupted by a signal: 128+N
                raise
            print(f"minirun: {e}", file=sys.stderr)
            code = 1
    return code
