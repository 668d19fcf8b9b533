"""`minirun start [-a] [-i] CONTAINER...`: start created or exited containers.

The container is started from the arguments its `run` or `create` was given (kept in its
record), on the same container directory: what it wrote is still there. Without -a it runs
detached (a monitor of its own) and its name is printed; with -a this process is its monitor,
attached, and leaves with its exit code.
"""

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from minirun import paths, runtime, state
from minirun.commands import run as run_verb
from minirun.errors import MinirunError


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("start", help="start created or stopped containers")
    p.add_argument("-a", "--attach", action="store_true", help="attach stdout/stderr, exit with its code")
    p.add_argument("-i", "--interactive", action="store_true", help="attach stdin too")
    p.add_argument("names", nargs="+", metavar="CONTAINER")


def start(state_dir: Path, name: str, attach: bool, interactive: bool) -> int:
    record = state.find(state_dir, name)
    if record.status == "running" and not attach:
        return 0  # docker: starting a running container is not an error
    if record.status == "running":
        raise MinirunError(f"container {record.name} is running: use `minirun attach`")
    if record.status == "created" and record.monitor_alive():
        raise MinirunError(f"container {record.name} is starting already")
    from minirun.cli import _Parser

    parser = _Parser(prog="minirun start", add_help=False)
    run_verb.add_container_flags(parser)
    parser.add_argument("-d", "--detach", action="store_true")  # `run -d`: how it ran then, not now
    args = parser.parse_args(record.create_args)
    spec = replace(run_verb.to_spec(args, check_tty=attach), name=None, pull="never",
                   interactive=args.interactive and (interactive or not attach))
    options = run_verb.to_options(args, "", detach=not attach)._replace(args=tuple(record.create_args))
    prepared = runtime.prepare(spec)
    if prepared.image.id != record.image_id:
        raise MinirunError(f"the image of container {record.name} ({record.image}) has changed or is gone")
    return runtime.start(prepared, record, options, attach=attach)


def run(args: argparse.Namespace) -> int:
    if args.attach and len(args.names) > 1:
        raise MinirunError("start -a takes one container")
    code = 0
    for name in args.names:
        try:
            result = start(paths.state_dir(), name, args.attach, args.interactive)
        except MinirunError as e:
            if args.attach:
                raise
            print(f"minirun: {e}", file=sys.stderr)
            code = 1
            continue
        if args.attach:
            return result
        print(name)
    return code

