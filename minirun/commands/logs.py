"""`minirun logs [-f] [--tail N] [-t] [--since WHEN] CONTAINER`: what a container printed.

Read from its json-file log (minirun/logfile.py), stdout to stdout and stderr to stderr, as
docker does. `-f` follows until the container ends; `--tail N` starts N lines from the end;
`-t` prefixes each line with its time; `--since` takes an RFC 3339 time, a unix time or a
duration ago (`10m`, `1h30m`, `45s`).
"""

import argparse
import itertools
import re
import sys
import time
from datetime import datetime

from minirun import container, logfile, paths, state
from minirun.errors import MinirunError

DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("logs", help="show a container's output")
    p.add_argument("-f", "--follow", action="store_true", help="follow until the container ends")
    p.add_argument("--tail", default="all", help="lines from the end to show (default all)")
    p.add_argument("-t", "--timestamps", action="store_true", help="show each line's time")
    p.add_argument("--since", help="only lines since a time (RFC 3339, unix) or a duration ago (10m)")
    p.add_argument("name", metavar="CONTAINER")


def to_ns(text: str) -> int:
    """An entry's RFC 3339 time (nanoseconds, Z) as nanoseconds since the epoch."""
    seconds, _, fraction = text.rstrip("Z").partition(".")
    whole = datetime.fromisoformat(seconds + "+00:00").timestamp()
    return int(whole) * 1_000_000_000 + int((fraction + "000000000")[:9])


def is_since(moment: str, since: int) -> bool:
    """Is an entry's time at or after `since`? A time that is no time (a log edited by hand):
    not shown, rather than a traceback."""
    try:
        return to_ns(moment) >= since
    except ValueError:
        return False


def parse_since(value: str) -> int:
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return int(float(value) * 1e9)
    match = DURATION.match(value)
    if match and any(match.groups()):
        h, m, s = (float(g or 0) for g in match.groups())
        return time.time_ns() - int((h * 3600 + m * 60 + s) * 1e9)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MinirunError(f"invalid --since {value!r}: an RFC 3339 time, a unix time or a duration "
                           "(10m)") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return int(moment.timestamp() * 1e9)


def run(args: argparse.Namespace) -> int:
    tail = None if args.tail == "all" else int(args.tail) if args.tail.lstrip("-").isdigit() else -2
    if tail is not None and tail < -1:
        raise MinirunError(f"invalid --tail {args.tail!r}: a number of lines, or all")
    since = parse_since(args.since) if args.since else None
    state_dir = paths.state_dir()
    record = state.find(state_dir, args.name)
    if record.host_config.get("LogConfig", {}).get("Type") == "none":
        raise MinirunError(f"container {record.name} was run with --log-driver none: there is no log to read")
    path = str(container.layout(paths.store_dir(), record.id).log)
    out, err = sys.stdout.buffer, sys.stderr.buffer

    def show(batch: logfile.Batch) -> None:
        """A batch's entries, each run of one stream in one write (and flushed: stdout and
        stderr to one terminal keep their order; -f shows each batch as it comes)."""
        logs, streams, times = batch
        if since is not None:
            recent = {moment: is_since(moment, since) for moment in set(times)}  # few: a time a write
            kept = [row for row in zip(logs, streams, times, strict=True) if recent[row[2]]]
            logs, streams, times = zip(*kept, strict=True) if kept else ((), (), ())
        if args.timestamps:
            logs = list(map(" ".join, zip(times, logs, strict=True)))
        if "stderr" not in streams:  # the common case, without a loop per line
            runs = [(out, logs)]
        else:
            by_stream = itertools.groupby(zip(streams, logs, strict=True), key=lambda row: row[0] == "stderr")
            runs = [(err if to_stderr else out, [log for _, log in run]) for to_stderr, run in by_stream]
        for stream, texts in runs:
            if texts:
                # (a log edited by hand may hold a lone surrogate, "\ud800": the writer never does)
                stream.write("".join(texts).encode("utf-8", "replace"))
                stream.flush()

    # What is there now, then (-f) what comes: `offset` is where "now" ends in the current file.
    batches, offset = logfile.snapshot(path, None if tail is None or tail < 0 else tail)
    for batch in batches:
        show(batch)
    if args.follow:
        def running() -> bool:
            fresh = state.load(state_dir, record.id)
            return fresh is not None and fresh.status in ("running", "created") and fresh.monitor_alive()

        for batch in logfile.follow(path, offset, running):
            show(batch)
    return 0
