"""examples/labs/lib.sh: with --step a lab waits for Enter before each step; without, it runs
straight through (as the tests run the labs). Run on a pty, as a learner's terminal."""

import os
import pty
import select
import shutil
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAB = """. "$(dirname "$0")/lib.sh"
step "first" "one"
show "echo ran first"
step "second" "two"
show "echo ran second"
"""


def lab(tmp_path: Path) -> Path:
    shutil.copy(REPO / "examples" / "labs" / "lib.sh", tmp_path / "lib.sh")
    (tmp_path / "lab.sh").write_text(LAB)
    return tmp_path / "lab.sh"


def read_for(fd: int, seconds: float) -> bytes:
    out, end = b"", time.monotonic() + seconds
    while time.monotonic() < end:
        if select.select([fd], [], [], 0.05)[0]:
            try:
                out += os.read(fd, 4096)
            except OSError:
                break
    return out


def test_step_pauses_before_each_step(tmp_path: Path) -> None:
    script = lab(tmp_path)
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("sh", ["sh", str(script), "--step"])
    try:
        out = read_for(fd, 1.0)
        assert b"[press Enter for the next step]" in out and b"ran first" not in out
        os.write(fd, b"\n")
        out += read_for(fd, 1.0)
        assert b"ran first" in out and b"ran second" not in out
        os.write(fd, b"\n")
        out += read_for(fd, 1.0)
        assert b"ran second" in out
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0


def test_without_step_it_runs_through(tmp_path: Path) -> None:
    result = subprocess.run(["sh", str(lab(tmp_path))], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert result.stdout == ("\n== first\n-- one\n$ echo ran first\nran first\n"
                             "\n== second\n-- two\n$ echo ran second\nran second\n")
