"""safe_extract: ordinary archives come out right, hostile ones are refused and write nothing outside.

Every hostile archive here is built in memory with tarfile. Next to the extraction directory
sits a canary directory holding one file; each test of a refused archive checks that the canary
is exactly as it was (same entries, same content, no extra hard link to its file).
"""

import io
import os
import stat
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from minirun.errors import MinirunError
from minirun.images.tarball import safe_extract

Member = tuple[tarfile.TarInfo, bytes | None]
IS_ROOT = os.geteuid() == 0


def reg(name: str, data: bytes = b"", mode: int = 0o644, uid: int = 0, gid: int = 0) -> Member:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.uid, info.gid, info.mtime = len(data), mode, uid, gid, 1_000_000
    return info, data


def directory(name: str, mode: int = 0o755) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 2_000_000
    return info, None


def symlink(name: str, target: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, None


def hardlink(name: str, target: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.LNKTYPE, target
    return info, None


def special(name: str, kind: bytes) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = kind, 1, 3
    return info, None


def build_tar(*members: Member, compression: str = "") -> bytes:
    buffer = io.BytesIO()
    mode = f"w:{compression}" if compression else "w"
    with tarfile.open(fileobj=buffer, mode=mode) as tar:  # type: ignore[call-overload]
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


@dataclass
class Sandbox:
    dest: Path
    canary: Path

    def extract(self, data: bytes, *, chown: bool = False) -> int:
        return safe_extract(io.BytesIO(data), self.dest, chown=chown)

    def assert_canary_untouched(self) -> None:
        assert sorted(os.listdir(self.canary)) == ["file"]
        assert (self.canary / "file").read_bytes() == b"original"
        assert os.stat(self.canary / "file").st_nlink == 1


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "file").write_bytes(b"original")
    sandbox = Sandbox(dest=tmp_path / "dest", canary=canary)
    yield sandbox
    sandbox.assert_canary_untouched()


# --- ordinary archives -------------------------------------------------------------------------


def test_extracts_files_directories_and_links(box: Sandbox) -> None:
    written = box.extract(
        build_tar(
            directory("./"),
            directory("./bin"),
            reg("./bin/busybox", b"#!elf", mode=0o755),
            symlink("./bin/sh", "/bin/busybox"),
            hardlink("./bin/ash", "./bin/busybox"),
            reg("./etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
            special("./run/fifo", tarfile.FIFOTYPE),
        )
    )
    assert written == len(b"#!elf") + len(b"root:x:0:0::/root:/bin/sh\n")
    assert (box.dest / "bin/busybox").read_bytes() == b"#!elf"
    assert stat.S_IMODE(os.stat(box.dest / "bin/busybox").st_mode) == 0o755
    assert os.readlink(box.dest / "bin/sh") == "/bin/busybox"
    assert os.stat(box.dest / "bin/ash").st_ino == os.stat(box.dest / "bin/busybox").st_ino
    assert (box.dest / "etc").is_dir()  # a parent the archive did not list
    assert stat.S_ISFIFO(os.lstat(box.dest / "run/fifo").st_mode)
    assert os.stat(box.dest / "etc/passwd").st_mtime == 1_000_000


@pytest.mark.parametrize("compression", ["", "gz", "bz2", "xz"])
def test_compression_is_detected(box: Sandbox, compression: str) -> None:
    box.extract(build_tar(reg("hello", b"hi"), compression=compression))
    assert (box.dest / "hello").read_bytes() == b"hi"


def test_reads_from_a_pipe(box: Sandbox) -> None:
    """`minirun import - NAME`: the archive is read as a stream and never seeked."""
    data = build_tar(reg("hello", b"hi"), compression="gz")
    read_end, write_end = os.pipe()

    def feed() -> None:
        with open(write_end, "wb") as w:
            w.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    with open(read_end, "rb") as r:
        safe_extract(r, box.dest, chown=False)
    writer.join()
    assert (box.dest / "hello").read_bytes() == b"hi"


def test_modes_with_special_bits_and_directory_metadata_last(box: Sandbox) -> None:
    box.extract(
        build_tar(
            directory("ro", mode=0o555),  # read-only, yet its children come after it
            reg("ro/inside", b"x"),
            directory("sticky", mode=0o1777),
            reg("setuid", b"x", mode=0o4755),
        )
    )
    assert (box.dest / "ro/inside").read_bytes() == b"x"
    assert stat.S_IMODE(os.stat(box.dest / "ro").st_mode) == 0o555
    assert os.stat(box.dest / "ro").st_mtime == 2_000_000  # not bumped by creating "inside"
    assert stat.S_IMODE(os.stat(box.dest / "sticky").st_mode) == 0o1777
    assert stat.S_IMODE(os.stat(box.dest / "setuid").st_mode) == 0o4755
    os.chmod(box.dest / "ro", 0o755)  # let pytest clean up as a non-root user


@pytest.mark.skipif(not IS_ROOT, reason="chown needs root")
def test_chown_sets_numeric_owners_and_keeps_setuid(box: Sandbox) -> None:
    box.extract(
        build_tar(reg("suid", b"x", mode=0o4755, uid=1000, gid=1000), symlink("link", "suid")),
        chown=True,
    )
    st = os.stat(box.dest / "suid")
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert stat.S_IMODE(st.st_mode) == 0o4755  # chown(2) clears setuid; the mode is set after it


def test_implied_directories_are_0755_whatever_the_umask(box: Sandbox) -> None:
    old_umask = os.umask(0o077)
    try:
        box.extract(build_tar(reg("usr/bin/tool", b"x", mode=0o755)))
    finally:
        os.umask(old_umask)
    for path in [box.dest, box.dest / "usr", box.dest / "usr/bin"]:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(box.dest / "usr/bin/tool").st_mode) == 0o755


def test_leading_slash_and_dot_slash_are_stripped(box: Sandbox) -> None:
    box.extract(build_tar(reg("/etc/passwd", b"a"), reg("./etc/group", b"b"), reg(".//./etc//hosts", b"c")))
    assert sorted(os.listdir(box.dest / "etc")) == ["group", "hosts", "passwd"]


def test_absolute_path_to_outside_lands_inside(box: Sandbox) -> None:
    box.extract(build_tar(reg(f"{box.canary}/file", b"pwned")))
    assert (box.dest / str(box.canary).lstrip("/") / "file").read_bytes() == b"pwned"


def test_symlink_pointing_outside_is_created_as_is(box: Sandbox) -> None:
    """Harmless: never followed here, and resolved inside the container's root at run time."""
    box.extract(build_tar(symlink("etc", str(box.canary)), symlink("up", "../../../../")))
    assert os.readlink(box.dest / "etc") == str(box.canary)


def test_member_replaces_a_symlink_instead_of_writing_through_it(box: Sandbox) -> None:
    box.extract(build_tar(symlink("x", str(box.canary / "file")), reg("x", b"new")))
    assert not os.path.islink(box.dest / "x")
    assert (box.dest / "x").read_bytes() == b"new"


def test_directory_replaces_a_symlink(box: Sandbox) -> None:
    box.extract(build_tar(symlink("d", str(box.canary)), directory("d", mode=0o700)))
    assert not os.path.islink(box.dest / "d")
    assert stat.S_IMODE(os.lstat(box.dest / "d").st_mode) == 0o700


def test_file_replaces_a_directory_tree_and_its_pending_mode_is_dropped(box: Sandbox) -> None:
    box.extract(build_tar(directory("d", mode=0o700), reg("d/f", b"x"), reg("d", b"file now")))
    assert (box.dest / "d").read_bytes() == b"file now"
    assert stat.S_IMODE(os.stat(box.dest / "d").st_mode) == 0o644


def test_hardlink_to_an_earlier_member_through_absolute_name(box: Sandbox) -> None:
    box.extract(build_tar(reg("bin/busybox", b"elf"), hardlink("bin/sh", "/bin/busybox")))
    assert os.stat(box.dest / "bin/sh").st_nlink == 2


def test_device_nodes_are_skipped_with_one_warning(box: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    box.extract(
        build_tar(
            special("dev/null", tarfile.CHRTYPE),
            special("dev/sda", tarfile.BLKTYPE),
            hardlink("dev/null2", "dev/null"),  # a link to a skipped device is skipped too
            reg("dev/keep", b"ok"),
        )
    )
    assert os.listdir(box.dest / "dev") == ["keep"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "skipped 3 device node(s)" in err


# --- hostile archives --------------------------------------------------------------------------

# Each builds its archive for a given canary directory (the host files an attacker would want).
HOSTILE: dict[str, Callable[[Path], list[Member]]] = {
    "dotdot": lambda canary: [reg("../canary/file", b"pwned")],
    "dotdot in the middle": lambda canary: [directory("a"), reg("a/../../canary/file", b"pwned")],
    "dotdot under absolute": lambda canary: [reg("/../canary/file", b"pwned")],
    "write through absolute symlink": lambda canary: [symlink("etc", str(canary)), reg("etc/file", b"pwned")],
    "write through relative symlink": lambda canary: [symlink("etc", "../canary"), reg("etc/file", b"pwned")],
    "directory through symlink": lambda canary: [symlink("etc", str(canary)), directory("etc/sub")],
    "deep write through symlink": lambda canary: [
        directory("a"),
        symlink("a/b", str(canary)),
        reg("a/b/c/d", b"pwned"),
    ],
    "hardlink to absolute host file": lambda canary: [hardlink("stolen", f"{canary}/file")],
    "hardlink to /etc/passwd": lambda canary: [hardlink("passwd", "/etc/passwd")],
    "hardlink with dotdot": lambda canary: [hardlink("x", "../../canary/file")],
    "hardlink through symlink": lambda canary: [symlink("l", str(canary)), hardlink("x", "l/file")],
    "hardlink to missing": lambda canary: [hardlink("x", "nothing")],
    "hardlink to directory": lambda canary: [directory("d"), hardlink("x", "d")],
    "file as the root": lambda canary: [reg("./", b"x")],
    "unknown member type": lambda canary: [special("volume", b"V")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused(box: Sandbox, case: str) -> None:
    with pytest.raises(MinirunError, match="refusing archive"):
        box.extract(build_tar(*HOSTILE[case](box.canary)))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"this is not a tar file" * 100,
        build_tar(reg("big", b"x" * 5000))[:3000],  # cut in a file's data
        build_tar(reg("a", b"x"), reg("b", b"y"))[:1200],  # cut in the second header
        build_tar(reg("a", b"x"))[:1024] + b"garbage!" * 64,  # a damaged second header
        b"\x1f\x8b\x08junk",
    ],
    ids=["empty", "garbage", "truncated data", "truncated header", "bad header", "bad gzip"],
)
def test_broken_input_is_one_clear_error(box: Sandbox, data: bytes) -> None:
    with pytest.raises(MinirunError, match=r"^not a tar archive"):
        box.extract(data)
