"""fsutil's tree walker and remover: any depth, fds only, never through a link."""

import errno
import io
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from minirun import fsutil
from minirun.errors import MinirunError
from minirun.images.tarball import safe_extract

DEPTH = 5000  # far past Python's recursion limit (1,000) and PATH_MAX (4,096 bytes of "a/")


@pytest.fixture(autouse=True)
def remove_deep_trees(tmp_path: Path) -> Iterator[None]:
    """pytest's own clean-up of tmp_path is shutil.rmtree, which recursion stops at ~1,000 levels."""
    yield
    for child in tmp_path.iterdir():
        fsutil.remove_tree(child)


def chain(top: Path, depth: int) -> int:
    """top/a/a/.../a, `depth` levels; returns an open fd of the deepest directory."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("a", dir_fd=fd)
        child = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    return fd


def test_remove_tree_of_any_depth_never_follows_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    deepest = chain(tmp_path / "top", DEPTH)
    try:
        os.symlink(str(outside), "to-dir", dir_fd=deepest)
        os.symlink("..", "up", dir_fd=deepest)
        os.makedirs(f"/proc/self/fd/{deepest}/locked/x")
        os.chmod(f"/proc/self/fd/{deepest}/locked", 0)  # as overlay leaves work/work
    finally:
        os.close(deepest)
    os.symlink(str(outside), tmp_path / "top" / "link")
    fsutil.remove_tree(tmp_path / "top")
    assert not (tmp_path / "top").exists()
    assert (outside / "keep").read_text() == "x", "nothing behind a link was touched"


def test_remove_tree_of_a_symlink_removes_the_link_only(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "f").write_text("x")
    (tmp_path / "link").symlink_to(target)
    fsutil.remove_tree(tmp_path / "link")
    assert not os.path.lexists(tmp_path / "link") and (target / "f").exists()
    fsutil.remove_tree(tmp_path / "missing")  # nothing there: nothing to do


def everything(fds: dict[int, int]) -> list[tuple[str, tuple[int, ...]]]:
    return [(e.name, (0,) if e.is_dir(follow_symlinks=False) else ()) for e in fsutil.list_directory(fds[0])]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_walk_holds_few_fds_however_deep(tmp_path: Path) -> None:
    os.close(chain(tmp_path / "top", DEPTH))
    top = os.open(tmp_path / "top", fsutil.DIR_FLAGS)
    try:
        before, most, deepest = open_fds(), 0, 0
        for visit in fsutil.walk({0: top}, everything):
            most, deepest = max(most, open_fds()), max(deepest, len(visit.path))
        assert deepest == DEPTH
        assert most - before <= 3, "one fd per tree (plus a listing's), not one per level"
    finally:
        os.close(top)


def test_walk_notices_a_directory_moved_under_it(tmp_path: Path) -> None:
    (tmp_path / "top" / "a" / "b" / "c").mkdir(parents=True)
    top = os.open(tmp_path / "top", fsutil.DIR_FLAGS)
    try:
        with pytest.raises(OSError) as caught:
            for visit in fsutil.walk({0: top}, everything):
                if visit.path == ("a", "b", "c") and visit.kind == "entry":
                    # climbing back from b through ".." now ends in top, not in a
                    os.rename(tmp_path / "top" / "a" / "b", tmp_path / "top" / "b")
        assert caught.value.errno == errno.ESTALE
    finally:
        os.close(top)


def tar_of(members: list[tarfile.TarInfo]) -> io.BufferedReader:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for m in members:
            tar.addfile(m, io.BytesIO(b"x" * m.size) if m.isreg() else None)
    raw.seek(0)
    return io.BufferedReader(raw)  # type: ignore[arg-type]


def member(name: str, kind: bytes = tarfile.DIRTYPE, linkname: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size, info.mode = kind, linkname, size, 0o755
    return info


def test_a_hostile_deep_tarball_extracts_in_linear_time(tmp_path: Path) -> None:
    names = ["/".join(["a"] * n) for n in range(1, DEPTH + 1)]
    archive = tar_of([*(member(n) for n in names), member(names[-1] + "/f", tarfile.REGTYPE, size=1),
                      member("a", tarfile.REGTYPE, size=1)])  # last: the whole chain replaced by a file
    started = time.monotonic()
    safe_extract(archive, tmp_path / "root", chown=False)
    assert time.monotonic() - started < 20, "O(depth) per member would take minutes"
    assert (tmp_path / "root" / "a").is_file()


def test_the_remembered_directory_never_outlives_its_replacement(tmp_path: Path) -> None:
    # d/ is remembered after d/f; then d becomes a symlink to /etc: d/g must not land in the
    # old (now deleted) directory, nor in /etc, but be refused as below a symlink.
    archive = tar_of([member("d"), member("d/f", tarfile.REGTYPE, size=1),
                      member("d", tarfile.SYMTYPE, "/etc"), member("d/g", tarfile.REGTYPE, size=1)])
    with pytest.raises(MinirunError, match="lies below 'd', which is a symlink"):
        safe_extract(archive, tmp_path / "root", chown=False)
    assert not Path("/etc/g").exists()
