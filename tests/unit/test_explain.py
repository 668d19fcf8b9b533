"""`--explain` costs nothing when it is off: the narration module is not even imported, and a
run without it prints no narration. (tests/root/test_explain_steps.py checks what it says.)"""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def python(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIRUN_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PYTHONPATH": str(REPO)},
    )


def test_marks_with_facts_import_and_print_nothing_when_off() -> None:
    # The start path's marks pass facts (pid=..., cgroup=...): with the switches off that is one
    # call and one test, no module loaded and nothing written.
    out = python(
        "import sys, minirun; before = set(sys.modules); import minirun.trace as t; "
        "t.mark('clone', pid=1, flags=0); t.mark('overlay', 'child', merged='/x'); "
        "print(sorted(set(sys.modules) - before - {'minirun.trace'}))"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]" and out.stderr == ""


def test_the_run_path_does_not_import_explain() -> None:
    out = python(
        "import sys, minirun.cli, minirun.runtime, minirun.enter, minirun.process, minirun.rootfs; "
        "print('minirun.explain' in sys.modules)"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_explain_on_a_run_that_fails_keeps_its_one_line_and_code(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIRUN_")}
    env.update(
        PYTHONPATH=str(REPO), MINIRUN_ROOT=str(tmp_path / "store"), MINIRUN_STATE=str(tmp_path / "state")
    )

    def run(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "minirun", "run", *flags, "--pull", "never", "no-such-image-here", "true"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    plain, explained = run(), run("--explain")
    assert plain.returncode == explained.returncode == 125
    assert "minirun explain:" not in plain.stderr
    assert "minirun explain:" in explained.stderr
    errors = [line for line in explained.stderr.splitlines() if line.startswith("minirun:")]
    assert errors == plain.stderr.splitlines()
