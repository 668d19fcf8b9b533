"""MINIRUN_TRACE_TIMING=1: where the start-up time of one `minirun run` goes, phase by phase.

With the switch on, every `trace.mark(PHASE)` prints one line to stderr when PHASE ends:

    minirun trace:   31.2 ms   +2.1 ms  parent  cgroup

the time since the interpreter was started, how long this phase took (since the previous mark
of the same process), which side of the clone(2) it ran on, and the phase. The child is a copy
of the parent (clone without a new stack behaves like fork), so its first mark counts from the
parent's "clone"; the parent's marks while it waits ("exec") include the child's phases.

"Since the interpreter was started" is measured from the process's start time in
/proc/self/stat (field 22, in clock ticks since boot: proc(5)), which is only as fine as one
tick (10 ms with the usual CLK_TCK of 100). A benchmark that knows better passes the moment
it called execve(2) as MINIRUN_TRACE_T0 (seconds on CLOCK_MONOTONIC, which is system-wide, so
it means the same in every process). bench/startup.py --profile does, and averages many runs.

With the switch off, mark() is one function call and one test of a constant: nothing is read
and nothing is imported.
"""

import os
import sys
import time

ENABLED = os.environ.get("MINIRUN_TRACE_TIMING") == "1"


def _start() -> float:
    """When this process was started, in seconds on CLOCK_MONOTONIC."""
    given = os.environ.get("MINIRUN_TRACE_T0")
    if given:
        return float(given)
    from minirun.state import process_start_time  # only when tracing is on

    ticks = process_start_time(os.getpid()) or 0
    since_boot = ticks / os.sysconf("SC_CLK_TCK")
    # starttime counts from boot including time suspended: convert via CLOCK_BOOTTIME.
    return time.clock_gettime(time.CLOCK_MONOTONIC) - (time.clock_gettime(time.CLOCK_BOOTTIME) - since_boot)


# The only module-level state in minirun, and only with the switch on: a debugging side channel
# needs to remember when it started and when it last printed.
_T0 = _start() if ENABLED else 0.0
_last = {"parent": _T0}


def mark(phase: str, side: str = "parent") -> None:
    """Print that `phase` just ended (only with MINIRUN_TRACE_TIMING=1)."""
    if not ENABLED:
        return
    now = time.clock_gettime(time.CLOCK_MONOTONIC)
    previous = _last.get(side, _last["parent"])
    _last[side] = now
    sys.stderr.write(
        f"minirun trace: {(now - _T0) * 1000:7.1f} ms {(now - previous) * 1000:+7.1f} ms  {side:6}  {phase}\n"
    )
    sys.stderr.flush()
