"""`minirun run [OPTIONS] IMAGE [COMMAND] [ARG...]`: create and run a container in the foreground."""

import argparse
import os
import sys

from minirun import runtime, spec
from minirun.errors import MinirunError


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("run", help="run a command in a new container", add_help=False)
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("--name", help="name the container")
    p.add_argument("-h", "--hostname", help="container host name")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]", help="set a variable")
    p.add_argument("-w", "--workdir", help="working directory inside the container")
    p.add_argument("-u", "--user", help="USER[:GROUP] or UID[:GID] inside the container")
    p.add_argument("-v", "--volume", action="append", default=[], metavar="HOST:CONTAINER[:ro]",
                   help="bind mount a host path")
    p.add_argument("--network", "--net", default="none", help="none (default) or host")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    p.add_argument("--init", action="store_true", help="run an init as PID 1 that forwards signals and reaps")
    p.add_argument("--entrypoint", help="override the image's entrypoint")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")


def to_spec(args: argparse.Namespace) -> spec.ContainerSpec:
    if args.tty and not os.isatty(0):
        raise MinirunError("the input device is not a TTY; drop -t, or run from a terminal")
    return spec.ContainerSpec(
        image=args.image, command=list(args.command),
        entrypoint=None if args.entrypoint is None else ([args.entrypoint] if args.entrypoint else []),
        name=args.name, hostname=spec.check_hostname(args.hostname), env=spec.parse_env(args.env),
        workdir=spec.check_workdir(args.workdir), user=spec.check_user(args.user),
        binds=[spec.parse_bind(v) for v in args.volume], network=spec.check_network(args.network),
        interactive=args.interactive, tty=args.tty, init=args.init, remove=args.rm,
    )


def run(args: argparse.Namespace) -> int:
    container = to_spec(args)
    sys.stdout.flush()
    return runtime.run(container)
