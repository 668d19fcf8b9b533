"""`minirun inspect NAME...`: a container's record as JSON, in the shape of `docker inspect`."""

import argparse
import json
import sys

from minirun import paths, runtime, state
from minirun.errors import ContainerNotFound


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("inspect", help="show a container's details as JSON")
    p.add_argument("names", nargs="+", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    found, code = [], 0
    for name in args.names:
        try:
            found.append(runtime.record_json(state.find(paths.state_dir(), name)))
        except ContainerNotFound as e:
            print(f"minirun: {e}", file=sys.stderr)
            code = 1
    print(json.dumps(found, indent=4))
    return code
