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

`run --explain` / `exec --explain` (explain_on) use the same marks to narrate: at each one,
minirun/explain.py says what the step did, with the real values read back from the kernel
(the child's /proc/PID/uid_map, its mountinfo, /proc/self/status), and the man page. A mark
passes what the narration needs as keyword arguments (objects it already has: nothing is
formatted). The narration goes to a copy of stderr taken when it is switched on, close-on-exec:
the child's lines reach the user even after its stdio became the container's, and none reach
the container's command.

With both switches off, mark() is one function call and one test of a global: nothing is read,
formatted or imported.
"""

import os
import sys
import time

TIMING = os.environ.get("MINIRUN_TRACE_TIMING") == "1"
ENABLED = TIMING  # timing or narration: mark() has something to do (explain_on sets it)
EXPLAIN_FD = -1  # --explain: where the narration goes (a close-on-exec copy of stderr)


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


def explain_on(fd: int = -1) -> None:
    """`--explain`: narrate every step from now on, in this process and the ones it forks, to
    `fd` (close-on-exec; minirun-oci's --explain=FILE) or a copy of stderr."""
    global ENABLED, EXPLAIN_FD, _T0
    from minirun import explain  # noqa: F401  now: exec narrates from inside the container's mounts

    if fd >= 0:
        EXPLAIN_FD = fd
    elif EXPLAIN_FD < 0:
        EXPLAIN_FD = os.dup(2)  # Python's dup is close-on-exec (inheritable=False)
    if not ENABLED:
        _T0 = time.clock_gettime(time.CLOCK_MONOTONIC)
        _last["parent"] = _T0
    ENABLED = True


def mark(phase: str, side: str = "parent", **facts: object) -> None:
    """`phase` just ended: print its timing (MINIRUN_TRACE_TIMING=1) and narrate it (--explain)."""
    if not ENABLED:
        return
    now = time.clock_gettime(time.CLOCK_MONOTONIC)
    previous = _last.get(side, _last["parent"])
    _last[side] = now
    if TIMING:
        sys.stderr.write(f"minirun trace: {(now - _T0) * 1000:7.1f} ms {(now - previous) * 1000:+7.1f} ms  "
                         f"{side:6}  {phase}\n")
        sys.stderr.flush()
    if EXPLAIN_FD >= 0:
        from minirun import explain  # only with --explain

        explain.narrate(EXPLAIN_FD, phase, side, (now - previous) * 1000, facts)
