"""The `minirun` command: docker-compatible verbs, one small module per verb in minirun/commands/.

Every verb module has `add_parser(subparsers)` and `run(args) -> int`. This file only wires
them together and turns errors into docker's exit codes: a MinirunError prints one line and
leaves with its code (125 by default); nothing a user types should ever print a traceback.
"""

import argparse
import importlib
import sys

from minirun.errors import RUNTIME_ERROR, MinirunError

# In `minirun --help` order. Modules are imported lazily, only the verb that runs is loaded.
VERBS = {
    "run": "minirun.commands.run",
    "ps": "minirun.commands.ps",
    "rm": "minirun.commands.rm",
    "inspect": "minirun.commands.inspect",
    "prune": "minirun.commands.prune",
    "images": "minirun.commands.images",
    "import": "minirun.commands.import_",
}


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on a bad flag; docker says 125 for its own usage errors."""

    def error(self, message: str) -> None:  # type: ignore[override]
        verb = self.prog.removeprefix("minirun").strip()
        raise MinirunError(f"{verb}: {message}" if verb else message)


def build_parser(verb: str | None) -> argparse.ArgumentParser:
    parser = _Parser(prog="minirun", description="A small, readable container runtime.")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND", parser_class=_Parser)
    for name, module in VERBS.items():
        if verb is None or name == verb:
            importlib.import_module(module).add_parser(sub)
        else:
            sub.add_parser(name, help=f"see `minirun {name} --help`")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verb = next((a for a in argv if not a.startswith("-")), None)
    try:
        parser = build_parser(verb if verb in VERBS else None)
        args = parser.parse_args(argv)
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
