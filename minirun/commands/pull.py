"""`minirun pull [-q] [--platform OS/ARCH[/VARIANT]] NAME[:TAG|@DIGEST]`: fetch an image from a registry.

Like `docker pull`: progress per layer (redrawn on a terminal, one line per layer otherwise),
then the digest and the fully qualified reference. The work is minirun/images/pull.py.
"""

import argparse
import sys

from minirun.images import manifest
from minirun.images.progress import Progress
from minirun.images.pull import pull
from minirun.images.reference import parse
from minirun.paths import store_dir


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("pull", help="pull an image from a registry")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image's reference at the end")
    p.add_argument("--platform", help="OS/ARCH[/VARIANT] to pull from a multi-platform image")
    p.add_argument("reference", metavar="NAME[:TAG|@DIGEST]")


def run(args: argparse.Namespace) -> int:
    ref = parse(args.reference)  # a bad name fails before any network traffic
    platform = manifest.parse_platform(args.platform) if args.platform else None
    progress = Progress.to(sys.stdout, quiet=args.quiet)
    pull(store_dir(), args.reference, progress, platform)
    print(ref)  # docker prints the fully qualified reference last, also with -q
    return 0
