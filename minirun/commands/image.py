"""`minirun image inspect IMAGE...`: an image's record as JSON, shaped like `docker image inspect`."""

import argparse
import json
import sys

from minirun.errors import MinirunError
from minirun.images import Image, resolve
from minirun.paths import store_dir


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("image", help="manage images (image inspect)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True,
                               parser_class=type(p))
    inspect = actions.add_parser("inspect", help="show images' details as JSON")
    inspect.add_argument("images", nargs="+", metavar="IMAGE")


def image_json(image: Image) -> dict[str, object]:
    config = image.config
    os_name, _, architecture = image.platform.partition("/")
    return {
        "Id": image.id, "RepoTags": image.repo_tags, "RepoDigests": image.repo_digests,
        "Created": image.created, "Size": image.size,
        "Os": os_name or "linux", "Architecture": architecture,
        "Config": {"Env": config.env, "Cmd": config.cmd or None, "Entrypoint": config.entrypoint or None,
                   "WorkingDir": config.working_dir, "User": config.user,
                   "ExposedPorts": {p: {} for p in config.exposed_ports} or None},
        "RootFS": {"Type": "layers", "Layers": [f"sha256:{p.parent.name}" for p in image.layers]},
        "GraphDriver": {"Name": "overlay",
                        "Data": {"LowerDir": ":".join(str(p) for p in reversed(image.layers))}},
    }


def run(args: argparse.Namespace) -> int:
    found, code = [], 0
    for ref in args.images:
        try:
            found.append(image_json(resolve(store_dir(), ref)))
        except MinirunError as e:
            print(f"minirun: {e}", file=sys.stderr)
            code = 1
    print(json.dumps(found, indent=4))
    return code
