"""Exit codes, exactly as docker and podman give them (`docker run --help`, "Exit Status"):

  the command's own code; 128+N when the container is killed by signal N;
  125 minirun's own errors (bad flag, unknown image); 126 cannot execute; 127 not found.

In the root tier each case also runs through podman on this host (runc, the same busybox
rootfs) and minirun must answer what podman answers. The rootless tier checks the same table.
"""

import os
import signal
import subprocess
import time
from collections.abc import Callable

import pytest
from helpers import IMAGE, PODMAN_IMAGE, PODMAN_RUN, Tier, describe, one_line_error, wait_running

CASES = {
    "success": (["{image}", "true"], 0),
    "own-code": (["{image}", "sh", "-c", "exit 3"], 3),
    "own-code-255": (["{image}", "sh", "-c", "exit 255"], 255),
    "not-found": (["{image}", "no-such-command"], 127),
    "not-found-path": (["{image}", "/no/such/program"], 127),
    "directory": (["{image}", "/tmp"], 126),
    "not-executable": (["{image}", "/etc/passwd"], 126),
    "unknown-image": (["minirun-no-such-image", "true"], 125),
    "bad-flag": (["--no-such-flag", "{image}", "true"], 125),
    "bad-value": (["--network", "no-such-mode", "{image}", "true"], 125),
}


@pytest.mark.parametrize("case", CASES)
def test_exit_code(minirun: Tier, case: str, request: pytest.FixtureRequest) -> None:
    args, expected = CASES[case]
    argv = ["run", "--rm", *(IMAGE if a == "{image}" else a for a in args)]
    result = minirun(argv)
    assert result.returncode == expected, describe(minirun, argv, result, f"expected {expected}")
    if expected in (125, 126, 127):
        line = one_line_error(result)
        assert line.startswith("minirun"), line
    if minirun.name == "root":
        podman = request.getfixturevalue("podman")
        theirs = podman(["--rm", *args])
        assert result.returncode == theirs.returncode, (
            f"minirun exits {result.returncode}, podman {theirs.returncode}: {theirs.stderr}")


def test_killed_by_signal_is_128_plus_n(minirun: Tier, names: Callable[[], str],
                                        request: pytest.FixtureRequest) -> None:
    name = names()
    proc = minirun.popen(["run", "--name", name, IMAGE, "sleep", "30"])
    pid = wait_running(minirun, name, proc)["State"]["Pid"]
    # From the host, as the OOM killer or an operator would: SIGKILL the container's PID 1.
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGKILL, (proc.returncode, out, err)
    state = minirun.inspect(name)["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 137), state
    minirun(["rm", name], check=0)
    if minirun.name == "root":
        assert podman_killed(request.getfixturevalue("podman"), names()) == 137


def podman_killed(podman: Callable[..., subprocess.CompletedProcess[str]], name: str) -> int:
    """The same case through podman: returns podman's exit code."""
    proc = subprocess.Popen([*PODMAN_RUN, "--rm", "--name", name, PODMAN_IMAGE, "sleep", "30"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        pid = 0
        while not pid:
            assert time.monotonic() < deadline and proc.poll() is None, "podman's container did not start"
            inspect = subprocess.run(["podman", "inspect", "-f", "{{.State.Pid}}", name],
                                     capture_output=True, text=True, timeout=30)
            pid = int(inspect.stdout.strip() or 0) if inspect.returncode == 0 else 0
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        return proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
