"""`minirun-oci exec`: not yet."""

import argparse

from minirun.errors import MinirunError


def run(root: str, args: argparse.Namespace) -> int:
    raise MinirunError("exec: not implemented yet")
