"""`minirun unpause CONTAINER...`: let the processes of paused containers go on (the freezer's
thaw, cgroups.py; see commands/pause.py)."""

import argparse

from minirun import cgroups
from minirun.commands.pause import each
from minirun.errors import MinirunError


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("unpause", help="unpause all processes within containers")
    p.add_argument("names", nargs="+", metavar="CONTAINER")


def unpause(cgroup: cgroups.Cgroup) -> None:
    if not cgroups.paused(cgroup):
        raise MinirunError("it is not paused")
    cgroups.thaw(cgroup)


def run(args: argparse.Namespace) -> int:
    return each(args.names, "unpause", unpause)
