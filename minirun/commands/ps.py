"""`minirun ps [-a] [-q]`: list containers, like `docker ps`."""

import argparse
from datetime import UTC, datetime

from minirun import paths, state
from minirun.commands.images import human_duration


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("ps", help="list containers")
    p.add_argument("-a", "--all", action="store_true", help="show all containers (default: running)")
    p.add_argument("-q", "--quiet", action="store_true", help="only ids")
    p.add_argument("--no-trunc", action="store_true", help="do not truncate ids and commands")


def ago(timestamp: str) -> str:
    if not timestamp:
        return ""
    then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return f"{human_duration(datetime.now(UTC) - then)} ago"


def status(record: state.Record) -> str:
    if record.status == "running":
        return f"Up {ago(record.started_at).removesuffix(' ago')}"
    if record.status == "exited":
        return f"Exited ({record.exit_code}) {ago(record.finished_at)}"
    return "Created"


def run(args: argparse.Namespace) -> int:
    records = [r for r in state.all_records(paths.state_dir()) if args.all or r.status == "running"]
    if args.quiet:
        for r in records:
            print(r.id if args.no_trunc else r.short_id)
        return 0
    rows = [("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES")]
    for r in records:
        command = " ".join(r.command)
        if not args.no_trunc and len(command) > 20:
            command = command[:19] + "…"
        rows.append((r.id if args.no_trunc else r.short_id, r.image, f'"{command}"', ago(r.created),
                     status(r), r.name))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0
