"""`minirun-oci`: runc's command line, so that podman, conmon, CRI-O, containerd and the
runtime-tools validation suite can drive minirun as they drive runc.

  minirun-oci [--root DIR] [--log FILE] [--log-format text|json] [--debug] [--systemd-cgroup]
              [--explain[=FILE]] VERB ...

--explain narrates what create and start do, step by step with the real values (minirun/explain.py,
as `minirun run --explain`), to FILE or stderr; podman passes it with `--runtime-flag explain=FILE`.

Each verb is one module of minirun/oci (create, start, state, kill, delete, exec, pause,
features). A failure is one line on stderr (and in --log, as JSON with --log-format json,
which is where conmon looks for it) and exit 125; never a traceback.
"""

import argparse
import contextlib
import json
import os
import sys
import time
from typing import NoReturn

from minirun import __version__
from minirun.errors import RUNTIME_ERROR, MinirunError
from minirun.oci import record

SPEC_VERSION = "1.0.2"


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise MinirunError(message)  # log() names the program


def parser() -> Parser:
    p = Parser(
        prog="minirun-oci",
        add_help=True,
        allow_abbrev=False,
        description="minirun as an OCI runtime (runc's command line)",
    )
    p.add_argument("--root", default=os.environ.get("MINIRUN_OCI_ROOT", record.DEFAULT_ROOT))
    p.add_argument("--log", default=None)
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--debug", action="store_true")
    # cgroupsPath is "slice:prefix:name"; minirun makes systemd's path itself (oci/cgroup.py)
    p.add_argument("--systemd-cgroup", action="store_true")
    p.add_argument("--rootless", default=None)
    p.add_argument("--criu", default=None)
    p.add_argument("--version", "-v", action="store_true")
    p.add_argument("--explain", default=None, metavar="FILE")  # a bare --explain is "-" (stderr)
    verbs = p.add_subparsers(dest="verb")

    def verb(name: str) -> argparse.ArgumentParser:
        return verbs.add_parser(name, allow_abbrev=False)

    create = verb("create")
    create.add_argument("--bundle", "-b", default=".")
    create.add_argument("--pid-file", default=None)
    create.add_argument("--console-socket", default=None)
    create.add_argument("--no-pivot", action="store_true")
    create.add_argument("--no-new-keyring", action="store_true")
    create.add_argument("--preserve-fds", type=int, default=0)
    create.add_argument("id")
    run = verb("run")
    for action in create._actions[1:]:
        run._add_action(action)
    run.add_argument("--detach", "-d", action="store_true")
    verb("start").add_argument("id")
    verb("state").add_argument("id")
    kill = verb("kill")
    kill.add_argument("--all", "-a", action="store_true")
    kill.add_argument("id")
    kill.add_argument("signal", nargs="?", default="SIGTERM")
    delete = verb("delete")
    delete.add_argument("--force", "-f", action="store_true")
    delete.add_argument("id")
    ex = verb("exec")
    ex.add_argument("--process", "-p", default=None)
    ex.add_argument("--detach", "-d", action="store_true")
    ex.add_argument("--tty", "-t", action="store_true")
    ex.add_argument("--console-socket", default=None)
    ex.add_argument("--pid-file", default=None)
    ex.add_argument("--cwd", default=None)
    ex.add_argument("--env", "-e", action="append", default=[])
    ex.add_argument("--user", "-u", default=None)
    ex.add_argument("--preserve-fds", type=int, default=0)
    ex.add_argument("id")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    verb("pause").add_argument("id")
    verb("resume").add_argument("id")
    update = verb("update")
    update.add_argument("--resources", "-r", default=None)
    update.add_argument("id")
    verb("features")
    spec = verb("spec")
    spec.add_argument("--bundle", "-b", default=".")
    spec.add_argument("--rootless", action="store_true")
    verb("list")
    return p


