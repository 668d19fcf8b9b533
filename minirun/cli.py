"""The `minirun` command: docker-compatible verbs, one small module per verb in minirun/commands/.

Every verb module has `add_parser(subparsers)` and `run(args) -> int`. This file only wires
them together and turns errors into docker's exit codes: a MinirunError prints one line and
leaves with its code (125 by default); nothing a user types should ever print a traceback.
"""

import argparse
import contextlib
import functools
import gc
import importlib
import os
import sys
from collections.abc import Collection
from typing import Any, NoReturn

from minirun import __version__, trace
from minirun.errors import RUNTIME_ERROR, MinirunError

# A closed pipe on stdout ends minirun as it ends a C or Go program: quietly, 128 + SIGPIPE.
BROKEN_PIPE = 128 + 13

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
    "pause": "minirun.commands.pause",
    "unpause": "minirun.commands.unpause",
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
    "doctor": "minirun.commands.doctor",
}

# `minirun --help` lists the verbs in docker's groups and order (`docker --help`; `doctor` where
# docker has `info`); a verb not named here is listed under "Commands", A-Z.
COMMON = ("run", "exec", "ps", "pull", "images", "doctor")
MANAGEMENT_GROUP = ("container", "image", "network", "system", "volume")
EXAMPLES = """\
Examples:
  minirun run --rm busybox sh -c 'echo $$; hostname; id'   a throwaway container
  minirun run -it --name box busybox sh                      an interactive shell, named box
  minirun run --rm -p 8080:80 busybox httpd -f -p 80         publish a port (curl localhost:8080)
  minirun ps -a                                              every container, running or not
  minirun export box | tar -t | head                         what the container's file system holds
  minirun doctor                                             what this host allows, and the fixes

Run 'minirun COMMAND --help' for more information on a command."""


# Docker's management commands (`docker container ls`, `docker image rm`): the same verbs under
# another name. `image inspect` is a verb of its own (commands/image.py).
MANAGEMENT = {
    "container": {"ls": "ps", "list": "ps", "ps": "ps", "rm": "rm", "remove": "rm", "run": "run",
                  "exec": "exec", "export": "export", "inspect": "inspect", "prune": "prune",
                  "stats": "stats",
                  "top": "top", "port": "port", "create": "create", "start": "start", "stop": "stop",
                  "kill": "kill", "restart": "restart", "wait": "wait", "logs": "logs", "attach": "attach",
                  "pause": "pause", "unpause": "unpause"},
    "image": {"ls": "images", "list": "images", "rm": "rmi", "remove": "rmi", "pull": "pull",
              "import": "import"},
}


class _Formatter(argparse.HelpFormatter):
    """argparse's help formatter, sized as argparse sizes it, without `import shutil`: argparse
    makes a formatter for every add_argument, and asks shutil.get_terminal_size for the width,
    which imports shutil and with it bz2, lzma and fnmatch (~2 ms) on every `minirun run`."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        width = _columns() - 2 if width is None else width
        super().__init__(prog, indent_increment, max_help_position, width)


@functools.cache  # argparse makes ~50 formatters for `run`'s parser alone: ask the terminal once
def _columns() -> int:
    """shutil.get_terminal_size's rule: $COLUMNS, else the terminal, else 80."""
    columns = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 80
    return columns


class _RawFormatter(_Formatter, argparse.RawDescriptionHelpFormatter):
    """The same, with the description printed as written (the verb list of `minirun --help`)."""


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on a bad flag; docker says 125 for its own usage errors.

    No abbreviations: argparse would read `--pid=container:web` as `--pids-limit` (a unique
    prefix of it), and `--pid=64` would even set pids.max. docker never guesses a flag."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        kwargs.setdefault("formatter_class", _Formatter)
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


def build_parser(loaded: Collection[str], others: bool = True) -> argparse.ArgumentParser:
    """The parser with the full parsers of the verbs `loaded` (each imports its module); `others`:
    also list the other verbs, by name only."""
    parser = _Parser(prog="minirun", usage="minirun [OPTIONS] COMMAND",
                     description="A small, readable container runtime.",
                     formatter_class=_RawFormatter)
    parser.add_argument("-v", "--version", action="version", version=f"minirun version {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND", parser_class=_Parser, help=argparse.SUPPRESS)
    for name, module in VERBS.items():
        if name in loaded:
            importlib.import_module(module).add_parser(sub)
        elif others:
            sub.add_parser(name, help=f"see `minirun {name} --help`")
    parser.epilog = _grouped_verbs(sub) + "\n\n" + EXAMPLES
    return parser


def _grouped_verbs(sub: "argparse._SubParsersAction[Any]") -> str:
    """The verb list as `docker --help` groups it: Common, Management, then the rest (A-Z)."""
    helps = {action.dest: action.help or "" for action in sub._choices_actions}
    helps.setdefault("container", "Manage containers (container ls|run|exec|logs|stop|rm|...)")
    width = max(map(len, helps), default=0) + 2
    groups = [("Common Commands", [v for v in COMMON if v in helps]),
              ("Management Commands", [v for v in MANAGEMENT_GROUP if v in helps]),
              ("Commands", sorted(v for v in helps if v not in COMMON + MANAGEMENT_GROUP))]
    return "\n\n".join(f"{title}:\n" + "\n".join(f"  {v.ljust(width)}{helps[v]}" for v in verbs)
                        for title, verbs in groups if verbs)


def unknown_verb(word: str) -> MinirunError:
    """docker's `'x' is not a docker command`, with the closest verb when one is close."""
    import difflib

    close = difflib.get_close_matches(word, VERBS, n=1, cutoff=0.6)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return MinirunError(f"'{word}' is not a minirun command.{hint} See 'minirun --help'.")


def _stdout_reader_gone() -> bool:
    """Is stdout a pipe nobody reads any more (`minirun images | head`)? poll(2) reports
    POLLERR on the write end of a pipe whose read end is closed (pipe(7))."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    trace.mark("interpreter start")
    argv = sys.argv[1:] if argv is None else argv
    try:
        argv = management_command(argv)
        verb = next((a for a in argv if not a.startswith("-")), None)
        if verb is not None and verb not in VERBS:
            raise unknown_verb(verb)
        # `minirun VERB ...` needs VERB's parser only: each parser costs about 0.5 ms to build,
        # and nothing but `minirun --help` shows the list of verbs.
        # Importing `run`'s modules creates some 20,000 objects that live as long as the process,
        # and the cycle collector would run about 35 times while they load, looking at all of
        # them each time (about 5 ms here): it is paused meanwhile.
        gc.disable()
        try:
            # Without a verb, every verb's parser only for the help that lists them all (`minirun`,
            # `--help`); not for `--version` or a bad flag, which would load every verb's modules.
            help_of_all = not argv or "-h" in argv or "--help" in argv
            loaded = [verb] if verb in VERBS else list(VERBS) if help_of_all else []
            parser = build_parser(loaded, others=argv[:1] != [verb])
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
        if getattr(args, "explain", False):  # run --explain, exec --explain (minirun/explain.py)
            trace.explain_on()
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
    except BrokenPipeError as e:
        # Only stdout's reader going away is quiet: a broken pipe to anything else (the
        # container's sync socket, a registry) is an error like any other.
        if _stdout_reader_gone():
            return BROKEN_PIPE
        print(f"minirun: {e}", file=sys.stderr)
        return RUNTIME_ERROR
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
