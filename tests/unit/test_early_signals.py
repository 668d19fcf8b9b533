"""Issue 12, item 10 (the rest): a signal while CPython itself starts, before any line of minirun.

install.sh puts minirun/early-signals.pth into the venv's site-packages as the first .pth file
site reads. The test builds a throwaway venv the same way and sends a real SIGINT from a .pth
file read after it (during site's own import, where Python's SIGINT handler already raises
KeyboardInterrupt): minirun ends with 130 and says nothing; without the file, Python prints
"Fatal Python error: init_import_site" and a traceback, exit 1 (checked first). Other programs
of the venv are left alone.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("venv")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    return path


def site_packages(venv: Path) -> Path:
    python = venv / "bin" / "python"
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True, timeout=60)
    return Path(out.stdout.strip())


def run(venv: Path, *args: str) -> "subprocess.CompletedProcess[str]":
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)}
    return subprocess.run([str(venv / "bin" / "python"), *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_sigint_during_site_ends_minirun_with_130(venv: Path) -> None:
    packages = site_packages(venv)
    # A .pth file that sorts after minirun's (and after the editable finder's): SIGINT to itself.
    (packages / "zz-sigint.pth").write_text("import os, signal; os.kill(os.getpid(), signal.SIGINT)\n")
    before = run(venv, "-m", "minirun", "--version")
    assert before.returncode == 1 and "KeyboardInterrupt" in before.stderr, "the interpreter's way"
    shutil.copy(REPO / "minirun" / "early-signals.pth", packages / "00-minirun-early-signals.pth")
    after = run(venv, "-m", "minirun", "--version")
    assert (after.returncode, after.stdout, after.stderr) == (130, "", "")
    # The console script (argv[0] named minirun) the same; another program of the venv untouched.
    script = venv / "bin" / "minirun"
    script.write_text(f"#!{venv}/bin/python\nfrom minirun.cli import program\nprogram()\n")
    script.chmod(0o755)
    console = subprocess.run([str(script), "--version"], env={"PYTHONPATH": str(REPO)}, capture_output=True,
                             text=True, timeout=60, check=False)
    assert (console.returncode, console.stderr) == (130, "")
    other = run(venv, "-c", "pass")
    assert other.returncode == 1 and "KeyboardInterrupt" in other.stderr
    assert sysconfig.get_paths()["purelib"] != str(packages), "not this interpreter's own site-packages"
