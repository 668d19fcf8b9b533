"""`minirun import TARBALL REFERENCE`: make an image from a root file system tarball.

Like `docker import`: the tarball (plain, gzip, bzip2, xz or zstd; "-" reads it from stdin) becomes
the image's single layer, extracted safely (minirun/images/tarball.py), and the new image id is
printed. The image gets the default config: PATH set, command /bin/sh.
"""

import argparse
import sys

from minirun.errors import MinirunError
from minirun.images import import_tarball, normalize_ref
from minirun.paths import state_dir, store_dir
from minirun.state import image_ids_in_use


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = sub.add_parser(
        "import",
        help="Import the contents of a tarball to create an image",
        description="Import a root file system tarball as an image (like `docker import`).",
    )
    parser.add_argument(
        "tarball", metavar="TARBALL", help='a tar archive (may be compressed), or "-" for stdin'
    )
    parser.add_argument("reference", metavar="REFERENCE", help="the image's name, NAME[:TAG]")


def run(args: argparse.Namespace) -> int:
    name = normalize_ref(args.reference)  # a bad name fails before anything is read
    in_use = image_ids_in_use(state_dir())  # a container's image keeps its layers when the name moves
    if args.tarball == "-":
        if sys.stdin.isatty():
            raise MinirunError('import: "-" reads the tarball from stdin, but stdin is a terminal')
        image = import_tarball(store_dir(), sys.stdin.buffer, name, in_use=in_use)
    else:
        try:
            source = open(args.tarball, "rb")  # noqa: SIM115 (closed by the with below)
        except OSError as e:
            raise MinirunError(f"import: cannot open {args.tarball}: {e.strerror}") from e
        with source:
            image = import_tarball(store_dir(), source, name, in_use=in_use)
    print(image.id)
    return 0
