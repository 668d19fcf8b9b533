"""The `minirun` command: docker-compatible verbs, one small module per verb in minirun/commands/.

Every verb module has `add_parser(subparsers)` and `run(args) -> int`. This file only wires
them together and turns errors into docker's exit codes: a MinirunError prints one line and
leaves with its code (125 by default); nothing a user types should ever print a traceback.
"""

import argparse
import contextlib
import gc
import importlib
import os
import sys
from typing import Any, NoReturn

from minirun import trace
from minirun.errors import RUNTIME_ERROR, MinirunError

# In `minirun --help` order. Modules are imported lazily, only the verb that runs is loaded.
VERBS = {
    "run": "minirun.commands.run",
    "exec": "minirun.commands.exec",
    "top": "minirun.commands.top",
    "port": "minirun.commands.port",
    "create": "minirun.commands.create",
    "start": "minirun.commands.start",
    "stop": "minirun.commands.stop",
    "restart": "minirun.commands.restart",
    "kill": "minirun.commands.kill",
    "wait": "minirun.commands.wait",
    "logs": "minirun.commands.logs",
    "attach": "minirun.commands.attach",
    "ps": "minirun.commands.ps",
    "rm": "minirun.commands.rm",
    "inspect": "minirun.commands.inspect",
    "stats": "minirun.commands.stats",
    "prune": "minirun.commands.prune",
    "images": "minirun.commands.images",
    "import": "minirun.commands.import_",
    "pull": "minirun.commands.pull",
    "rmi": "minirun.commands.rmi",
    "image": "minirun.commands.image",
    "export": "minirun.commands.export",
}


# Docker's management commands (`docker container ls`, `docker image rm`): the same verbs under
# another name. `image inspect` is a verb of its own (commands/image.py).
MANAGEMENT = {
    "container": {"ls": "ps", "list": "ps", "ps": "ps", "rm": "rm", "remove": "rm", "run": "run",
                  "exec": "exec", "export": "export", "inspect": "inspect", "prune": "prune",
                  "stats": "stats",
                  "top": "top", "port": "port", "create": "create", "start": "start", "stop": "stop",
                  "kill": "kill", "restart": "restart", "wait": "wait", "logs": "logs", "attach": "attach"},
    "image": {"ls": "images", "list": "images", "rm": "rmi", "remove": "rmi", "pull": "pull",
              "import": "import"},
}


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on a bad flag; docker says 125 for its own usage errors.

    No abbreviations: argparse would read `--pid=container:web` as `--pids-limit` (a unique
    prefix of it), and `--pid=64` would even set pids.max. docker never guesses a flag."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        verb = self.prog.removeprefix("minirun").strip()
        if message.startswith("unrecognized arguments: "):
            flag = message.removeprefix("unrecognized arguments: ").split()[0].split("=", 1)[0]
            message = f"unknown flag: {flag}"  # docker's words; argparse reports it at the top level
        raise MinirunError(f"{verb}: {message}" if verb else message)


def management_command(argv: list[str]) -> list[str]:
    """`container ls ...` -> `ps ...`, `image rm ...` -> `rmi ...`; any other argv unchanged."""
    if len(argv) >= 2 and argv[0] in MANAGEMENT and argv[1] in MANAGEMENT[argv[0]]:
        verb = MANAGEMENT[argv[0]][argv[1]]
        if verb in VERBS:
            return [verb, *argv[2:]]
    if argv[:1] == ["container"]:
        known = ", ".join(k for k, v in MANAGEMENT["container"].items() if v in VERBS)
        what = f"unknown command: container {argv[1]}" if len(argv) > 1 else "container: a command is needed"
        raise MinirunError(f"{what} (one of: {known})")
    return argv


def build_parser(verb: str | None, others: bool = True) -> argparse.ArgumentParser:
    """The parser for `verb` (every verb if None); `others`: also list the other verbs."""
    parser = _Parser(prog="minirun", description="A small, readable container runtime.")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND", parser_class=_Parser)
    for name, module in VERBS.items():
        if verb is None or name == verb:
            importlib.import_module(module).add_parser(sub)
        elif others:
            sub.add_parser(name, help=f"see `minirun {name} --help`")
    return parser


def main(argv: list[str] | None = None) -> int:
    trace.mark("interpreter start")
    argv = sys.argv[1:] if argv is None else argv
    try:
        argv = management_command(argv)
        verb = next((a for a in argv if not a.startswith("-")), None)
        # `minirun VERB ...` needs VERB's parser only: each parser costs about 0.5 ms to build,
        # and nothing but `minirun --help` shows the list of verbs.
        # Importing `run`'s modules creates some 20,000 objects that live as long as the process,
        # and the cycle collector would run about 35 times while they load, looking at all of
        # them each time (about 5 ms here): it is paused meanwhile.
        gc.disable()
        try:
            parser = build_parser(verb if verb in VERBS else None, others=argv[:1] != [verb])
        finally:
            gc.enable()
        trace.mark("imports")
        try:
            args = parser.parse_args(argv)
        except MinirunError as e:
            if verb in VERBS and not str(e).startswith(f"{verb}:"):
                raise MinirunError(f"{verb}: {e}") from None
            raise
        args.argv = argv  # run and create keep their arguments, for start and restart
        if args.verb is None:
            parser.print_help()
            return RUNTIME_ERROR if argv else 0
        result: int = importlib.import_module(VERBS[args.verb]).run(args)
        return result
    except MinirunError as e:
        print(f"minirun: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        # A system call failed in a way minirun did not anticipate: still one line, still 125.
        print(f"minirun: {e}", file=sys.stderr)
        return RUNTIME_ERROR


def program() -> NoReturn:
    """The `minirun` program (console script, `python -m minirun`): main(), then leave at once.

    Everything minirun opened is closed by now (`with` blocks) and it registers no atexit
    handlers, so Python's own shutdown (tearing down every imported module, about 10 ms here,
    see bench/) would only delay the exit status the user is waiting for. Flush what `print`
    buffered, then _exit(2).
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # e.g. a pipe whose reader is gone: nobody to tell
            stream.flush()
    trace.mark("_exit")
    os._exit(code)
