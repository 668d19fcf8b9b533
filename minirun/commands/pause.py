"""`minirun pause CONTAINER...`: stop every process of running containers where it stands.

Through the freezer of the container's cgroup (cgroups.py, the freezer section), as docker does:
the processes are not signalled and do not notice. `pause` returns once the kernel says that all
have stopped. A paused container still runs for `ps` ("Up 5 minutes (Paused)") and `inspect`
(State.Status "paused"); `exec`, `attach` and `start` refuse it; `stop`, `kill` and `rm -f` thaw
it after their signal, so that it is acted on. `minirun unpause` lets it go on.
"""

import argparse
import os
import sys
from collections.abc import Callable

from minirun import cgroups, container, paths, state
from minirun.errors import MinirunError


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("pause", help="pause all processes within containers")
    p.add_argument("names", nargs="+", metavar="CONTAINER")


def pause(cgroup: cgroups.Cgroup) -> None:
    if cgroups.paused(cgroup):
        raise MinirunError("it is paused already")
    cgroups.freeze(cgroup)


def each(names: list[str], verb: str, one: Callable[[cgroups.Cgroup], None]) -> int:
    """`verb` (pause, unpause) each running container named: its name when done, else one line;
    1 if any failed, as docker's CLI."""
    code = 0
    for name in names:
        try:
            record = state.find(paths.state_dir(), name)
            pid1 = container.open_pid1(record)  # its PID 1, proven (a record alone may lie)
            if pid1 is None:
                raise MinirunError("it is not running")
            os.close(pid1)
            one(cgroups.of_container(record.id, record.cgroup_paths))
            print(name)
        except (MinirunError, OSError) as e:  # OSError: its cgroup went away meanwhile (it exited)
            print(f"minirun: cannot {verb} {name}: {e}", file=sys.stderr)
            code = 1
    return code


def run(args: argparse.Namespace) -> int:
    return each(args.names, "pause", pause)
