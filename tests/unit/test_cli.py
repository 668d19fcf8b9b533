"""First contact with the `minirun` command: --version, --help, unknown verbs, closed pipes.

Each test runs the real program (`python -m minirun` from this checkout) as a new user would.
"""

import json
import os
import re
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

import minirun
from minirun.cli import VERBS

REPO = Path(__file__).resolve().parents[2]


def minirun_cli(*args: str, env: dict[str, str] | None = None,
                input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "minirun", *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO, input=input,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


@pytest.mark.parametrize("flag", ["--version", "-v"])
def test_version(flag: str) -> None:
    result = minirun_cli(flag)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout == f"minirun version {minirun.__version__}\n"
    # One version, in one place: pyproject.toml reads it from the package.
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "minirun.__version__"}


@pytest.mark.parametrize("flag", ["--version", "--bogus"])
def test_no_verb_is_loaded_for_a_flag_without_one(flag: str) -> None:
    """`minirun --version` used to build every verb's parser, importing every verb's modules
    (the registry client, tarfile, http.client: 150 ms instead of 40)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "minirun", flag], capture_output=True, text=True,
        timeout=60, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    verbs = set(re.findall(r"\| +minirun\.commands\.(\w+)$", result.stderr, re.MULTILINE))
    assert result.returncode == (0 if flag == "--version" else 125)
    assert not verbs, result.stderr[-2000:]


def test_help_groups_every_verb_as_docker_does_and_has_examples() -> None:
    result = minirun_cli("--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    titles = [t for t in re.findall(r"^(\w[\w ]*):$", text, re.MULTILINE) if t != "options"]
    assert titles[:3] == ["Common Commands", "Management Commands", "Commands"], titles
    assert titles[-1] == "Examples"
    listed = re.findall(r"^  (\w+)  +\S", text.split("Examples:")[0], re.MULTILINE)
    # every verb once, and `container`, docker's management spelling of the container verbs
    assert sorted(listed) == sorted([*VERBS, "container"]), "every verb once"
    common = text.split("Common Commands:")[1].split("Management Commands:")[0]
    assert re.search(r"^  run ", common, re.MULTILINE) and re.search(r"^  doctor ", common, re.MULTILINE)
    examples = text.split("Examples:")[1]
    assert "minirun run --rm busybox" in examples and "minirun doctor" in examples
    # Bare `minirun` shows the same help (docker does too), and exits 0.
    bare = minirun_cli()
    assert bare.returncode == 0 and bare.stdout == text


@pytest.mark.parametrize(("word", "hint"), [("imgaes", "images"), ("rn", "run"), ("inpsect", "inspect"),
                                             ("doctr", "doctor"), ("xyzzy", None)])
def test_unknown_verb_gets_one_line_and_a_close_match(word: str, hint: str | None) -> None:
    result = minirun_cli(word, "busybox")
    assert result.returncode == 125 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"minirun: '{word}' is not a minirun command.")
    if hint:
        assert f"Did you mean '{hint}'?" in lines[0]
    else:
        assert "Did you mean" not in lines[0]
    assert "See 'minirun --help'." in lines[0]


def closed_pipe() -> int:
    """The write end of a pipe whose reader is already gone: every write fails with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    return write_end


@pytest.mark.parametrize("args", [["--help"], ["images"], ["ps", "-a"], ["doctor"]])
def test_closed_stdout_pipe_is_a_quiet_exit(args: list[str], tmp_path: Path) -> None:
    # `minirun images | head -1` with more lines than head reads: as a C or Go program, minirun
    # is ended by the closed pipe, 128 + SIGPIPE, and says nothing about it.
    out = closed_pipe()
    try:
        result = subprocess.run([sys.executable, "-m", "minirun", *args], stdout=out, stderr=subprocess.PIPE,
                                text=True, timeout=60, cwd=REPO,
                                env={**os.environ, "PYTHONPATH": str(REPO),
                                     "MINIRUN_ROOT": str(tmp_path / "store"),
                                     "MINIRUN_STATE": str(tmp_path / "state")})
    finally:
        os.close(out)
    assert result.stderr == "" and result.returncode == 141, result.stderr


