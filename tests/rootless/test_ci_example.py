"""examples/ci/: the script part of the CI workflow, run as the rootless test user, as a hosted
runner's unprivileged user would run it: a fresh home (no venv, no store), `pip install` into a
venv of the user's own, `minirun doctor`, then the containers of the smoke test (the first of
which builds the offline busybox image).

The tests run in a network namespace with loopback only, so pip gets its packages from a local
wheelhouse (PIP_NO_INDEX, PIP_FIND_LINKS, which pip reads from the environment) instead of PyPI:
wheels of the pyseccomp this interpreter has installed, and of this checkout
(pure-Python wheels are zip files with a RECORD, PEP 427; written here, as no wheel-building
package is installed). The script is otherwise run exactly as the workflow runs it.
"""

import base64
import hashlib
import importlib.metadata
import shutil
import subprocess
import tempfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from helpers import REPO, Tier

pytestmark = pytest.mark.rootless


def write_wheel(out_dir: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    """A py3-none-any wheel holding `files` (archive path -> bytes, dist-info included)."""
    dist_info = f"{name}-{version}.dist-info"
    files = {**files, f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: minirun-tests\n"
                                              b"Root-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    wheel = out_dir / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
        z.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return wheel


def wheel_of_installed(out_dir: Path, project: str) -> Path:
    dist = importlib.metadata.distribution(project)
    name = dist.metadata["Name"].replace("-", "_")
    files = {}
    for f in dist.files or []:
        path = str(f)
        if path.startswith("..") or "__pycache__" in path or path.endswith((
                "/RECORD", "/INSTALLER", "/REQUESTED", "/direct_url.json", "/WHEEL")):
            continue
        files[path.replace(f"{dist.metadata['Name']}-", f"{name}-", 1) if ".dist-info/" in path else path] = \
            Path(str(f.locate())).read_bytes()
    return write_wheel(out_dir, name, dist.version, files)


def wheel_of_checkout(out_dir: Path, checkout: Path) -> Path:
    project = tomllib.loads((checkout / "pyproject.toml").read_text())["project"]
    version = (checkout / "minirun" / "__init__.py").read_text().split('__version__ = "')[1].split('"')[0]
    files = {str(p.relative_to(checkout)): p.read_bytes() for p in sorted((checkout / "minirun").rglob("*"))
             if p.is_file() and "__pycache__" not in p.parts}
    metadata = "Metadata-Version: 2.1\nName: minirun\nVersion: " + version + "\n" + \
        "".join(f"Requires-Dist: {d}\n" for d in project["dependencies"])
    dist_info = f"minirun-{version}.dist-info"
    files[f"{dist_info}/METADATA"] = metadata.encode()
    files[f"{dist_info}/entry_points.txt"] = "".join(
        f"[console_scripts]\n{k} = {v}\n" for k, v in project["scripts"].items()).encode()
    return write_wheel(out_dir, "minirun", version, files)


def test_smoke_script_as_the_unprivileged_user(rootless_minirun: Tier) -> None:
    tier = rootless_minirun
    work = Path(tempfile.mkdtemp(prefix="minirun-test-ci-"))
    try:
        work.chmod(0o755)
        wheels, home = work / "wheels", work / "home"
        wheels.mkdir()
        minirun_wheel = wheel_of_checkout(wheels, REPO)
        for project in ("pyseccomp",):
            wheel_of_installed(wheels, project)
        home.mkdir()
        for path in [work, *work.rglob("*")]:
            shutil.chown(path, tier.uid, tier.gid)
        assert tier.prefix[-2:] == ["-m", "minirun"]
        # The tier's own `env -i` settings, with this fresh HOME instead (the last one counts), and
        # without its PYTHONPATH (the tier's copy of the code): minirun comes from the wheel.
        argv = [*tier.prefix[:-3], f"HOME={home}", "PIP_NO_INDEX=1", f"PIP_FIND_LINKS={wheels}",
                "env", "-u", "PYTHONPATH", "sh", str(REPO / "examples" / "ci" / "smoke.sh"),
                str(minirun_wheel)]
        result = subprocess.run(argv, env=tier.env, capture_output=True, text=True, timeout=600, check=False,
                                cwd=work)
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
        assert result.stdout.rstrip().endswith("smoke: OK")
        assert "minirun version" in result.stdout and "minirun doctor, as" in result.stdout
        assert "building it offline" in result.stderr, "the user's first busybox was built on first use"
        venv = home / ".local" / "minirun"
        installed = subprocess.run([str(venv / "bin" / "python"), "-c", "import minirun, pyseccomp;"
                                    "print(minirun.__file__)"], capture_output=True, text=True, check=True,
                                   cwd=work, env={"PATH": "/usr/bin:/bin"})
        assert installed.stdout.startswith(str(venv)), "minirun ran from the user's own venv"
    finally:
        shutil.rmtree(work, ignore_errors=True)
