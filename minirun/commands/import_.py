"""`minirun import TARBALL REFERENCE`: make an image from a root file system tarball.

Like `docker import`: the tarball (plain, gzip, bzip2, xz or zstd; "-" reads it from stdin) becomes
the image's single layer, extracted safely (minirun/images/tarball.py), and the new image id is
printed. The image gets the default config (PATH set, command /bin/sh), changed by each
`-c/--change 'INSTRUCTION'` as docker's: CMD and ENTRYPOINT (JSON array or shell form), ENV,
WORKDIR, USER, EXPOSE.
"""

import argparse
import json
import signal
import sys

from minirun.errors import MinirunError
from minirun.images import ImageConfig, import_tarball, normalize_ref
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
    parser.add_argument("-c", "--change", action="append", default=[], metavar="INSTRUCTION",
                        help="a Dockerfile instruction for the image's config: CMD, ENTRYPOINT, ENV, "
                             "WORKDIR, USER, EXPOSE (repeatable)")


def apply_change(config: ImageConfig, change: str) -> ImageConfig:
    """One `--change` (Dockerfile reference: the exec form is a JSON array, the shell form runs
    under /bin/sh -c)."""
    keyword, _, value = change.strip().partition(" ")
    keyword, value = keyword.upper(), value.strip()
    if not value:
        raise MinirunError(f"import: --change {change!r}: expected INSTRUCTION VALUE")

    def command() -> list[str]:
        if value.startswith("["):
            try:
                argv = json.loads(value)
            except ValueError as e:
                raise MinirunError(f"import: --change {change!r}: not a JSON array ({e})") from None
            if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
                raise MinirunError(f"import: --change {change!r}: a JSON array of strings is expected")
            return argv
        return ["/bin/sh", "-c", value]

    if keyword == "CMD":
        return config._replace(cmd=tuple(command()))
    if keyword == "ENTRYPOINT":
        return config._replace(entrypoint=tuple(command()))
    if keyword == "ENV":
        name, sep, val = value.partition("=") if "=" in value.split(" ")[0] else value.partition(" ")
        if not name or not sep:
            raise MinirunError(f"import: --change {change!r}: ENV NAME=VALUE expected")
        env = [e for e in config.env if e.split("=", 1)[0] != name] + [f"{name}={val.strip()}"]
        return config._replace(env=tuple(env))
    if keyword == "WORKDIR":
        return config._replace(working_dir=value)
    if keyword == "USER":
        return config._replace(user=value)
    if keyword == "EXPOSE":
        ports = [p if "/" in p else f"{p}/tcp" for p in value.split()]
        return config._replace(exposed_ports=(*config.exposed_ports, *ports))
    if keyword == "STOPSIGNAL":  # what `stop` sends first (container.image_stop_signal)
        from minirun import container

        return config._replace(stop_signal=signal.Signals(container.parse_signal(value)).name)
    raise MinirunError(f"import: --change {change!r}: {keyword} is not supported "
                       "(CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, STOPSIGNAL)")


def run(args: argparse.Namespace) -> int:
    name = normalize_ref(args.reference)  # a bad name fails before anything is read
    config = ImageConfig()
    for change in args.change:  # bad changes fail before anything is read, too
        config = apply_change(config, change)
    in_use = image_ids_in_use(state_dir())  # a container's image keeps its layers when the name moves
    if args.tarball == "-":
        if sys.stdin.isatty():
            raise MinirunError('import: "-" reads the tarball from stdin, but stdin is a terminal')
        image = import_tarball(store_dir(), sys.stdin.buffer, name, config=config, in_use=in_use)
    else:
        try:
            source = open(args.tarball, "rb")  # noqa: SIM115 (closed by the with below)
        except OSError as e:
            raise MinirunError(f"import: cannot open {args.tarball}: {e.strerror}") from e
        with source:
            image = import_tarball(store_dir(), source, name, config=config, in_use=in_use)
    print(image.id)
    return 0