def test_other_broken_pipes_are_still_errors(tmp_path: Path) -> None:
    # Only stdout's reader going away is quiet: `import -` from a pipe whose writer sent half an
    # archive is an error, with its one line.
    result = minirun_cli("import", "-", "x", input="not a tar", env={"MINIRUN_ROOT": str(tmp_path)})
    assert result.returncode == 125 and len(result.stderr.splitlines()) == 1


def test_import_change_sets_the_image_config(tmp_path: Path) -> None:
    # `docker import --change`: what rootfs-images/debian/build.sh imports its Cmd with.
    tar = tmp_path / "rootfs.tar"
    with tarfile.open(tar, "w") as t:
        info = tarfile.TarInfo("./bin")
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        t.addfile(info)
    env = {"MINIRUN_ROOT": str(tmp_path / "store")}
    result = minirun_cli("import", "-c", 'CMD ["nginx", "-g", "daemon off;"]', "--change", "ENV A=b c",
                         "-c", "EXPOSE 80", "-c", "WORKDIR /srv", "-c", "USER www-data", str(tar), "lab",
                         env=env)
    assert result.returncode == 0, result.stderr
    config = json.loads(minirun_cli("image", "inspect", "lab", env=env).stdout)[0]["Config"]
    assert config["Cmd"] == ["nginx", "-g", "daemon off;"] and config["Entrypoint"] in ([], None)
    assert config["Env"][-1] == "A=b c" and config["Env"][0].startswith("PATH=")
    assert config["ExposedPorts"] == {"80/tcp": {}} and config["WorkingDir"] == "/srv"
    assert config["User"] == "www-data"
    shell = minirun_cli("import", "-c", "ENTRYPOINT echo hi", str(tar), "lab2", env=env)
    assert shell.returncode == 0, shell.stderr
    config = json.loads(minirun_cli("image", "inspect", "lab2", env=env).stdout)[0]["Config"]
    assert config["Entrypoint"] == ["/bin/sh", "-c", "echo hi"]
    for bad in ("VOLUME /x", "CMD", 'CMD ["a", 1]', "CMD [oops"):
        refused = minirun_cli("import", "-c", bad, str(tar), "lab3", env=env)
        assert refused.returncode == 125 and len(refused.stderr.splitlines()) == 1, refused.stderr


MISSING = "import sys\nsys.modules[{name!r}] = None  # what Python does for a package that is not there\n"


@pytest.mark.parametrize(("package", "code", "expected"), [
    ("pyseccomp", "from minirun.security import seccomp\n"
                  "seccomp.build({'defaultAction': 'SCMP_ACT_ERRNO', 'syscalls': []}, frozenset())\n",
     "compiling the seccomp profile needs pyseccomp"),
])
def test_a_missing_dependency_is_one_line(package: str, code: str, expected: str) -> None:
    # pip install --no-deps, or a package removed later: the path that needs it says what to do,
    # as minirun's own error (the CLI prints it as one line and exits 125), not ModuleNotFoundError.
    script = MISSING.format(name=package) + "from minirun.errors import MinirunError\ntry:\n" + \
        "".join(f"    {line}\n" for line in code.splitlines()) + \
        "except MinirunError as e:\n    print(e)\n    sys.exit(125)\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 125 and result.stderr == "", result.stderr
    assert expected in result.stdout and len(result.stdout.splitlines()) == 1


def test_doctor_names_a_missing_package_and_fails(tmp_path: Path) -> None:
    script = MISSING.format(name="pyseccomp") + "from minirun.cli import main\nsys.exit(main(['doctor']))\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO), "MINIRUN_ROOT": str(tmp_path)})
    assert result.returncode == 1, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if "python packages" in line)
    assert line.startswith("✗") and "pyseccomp no" in line and "pip install pyseccomp" in line
