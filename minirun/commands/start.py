"""`minirun start [-a] [-i] CONTAINER...`: start created or exited containers.

The container is started from the arguments its `run` or `create` was given (kept in its
record), on the same container directory: what it wrote is still there. Without -a it runs
detached (a monitor of its own) and its name is printed; with -a this process is its monitor,
attached, and leaves with its exit code.

The order matters against a concurrent `rm -f` and against signals: everything that can fail
without side effects first (the record's flags, the image), then SIGINT/SIGTERM/SIGHUP... are
held (runtime.hold_signals, as `run -d` does: a pending one reaches the container once it runs,
and `start` leaves with 128+N), then the container is claimed under the records' lock
(state.claim): either `rm` removed it before ("no such container") or it waits for this start.
"""

import argparse
import signal
import sys
from pathlib import Path

from minirun import container, paths, runtime, state
from minirun.commands import run as run_verb
from minirun.errors import MinirunError
from minirun.state import Record


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("start", help="start created or stopped containers")
    p.add_argument("-a", "--attach", action="store_true", help="attach stdout/stderr, exit with its code")
    p.add_argument("-i", "--interactive", action="store_true", help="attach stdin too")
    run_verb.add_detach_keys(p)
    p.add_argument("names", nargs="+", metavar="CONTAINER")


def check_startable(record: Record, attach: bool) -> bool:
    """May `start` start it? False: it runs already, and without -a that is not an error (docker)."""
    if container.paused(record):  # docker's words
        raise MinirunError(f"cannot start a paused container {record.name}, try unpause instead")
    if record.status == "running" and not attach:
        return False
    if record.status == "running":
        raise MinirunError(f"container {record.name} is running: use `minirun attach`")
    if record.starting:
        raise MinirunError(f"container {record.name} is starting already")
    return True


def start(state_dir: Path, name: str, attach: bool, interactive: bool,
          detach_keys: str | None = None) -> tuple[int, Record | None]:
    """Start one container; its code (with -a) and its record, None if it ran already."""
    record = state.find(state_dir, name)
    if not check_startable(record, attach):
        return 0, None
    from minirun.cli import _Parser

    parser = _Parser(prog="minirun start", add_help=False)
    run_verb.add_container_flags(parser)
    parser.add_argument("-d", "--detach", action="store_true")  # `run -d`: how it ran then, not now
    run_verb.add_detach_keys(parser)  # `run --detach-keys`: then; `start --detach-keys`: now
    args = parser.parse_args(record.create_args)
    if detach_keys is not None:
        args.detach_keys = detach_keys
    spec = run_verb.to_spec(args, check_tty=attach)._replace(name=None, pull="never",
                   interactive=args.interactive and (interactive or not attach))
    options = run_verb.to_options(args, "", detach=not attach)._replace(args=tuple(record.create_args))
    prepared = runtime.prepare(spec)
    if prepared.image.id != record.image_id:
        raise MinirunError(f"the image of container {record.name} ({record.image}) has changed or is gone")
    runtime.hold_signals()  # from the claim until the command runs, as `run -d` (issue 12 item 10)
    try:
        record, claimed = state.claim(state_dir, record.id, name)
        if not claimed and not check_startable(record, attach):  # started meanwhile by another
            signal.pthread_sigmask(signal.SIG_UNBLOCK, runtime.FORWARDED)
            return 0, None
        container.clear_dead_run(state_dir, record)  # claimed: what a dead monitor left is ours now
    except BaseException:
        # Nothing claimed (or the dead run not cleared): a signal held meanwhile ends us now, with
        # 128+N (minirun/__init__.py).
        signal.pthread_sigmask(signal.SIG_UNBLOCK, runtime.FORWARDED)
        raise
    return runtime.start(prepared, record, options, attach=attach), record


def run(args: argparse.Namespace) -> int:
    if args.attach and len(args.names) > 1:
        raise MinirunError("start -a takes one container")
    code = 0
    for name in args.names:
        try:
            result, record = start(paths.state_dir(), name, args.attach, args.interactive, args.detach_keys)
        except MinirunError as e:
            if args.attach or e.code > 128:  # interrupted by a signal: 128+N, as `run -d`
                raise
            print(f"minirun: {e}", file=sys.stderr)
            code = 1
            continue
        if args.attach:
            return result
        print(name, flush=True)
        if record is not None:  # we started it: a signal held meanwhile goes to it now
            runtime.interrupted_detached(record)
    return code
