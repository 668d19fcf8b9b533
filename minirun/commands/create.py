"""`minirun create [OPTIONS] IMAGE [COMMAND] [ARG...]`: a container that `minirun start` starts.

Takes `run`'s flags (commands/run.py). The image is looked up (and pulled) now, the record is
"Created" and its directory is made; nothing runs until `start`.
"""

import argparse

from minirun import container, runtime, state
from minirun.commands import run as run_verb


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("create", help="create a container without starting it", add_help=False)
    run_verb.add_container_flags(p)


def run(args: argparse.Namespace) -> int:
    spec = run_verb.to_spec(args, check_tty=False)  # -t is checked by `start -a`
    prepared = runtime.prepare(spec)
    record = runtime.create_record(prepared, run_verb.to_options(args, "create", detach=True))
    container.make_bundle(container.layout(prepared.store, record.id))
    # No monitor until `start`: the record must not look like one whose monitor died.
    state.update(prepared.state_dir, record, monitor_pid=0, monitor_start=0)
    print(record.id)
    return 0
