"""What a container (or a tarball) can make of its own file system must not break minirun.

A symlink to a directory (`ln -s /etc /x`) once made `rm` and `--rm` crash (chmod with
follow_symlinks=False is not implemented on Linux); a directory 5,000 levels deep made teardown,
`rm`, `export`, `import` and `rmi` crash with RecursionError, and a dead import's staging area
then broke every later import. minirun/fsutil.py walks and removes trees without recursion, with
fds only, never through a link; these tests drive it from inside real containers, rootful and
rootless, and through the image commands.
"""

import io
import os
import secrets
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import IMAGE, Tier

DEPTH = 5000
# busybox cannot `cd` or `mkdir -p` a path longer than PATH_MAX (4096), so the chain is built
# 1,000 levels at a time: each round moves the whole tree below a fresh 1,000-level chain.
# Links to directories outside and inside, at the top and at the bottom; the exit code must survive.
DEEP_SCRIPT = (
    "p=a; i=1; while [ $i -lt 1000 ]; do p=$p/a; i=$((i+1)); done; "
    "mkdir -p /deep/$p && ln -s /etc /deep/$p/etc && "
    "for i in 1 2 3 4; do mv /deep /t && mkdir -p /deep/$p && mv /t /deep/$p/t || exit 1; done; "
    "ln -s /etc /x && ln -s / /rootlink && ln -s /deep /deeplink; exit 7"
)


def deep(minirun: Tier, *flags: str) -> "subprocess.CompletedProcess[str]":
    return minirun(["run", "--network", "none", *flags, IMAGE, "sh", "-c", DEEP_SCRIPT], timeout=120)


@pytest.fixture
def out_dir(minirun: Tier) -> Iterator[Path]:
    """A directory the tier's user may write export files into."""
    path = Path(tempfile.mkdtemp(prefix="minirun-test-trees-"))
    try:
        os.chown(path, minirun.uid, minirun.gid)
        yield path
    finally:
        subprocess.run(["rm", "-rf", str(path)], check=False, timeout=120)


def test_run_rm_removes_a_deep_tree_and_links_to_directories(minirun: Tier) -> None:
    name = minirun.auto_name() if minirun.auto_name else "deep"
    result = deep(minirun, "--rm", "--name", name)
    assert result.returncode == 7, result.stderr  # the container's code, not a crash's 1
    assert "Traceback" not in result.stderr
    assert name not in minirun.container_names()
    assert Path("/etc/passwd").exists()


def test_rm_removes_a_deep_tree_and_links_to_directories(minirun: Tier) -> None:
    name = minirun.auto_name() if minirun.auto_name else "deep"
    assert deep(minirun, "--name", name).returncode == 7
    bundle = minirun.store_dir / "containers" / minirun.inspect(name)["Id"]
    assert bundle.is_dir()
    result = minirun(["rm", name], timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert not bundle.exists()
    assert name not in minirun.container_names()


def depth_of(tar_path: Path) -> int:
    with tarfile.open(tar_path) as tar:
        return max(len(m.name.split("/")) for m in tar)


def test_export_import_rmi_of_a_deep_tree(minirun: Tier, out_dir: Path) -> None:
    name = minirun.auto_name() if minirun.auto_name else "deep"
    assert deep(minirun, "--name", name).returncode == 7
    exported = out_dir / "deep.tar"
    try:
        result = minirun(["export", "-o", str(exported), name], timeout=120)
        assert result.returncode == 0, result.stderr
    finally:
        minirun(["rm", name], check=0, timeout=120)
    assert depth_of(exported) >= DEPTH + 2  # "." + deep + 5,004 levels
    with tarfile.open(exported) as tar:
        links = {m.name: m.linkname for m in tar if m.issym()}
    assert links["./x"] == "/etc" and links["./rootlink"] == "/", "links are stored, never followed"

    image = f"mrt-deep-{secrets.token_hex(3)}"
    imported = minirun(["import", str(exported), image], timeout=120)
    try:
        assert imported.returncode == 0, imported.stderr
        out = minirun(["run", "--rm", "--network", "none", image, "readlink", "/x"], check=0).stdout
        assert out == "/etc\n"
    finally:
        removed = minirun(["rmi", image], timeout=120)
    assert removed.returncode == 0 and "Traceback" not in removed.stderr, removed.stderr
    assert list((minirun.store_dir / "tmp").iterdir()) == [], "nothing left in the store's tmp/"


def dead_pid() -> int:
    """A pid that names no process now (a child that has exited and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def plant_deep_tree(path: Path, owner: tuple[int, int], depth: int = DEPTH) -> None:
    """What a killed import or rmi leaves in tmp/: a tree `depth` levels deep, with a link to /etc."""
    path.mkdir()
    os.chown(path, *owner)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("a", dir_fd=fd)
            os.chown("a", *owner, dir_fd=fd)
            child = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.symlink("/etc", "etc", dir_fd=fd)
        os.chown("etc", *owner, dir_fd=fd, follow_symlinks=False)
    finally:
        os.close(fd)


def unique_tar(directory: Path) -> Path:
    """A one-file rootfs tarball of its own: an image no other test (or container) shares."""
    path = directory / "unique.tar"
    with tarfile.open(path, "w") as tar:
        data = secrets.token_hex(16).encode()
        info = tarfile.TarInfo("marker")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    path.chmod(0o644)
    return path


def test_leftovers_of_killed_imports_and_rmis_are_swept(minirun: Tier, out_dir: Path) -> None:
    tmp = minirun.store_dir / "tmp"
    owner = (minirun.uid, minirun.gid)
    pid = dead_pid()
    leftovers = [tmp / f"import-{pid}-deadbeef", tmp / f"remove-{pid}-deadbeef"]
    for path in leftovers:
        plant_deep_tree(path, owner)
    image = f"mrt-sweep-{secrets.token_hex(3)}"
    try:
        result = minirun(["import", str(unique_tar(out_dir)), image], timeout=120)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        assert not any(p.exists() for p in leftovers), "the next import sweeps what dead ones left"
        assert Path("/etc/passwd").exists()
        plant_deep_tree(leftovers[1], owner, depth=10)
        minirun(["rmi", image], check=0, timeout=120)
        assert not leftovers[1].exists(), "rmi sweeps what a killed rmi left"
    finally:
        for path in leftovers:
            subprocess.run(["rm", "-rf", str(path)], check=False, timeout=120)
        minirun(["rmi", image], timeout=120)
