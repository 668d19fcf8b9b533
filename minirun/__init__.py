"""minirun: a small, readable, real container runtime. See README.md, "Architecture"."""

__version__ = "0.1.0"

# The first thing minirun runs, before any command's imports: SIGINT, SIGTERM, SIGHUP and
# SIGQUIT end the process at once with 128+N, quietly (issue 12: a signal in the first ~100 ms
# gave a KeyboardInterrupt traceback, or death by SIGTERM, exit -15). Not an exception: Python
# drops one raised inside a callback ("Exception ignored in ..."), and the signal was lost.
# Whatever a command leaves half-made this way, as after a SIGKILL, `prune` removes. `run`
# holds these signals from its record until its command runs (runtime.hold_signals), and its
# monitor then forwards them to the container (monitor.py).
#
# Earlier still: install.sh puts minirun/early-signals.pth into the venv, which installs the same
# handlers while `site` starts, before the editable install's finder and this package. What is
# left is CPython's own start (measured under strace, load 7: ~13-20 ms before Python's SIGINT
# handler, when a signal kills it and a shell shows 128+N, then ~13-16 ms of site's own imports,
# where SIGINT still gives Python's "init_import_site" traceback; without the .pth that second
# window was ~31 ms, the editable finder included). Closing it needs a launcher that is not Python.


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
