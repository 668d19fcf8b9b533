"""minirun: a small, readable, real container runtime. See README.md, "Architecture"."""

__version__ = "0.1.0"

# The first thing minirun runs, before any command's imports: SIGINT, SIGTERM, SIGHUP and
# SIGQUIT end the process at once with 128+N, quietly (issue 12: a signal in the first ~100 ms
# gave a KeyboardInterrupt traceback, or death by SIGTERM, exit -15). Not an exception: Python
# drops one raised inside a callback ("Exception ignored in ..."), and the signal was lost.
# Whatever a command leaves half-made this way, as after a SIGKILL, `prune` removes. `run`
# holds these signals from its record until its command runs (runtime.hold_signals), and its
# monitor then forwards them to the container (monitor.py).


def _leave(number: int, _frame: object) -> None:
    import os

    os._exit(128 + number)


def _early_signals() -> None:
    import os
    import signal
    import sys

    # Only as the program (`python -m minirun`: argv[0] is "-m" while the package loads; the
    # console script), never as a library someone imports (the tests, a detached monitor).
    if not sys.argv or (sys.argv[0] != "-m" and os.path.basename(sys.argv[0]) != "minirun"):
        return
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, _leave)


_early_signals()