def dispatch(args: argparse.Namespace) -> int:
    root = args.root
    if args.version:
        print(f"minirun-oci version {__version__}\nspec: {SPEC_VERSION}")
        return 0
    if args.verb == "create":
        from minirun.oci import create

        return create.run(root, args.id, args.bundle, args.pid_file, args.console_socket, args.preserve_fds,
                          args.systemd_cgroup)
    if args.verb == "run":  # create + start; without --detach wait for it, then delete it (runc run)
        from minirun.oci import create, delete, record, start

        create.run(root, args.id, args.bundle, args.pid_file, args.console_socket, args.preserve_fds,
                   args.systemd_cgroup)
        start.run(root, args.id)
        if args.detach:
            return 0
        pid = record.load(root, args.id)["pid"]
        _, status = os.waitpid(pid, 0)  # it is our own child: create cloned it in this process
        delete.run(root, args.id, force=True)
        code = os.waitstatus_to_exitcode(status)
        return 128 - code if code < 0 else code
    if args.verb == "start":
        from minirun.oci import start

        return start.run(root, args.id)
    if args.verb == "state":
        from minirun.oci import state

        return state.run(root, args.id)
    if args.verb == "kill":
        from minirun.oci import kill

        return kill.run(root, args.id, args.signal, args.all)
    if args.verb == "delete":
        from minirun.oci import delete

        return delete.run(root, args.id, args.force)
    if args.verb == "exec":
        from minirun.oci import exec as exec_

        return exec_.run(root, args)
    if args.verb in ("pause", "resume"):
        from minirun.oci import pause

        return pause.run(root, args.id, args.verb == "pause")
    if args.verb == "update":
        from minirun.oci import update

        return update.run(root, args.id, args.resources)
    if args.verb == "features":
        from minirun.oci import features

        return features.features()
    if args.verb == "spec":
        from minirun.oci import features

        return features.spec(args.bundle)
    if args.verb == "list":
        from minirun.oci import state

        return state.list_all(root)
    raise MinirunError("minirun-oci: a verb is needed (create, start, state, kill, delete, exec, ...)")


def log(args: argparse.Namespace | None, message: str) -> None:
    print(f"minirun-oci: {message}", file=sys.stderr)
    path = args.log if args is not None else None
    if not path:
        return
    with contextlib.suppress(OSError), open(path, "a") as f:
        if args is not None and args.log_format == "json":
            f.write(
                json.dumps(
                    {
                        "level": "error",
                        "msg": message,
                        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    }
                )
                + "\n"
            )
        else:
            f.write(f"error: {message}\n")


def explain_flag(argv: list[str]) -> list[str]:
    """A bare global `--explain` (before the verb) means stderr: argparse's optional value would
    take the verb for the file name."""
    value_next = False
    for i, arg in enumerate(argv):
        if value_next:
            value_next = False
            continue
        if not arg.startswith("-"):
            break
        if arg == "--explain":
            return [*argv[:i], "--explain=-", *argv[i + 1 :]]
        value_next = arg in ("--root", "--log", "--log-format", "--rootless", "--criu")
    return argv


def explain_to(path: str) -> None:
    """--explain: narration on from here on (minirun/trace.py), appended to `path` or on stderr."""
    from minirun import trace

    if path == "-":
        trace.explain_on()
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise MinirunError(f"--explain {path}: {e.strerror}") from None
    trace.explain_on(fd)


def program() -> None:
    args = None
    try:
        args = parser().parse_args(explain_flag(sys.argv[1:]))
        if getattr(args, "preserve_fds", 0):
            from minirun.oci import create

            create.preserved_fds(args.preserve_fds)  # before the --explain file takes a free fd
        if args.explain:
            explain_to(args.explain)
        code = dispatch(args)
    except MinirunError as e:
        log(args, str(e))
        code = e.code
    except KeyboardInterrupt:
        code = 130
    except OSError as e:
        log(args, str(e))
        code = RUNTIME_ERROR
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    program()
