"""`minirun stats [--no-stream] [NAME...]`: live CPU, memory and PID counts, like `docker stats`.

Everything shown comes from the container's cgroup (minirun/cgroups.py): the kernel accounts
every page and every nanosecond of CPU to the cgroup of the process that used it. CPU % is the
CPU time used between two readings divided by the wall-clock time between them (100% = one
CPU busy), so even --no-stream reads twice.
"""

import argparse
import os
import sys
import time
from dataclasses import dataclass

from minirun import cgroups, paths, state
from minirun.errors import ContainerNotFound

INTERVAL = 1.0  # seconds between two readings, as docker


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("stats", help="show containers' resource usage")
    p.add_argument("--no-stream", action="store_true", help="print one reading and exit")
    p.add_argument("names", nargs="*", metavar="CONTAINER", help="default: every running container")


@dataclass(frozen=True)
class Reading:
    record: state.Record
    usage: cgroups.Usage | None  # None: no cgroup (rootless without delegation) or not running
    at: float  # time.monotonic() of the reading


def read(record: state.Record) -> Reading:
    usage = None
    if record.status == "running" and record.cgroup_paths:
        usage = cgroups.usage(cgroups.of_container(record.id, record.cgroup_paths))
    return Reading(record, usage, time.monotonic())


def binary_size(size: float) -> str:
    """docker stats' units: 1024-based, "12.5MiB"."""
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    unit = 0
    while size >= 1024 and unit < len(units) - 1:
        size /= 1024
        unit += 1
    return f"{size:.4g}{units[unit]}"


def host_memory() -> int:
    """What docker shows as the limit of a container without one: the machine's memory."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def row(before: Reading, after: Reading) -> tuple[str, ...]:
    record, usage = after.record, after.usage
    if usage is None:
        return (record.short_id, record.name, "--", "-- / --", "--", "--")
    cpu = "--"
    if before.usage is not None and usage.cpu_ns is not None and before.usage.cpu_ns is not None:
        elapsed_ns = (after.at - before.at) * 1e9
        cpu = f"{100 * (usage.cpu_ns - before.usage.cpu_ns) / elapsed_ns:.2f}%" if elapsed_ns > 0 else "--"
    limit = usage.memory_limit or host_memory()
    memory = "--"
    percent = "--"
    if usage.memory is not None:
        memory = binary_size(usage.memory)
        percent = f"{100 * usage.memory / limit:.2f}%"
    pids = "--" if usage.pids is None else str(usage.pids)
    return (record.short_id, record.name, cpu, f"{memory} / {binary_size(limit)}", percent, pids)


def print_table(rows: list[tuple[str, ...]]) -> None:
    header = ("CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS")
    table = [header, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        print("   ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    sys.stdout.flush()


def records(args: argparse.Namespace) -> tuple[list[state.Record], int]:
    state_dir = paths.state_dir()
    if not args.names:
        return [r for r in state.all_records(state_dir) if r.status == "running"], 0
    found, code = [], 0
    for name in args.names:
        try:
            found.append(state.find(state_dir, name))
        except ContainerNotFound as e:
            print(f"minirun: {e}", file=sys.stderr)
            code = 1
    return found, code


def run(args: argparse.Namespace) -> int:
    chosen, code = records(args)
    if code:
        return code
    before = [read(r) for r in chosen]
    while True:
        time.sleep(INTERVAL)
        after = [read(state.find(paths.state_dir(), r.record.id, warn=False)) if args.names
                 else read(r.record) for r in before]
        if not args.no_stream:
            print("\033[2J\033[H", end="")  # clear the screen, cursor home, as docker does
        print_table([row(b, a) for b, a in zip(before, after, strict=True)])
        if args.no_stream:
            return 0
        before = after
        if not args.names:  # follow containers that start and stop meanwhile
            running = {r.id: r for r in state.all_records(paths.state_dir(), warn=False)
                       if r.status == "running"}
            known = {b.record.id for b in before}
            before = [b for b in before if b.record.id in running]
            before += [read(r) for i, r in running.items() if i not in known]
