"""`minirun inspect [-f FORMAT] NAME...`: a container's record as JSON, in the shape of `docker inspect`.

`-f '{{.State.Pid}}'` is how the labs find a container's PID 1 on the host, to hand it to
`nsenter --target PID` or to read /proc/PID/ns. docker's -f takes a Go template; minirun
understands the part of it the labs use: `{{.Path.To.Field}}`, `{{json .Path}}`, and the
`{{range .List}}...{{end}}`-free text around them.
"""

import argparse
import json
import re
import sys
from typing import Any

from minirun import container, paths, state
from minirun.errors import ContainerNotFound, MinirunError

ACTION = re.compile(r"{{\s*(json\s+)?(\.[\w.]*)\s*}}")


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("inspect", help="show a container's details as JSON")
    p.add_argument("-f", "--format", help="a template, e.g. '{{.State.Pid}}' or '{{json .Config}}'")
    p.add_argument("names", nargs="+", metavar="CONTAINER")


def lookup(value: Any, path: str) -> Any:
    """Follow `.A.B.C` through nested dicts; `.` alone is the whole value."""
    for key in filter(None, path.split(".")):
        if not isinstance(value, dict) or key not in value:
            raise MinirunError(f"template: can't evaluate field {key}")
        value = value[key]
    return value


def render(template: str, value: dict[str, Any]) -> str:
    def action(match: re.Match[str]) -> str:
        found = lookup(value, match.group(2))
        if match.group(1):
            return json.dumps(found)
        if isinstance(found, bool):
            return "true" if found else "false"
        if isinstance(found, list):  # Go prints a slice as [a b c]
            return "[" + " ".join(str(x) for x in found) + "]"
        if isinstance(found, dict):
            return "map[" + " ".join(f"{k}:{v}" for k, v in found.items()) + "]"
        return str(found)

    if "{{" in ACTION.sub("", template):
        raise MinirunError(f"template: unsupported action in {template!r} (supported: {{{{.Field}}}}, "
                           "{{json .Field}})")
    return ACTION.sub(action, template)


def run(args: argparse.Namespace) -> int:
    found, code = [], 0
    for name in args.names:
        try:
            found.append(container.record_json(state.find(paths.state_dir(), name)))
        except ContainerNotFound as e:
            print(f"minirun: {e}", file=sys.stderr)
            code = 1
    if args.format is None:
        print(json.dumps(found, indent=4))
    else:
        for value in found:
            print(render(args.format, value))
    return code
