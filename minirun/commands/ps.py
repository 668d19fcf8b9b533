"""`minirun ps [-a] [-q] [--no-trunc] [-f KEY=VALUE] [--format TEMPLATE]`: list containers, like `docker ps`.

docker's columns and words: CONTAINER ID, IMAGE, COMMAND, CREATED ("5 minutes ago"), STATUS
("Up 3 minutes", "Up 3 minutes (Paused)", "Exited (0) 5 seconds ago", "Created"), PORTS
("0.0.0.0:8080->80/tcp"), NAMES. A paused container (commands/pause.py) is "paused" for status=
and {{.State}}, as in docker: the kernel says so, its cgroup's freezer, not the record.
`-f name=|status=|id=` filters (the same key twice: either; different keys: both), and
`--format` takes docker's placeholders ({{.ID}} {{.Names}} {{.Status}} ...), `table` for a header.
"""

import argparse
import re
from collections.abc import Callable
from datetime import UTC, datetime

from minirun import container, paths, state
from minirun.commands.images import human_duration
from minirun.errors import MinirunError

STATES = ("created", "running", "paused", "exited")  # docker's status= values minirun's containers can have
FILTERS = ("name", "status", "id")
PLACEHOLDER = re.compile(r"{{\s*\.(\w+)\s*}}")
HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
           "RunningFor": "CREATED", "Status": "STATUS", "Ports": "PORTS", "Names": "NAMES", "State": "STATE"}


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("ps", help="list containers")
    p.add_argument("-a", "--all", action="store_true", help="show all containers (default: running)")
    p.add_argument("-q", "--quiet", action="store_true", help="only ids")
    p.add_argument("--no-trunc", action="store_true", help="do not truncate ids and commands")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="name=, status=created|running|paused|exited, id=")
    p.add_argument("--format", help="a template, e.g. '{{.Names}}\\t{{.Status}}' ('table ...': a header)")


def ago(timestamp: str) -> str:
    if not timestamp:
        return ""
    then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return f"{human_duration(datetime.now(UTC) - then)} ago"


def current(record: state.Record) -> str:
    """docker's State: created, running, paused or exited."""
    return "paused" if container.paused(record) else record.status


def status(record: state.Record, paused: bool = False) -> str:
    if record.status == "running":
        return f"Up {ago(record.started_at).removesuffix(' ago')}" + (" (Paused)" if paused else "")
    if record.status == "exited":
        return f"Exited ({record.exit_code}) {ago(record.finished_at)}"
    return "Created"


def ports(record: state.Record) -> str:
    """docker's PORTS: 0.0.0.0:8080->80/tcp, comma separated."""
    published = record.network_settings.get("Ports") or {}
    return ", ".join(f"{b['HostIp']}:{b['HostPort']}->{port}" for port, bindings in published.items()
                     for b in bindings or [])


def parse_filters(values: list[str]) -> dict[str, list[str]]:
    wanted: dict[str, list[str]] = {}
    for value in values:
        key, sep, arg = value.partition("=")
        if not sep or key not in FILTERS:
            raise MinirunError(f"invalid filter {value!r}: expected name=, status= or id=")
        if key == "status" and arg not in STATES:
            raise MinirunError(f"invalid filter {value!r}: status is one of {', '.join(STATES)}")
        wanted.setdefault(key, []).append(arg)
    return wanted


def matches(record: state.Record, wanted: dict[str, list[str]]) -> bool:
    """docker's rules: name= is a substring (or regular expression) of the name, id= a prefix."""
    tests: dict[str, Callable[[str], bool]] = {
        "name": lambda v: _name_matches(v, record.name), "status": lambda v: current(record) == v,
        "id": lambda v: record.id.startswith(v)}
    return all(any(tests[key](v) for v in values) for key, values in wanted.items())


def _name_matches(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return pattern in name


def fields(record: state.Record, no_trunc: bool) -> dict[str, str]:
    now = current(record)
    command = " ".join(record.command)
    if not no_trunc and len(command) > 20:
        command = command[:19] + "…"
    return {"ID": record.id if no_trunc else record.short_id, "Image": record.image,
            "Command": f'"{command}"', "CreatedAt": record.created, "RunningFor": ago(record.created),
            "Status": status(record, now == "paused"),
            "Ports": ports(record), "Names": record.name, "State": now}


def render(template: str, values: dict[str, str]) -> str:
    def field(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise MinirunError(f"invalid --format: no field {match.group(1)!r} (known: {', '.join(values)})")
        return values[match.group(1)]

    return PLACEHOLDER.sub(field, template)


def table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def run(args: argparse.Namespace) -> int:
    wanted = parse_filters(args.filter)
    # A filter on status looks at every container, as in docker.
    records = [r for r in state.all_records(paths.state_dir())
               if (args.all or "status" in wanted or r.status == "running") and matches(r, wanted)]
    if args.quiet:
        for r in records:
            print(r.id if args.no_trunc else r.short_id)
        return 0
    if args.format is not None:
        # docker's --format turns a typed \t and \n into a tab and a new line.
        template = args.format.replace("\\t", "\t").replace("\\n", "\n")
        if template.startswith("table"):
            template = template.removeprefix("table").strip()
            parts = template.split("\t")
            cells = [[render(part, HEADERS) for part in parts]]
            cells += [[render(part, fields(r, args.no_trunc)) for part in parts] for r in records]
            table(cells)
        else:
            for r in records:
                print(render(template, fields(r, args.no_trunc)))
        return 0
    columns = ["ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"]
    table([[HEADERS[c] for c in columns], *([fields(r, args.no_trunc)[c] for c in columns] for r in records)])
    return 0
