"""`minirun port CONTAINER [PRIVATE_PORT[/PROTO]]`: the published ports, as `docker port` prints them."""

import argparse

from minirun import paths, state
from minirun.errors import MinirunError


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("port", help="list a container's published ports")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("port", nargs="?", metavar="PRIVATE_PORT[/PROTO]")


def run(args: argparse.Namespace) -> int:
    record = state.find(paths.state_dir(), args.container)
    published: dict[str, list[dict[str, str]]] = record.network_settings.get("Ports") or {}
    if args.port is not None:
        key = args.port if "/" in args.port else f"{args.port}/tcp"
        if not published.get(key):
            raise MinirunError(f"no public port '{key}' published for {record.name}")
        for b in published[key]:
            print(f"{b['HostIp']}:{b['HostPort']}")
        return 0
    for port, bindings in published.items():
        for b in bindings or []:
            print(f"{port} -> {b['HostIp']}:{b['HostPort']}")
    return 0
