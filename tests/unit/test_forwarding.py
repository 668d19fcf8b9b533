"""runtime.forwarding_signals: a signal to minirun goes to the container, but not one to a
process minirun forked meanwhile (pyroute2's netns helper is such a fork, and pyroute2 ends it
with SIGTERM: forwarded, it killed the container's child before "go", and `run -d` failed with
"Broken pipe" about one time in two)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from minirun import runtime  # noqa: E402


def test_a_fork_does_not_forward_and_the_owner_does() -> None:
    target = subprocess.Popen(["sleep", "30"])
    try:
        with runtime.forwarding_signals(target.pid):
            helper = os.fork()
            if helper == 0:  # the fork: SIGTERM ends it, as SIG_DFL would, and reaches nobody else
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
                os._exit(0)
            _, status = os.waitpid(helper, 0)
            assert os.waitstatus_to_exitcode(status) == 128 + signal.SIGTERM
            time.sleep(0.1)
            assert target.poll() is None, "the fork's SIGTERM must not reach the container"
            os.kill(os.getpid(), signal.SIGTERM)  # the owner's: forwarded
            assert target.wait(timeout=10) == -signal.SIGTERM
    finally:
        target.kill()
        target.wait()
