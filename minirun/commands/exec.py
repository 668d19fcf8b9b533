"""`minirun exec [-i] [-t] [-d] [-u USER] [-w DIR] [-e K=V] CONTAINER COMMAND [ARG...]`:
run one more command in a running container (minirun/enter.py tells how, step by step)."""

import argparse
import os
import sys

from minirun import enter, paths, spec, state
from minirun.errors import MinirunError


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("exec", help="run a command in a running container")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    p.add_argument("-d", "--detach", action="store_true", help="run the command in the background")
    p.add_argument("--explain", action="store_true",
                   help="narrate each step (setns, cgroup, security) on stderr, with the real values")
    p.add_argument("-u", "--user", help="USER[:GROUP] or UID[:GID] (default: the container's)")
    p.add_argument("-w", "--workdir", help="working directory (default: the container's)")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]", help="set a variable")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")


def run(args: argparse.Namespace) -> int:
    if not args.command:
        raise MinirunError("exec: a command is required: minirun exec CONTAINER COMMAND [ARG...]")
    if args.tty and not args.detach and not os.isatty(0):
        raise MinirunError("the input device is not a TTY; drop -t, or run from a terminal")
    record = state.find(paths.state_dir(), args.container)
    plan = enter.plan(record, list(args.command), env=spec.parse_env(args.env),
                      user=spec.check_user(args.user), workdir=spec.check_workdir(args.workdir),
                      tty=args.tty, interactive=args.interactive, detach=args.detach,
                      store=paths.store_dir())
    sys.stdout.flush()
    return enter.run(record, plan)
