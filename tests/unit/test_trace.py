"""MINIRUN_TRACE_TIMING: off by default and silent; on, one line per phase on stderr.

No timing is asserted (speed belongs in bench/): only that the switch works and the lines
are well formed. The traced runs use a command that fails before any container exists
(an image that is not in a fresh, empty store), so they need no privilege.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^minirun trace: +\d+\.\d ms +[+-]\d+\.\d ms  (parent|child ) +\S.*$")


def minirun(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MINIRUN_")}
    environment.update(
        PYTHONPATH=str(REPO),
        MINIRUN_ROOT=str(tmp_path / "store"),
        MINIRUN_STATE=str(tmp_path / "state"),
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "minirun", *args], capture_output=True, text=True, env=environment, timeout=60
    )


def trace_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("minirun trace:")]


def test_off_by_default_prints_nothing(tmp_path: Path) -> None:
    result = minirun(tmp_path, "run", "--rm", "--pull", "never", "no-such-image-here", "true")
    assert result.returncode == 125
    assert trace_lines(result.stderr) == []


@pytest.mark.parametrize("value", ["0", "", "yes"])
def test_only_1_switches_it_on(tmp_path: Path, value: str) -> None:
    result = minirun(
        tmp_path, "run", "--rm", "--pull", "never", "no-such-image-here", "true", MINIRUN_TRACE_TIMING=value
    )
    assert trace_lines(result.stderr) == []


def test_on_prints_the_phases_in_order(tmp_path: Path) -> None:
    result = minirun(
        tmp_path, "run", "--rm", "--pull", "never", "no-such-image-here", "true", MINIRUN_TRACE_TIMING="1"
    )
    lines = trace_lines(result.stderr)
    assert [line.split("parent", 1)[1].strip() for line in lines[:2]] == ["interpreter start", "imports"]
    assert all(LINE.match(line) for line in lines), lines
    # The error still reaches the user as its one line, and the exit code is unchanged.
    assert result.returncode == 125
    assert [line for line in result.stderr.splitlines() if not line.startswith("minirun trace:")] == [
        line
        for line in minirun(
            tmp_path, "run", "--rm", "--pull", "never", "no-such-image-here", "true"
        ).stderr.splitlines()
    ]


def test_t0_from_the_caller_is_used(tmp_path: Path) -> None:
    """MINIRUN_TRACE_T0 (CLOCK_MONOTONIC seconds) anchors the first line: a start 1000 s ago
    shows up as at least 1000000 ms."""
    import time

    t0 = time.clock_gettime(time.CLOCK_MONOTONIC) - 1000
    result = minirun(
        tmp_path,
        "run",
        "--pull",
        "never",
        "no-such-image-here",
        "true",
        MINIRUN_TRACE_TIMING="1",
        MINIRUN_TRACE_T0=repr(t0),
    )
    first = trace_lines(result.stderr)[0]
    assert float(first.split()[2]) >= 1_000_000.0


def test_no_import_cost_when_off() -> None:
    """With the switch off, importing the trace module reads no file and imports nothing new."""
    code = (
        # the package first: its own start (signal handlers, minirun/__init__.py) is not trace's cost
        "import sys, minirun; before = set(sys.modules); import minirun.trace as t; "
        "t.mark('x'); print(sorted(set(sys.modules) - before - {'minirun.trace'}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIRUN_")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PYTHONPATH": str(REPO)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert out.stderr == ""
