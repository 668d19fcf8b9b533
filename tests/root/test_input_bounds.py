"""Input bounds: numbers, names and archives too large are refused with one line, before anything.

`-m 99999999999999999999g` used to reach memory.limit_in_bytes (the kernel stored a wrapped
value), a 5,000-character --name was taken, `--tmpfs /t:size=zz` failed only inside the container
and left a record, and `import` unpacked whatever an archive held (4.7 MB of gzip became 1 GB, and
a sparse 1 GB file took 1.1 GB).
"""

import dataclasses
import gzip
import os
import secrets
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import IMAGE, Tier, one_line_error, open_dir

BAD_RUN_FLAGS = [
    (["-m", "99999999999999999999g"], "too large"),
    (["-m", "64m", "--memory-swap", "99999999999999999999g"], "too large"),
    (["--pids-limit", "99999999999"], "the most is"),
    (["--cpuset-cpus", "0-99999999999"], "not available"),
    (["--cpuset-mems", "0-99999999999"], "not available"),
    (["--tmpfs", "/t:size=zz"], "bad value"),
    (["--tmpfs", "/t:bogus"], "unknown option"),
    (["--tmpfs", "/t:size=99999999999999999999g"], "too large"),
]


@pytest.mark.parametrize(("flags", "why"), BAD_RUN_FLAGS, ids=[" ".join(f) for f, _ in BAD_RUN_FLAGS])
def test_bad_values_fail_before_anything_exists(minirun: Tier, flags: list[str], why: str) -> None:
    name = minirun.auto_name() if minirun.auto_name else "bounds"
    result = minirun(["run", "--rm", "--name", name, "--network", "none", *flags, IMAGE, "true"])
    assert result.returncode == 125, result.stderr
    assert why in one_line_error(result)
    assert name not in minirun.container_names(), "no record: refused before anything was created"


@pytest.mark.parametrize("name", ["a" * 5000, "a" * 256, "_under", "x", "sp ace", "dots/slash"])
def test_bad_container_names_are_refused(minirun: Tier, name: str) -> None:
    result = minirun(["run", "--rm", "--name", name, "--network", "none", IMAGE, "true"])
    assert result.returncode == 125
    assert "invalid container name" in one_line_error(result)
    assert len(one_line_error(result)) < 200, "the message does not repeat 5,000 characters"


def test_longest_container_name_is_taken(minirun: Tier) -> None:
    prefix = minirun.auto_name() if minirun.auto_name else "bounds"
    name = prefix + "x" * (255 - len(prefix))
    minirun(["run", "--rm", "--name", name, "--network", "none", IMAGE, "true"], check=0)


def with_env(tier: Tier, variable: str, value: str) -> Tier:
    """The tier with one more environment variable (the rootless prefix runs `env -i ...`)."""
    if tier.rootless:
        at = tier.prefix.index("-i") + 1
        return dataclasses.replace(tier, prefix=[*tier.prefix[:at], f"{variable}={value}", *tier.prefix[at:]])
    return dataclasses.replace(tier, env={**tier.env, variable: value})


@pytest.fixture
def archives(minirun: Tier) -> Iterator[Path]:
    with open_dir("minirun-test-bounds-") as path:
        yield path


ZEROS = 256 * 1024 * 1024


def zeros_tar_gz(path: Path, name: str) -> None:
    """A tar.gz holding one file of 256 MiB of zeros: about 250 KB of gzip."""
    class Zeros:  # what tarfile reads a member's data from: read(n) only
        def read(self, n: int) -> bytes:
            return bytes(n)

    with gzip.open(path, "wb", compresslevel=1) as out, tarfile.open(fileobj=out, mode="w|") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode = ZEROS, 0o644
        tar.addfile(info, Zeros())  # type: ignore[arg-type]


def stored_file(tier: Tier, name: str) -> Path:
    found = list((tier.store_dir / "layers").glob(f"*/rootfs/{name}"))
    assert len(found) == 1, found
    return found[0]


def test_import_is_capped_and_leaves_nothing(minirun: Tier, archives: Path) -> None:
    archive = archives / "bomb.tar.gz"
    zeros_tar_gz(archive, "zeros")
    image = f"mrt-bomb-{secrets.token_hex(3)}"
    capped = with_env(minirun, "MINIRUN_MAX_LAYER_SIZE", "100m")
    result = capped(["import", str(archive), image], timeout=120)
    assert result.returncode == 125
    line = one_line_error(result)
    assert "more than 104857600 bytes" in line and "MINIRUN_MAX_LAYER_SIZE" in line, line
    assert list((minirun.store_dir / "tmp").iterdir()) == [], "the staging area went with the error"
    assert image not in minirun(["images"], check=0).stdout
    bad = with_env(minirun, "MINIRUN_MAX_LAYER_SIZE", "lots")
    assert "invalid MINIRUN_MAX_LAYER_SIZE" in one_line_error(bad(["import", str(archive), image]))


def test_zeros_and_sparse_files_become_holes(minirun: Tier, archives: Path) -> None:
    name = f"mrt-zeros-{secrets.token_hex(3)}"
    zeros_tar_gz(archives / "zeros.tar.gz", name)
    # A GNU sparse member: 1 GiB apparent, 1 MiB of data in the middle (tar -S stores only that).
    sparse_name = f"mrt-sparse-{secrets.token_hex(3)}"
    sparse = archives / sparse_name
    with open(sparse, "wb") as f:
        f.truncate(1 << 30)
        f.seek(512 << 20)
        f.write(data := os.urandom(1 << 20))
    subprocess.run(["tar", "-C", str(archives), "-S", "-cf", str(archives / "sparse.tar"), sparse_name],
                   check=True, timeout=120)
    sparse.unlink()
    assert (archives / "sparse.tar").stat().st_size < 4 << 20
    images = [f"mrt-holes-{secrets.token_hex(3)}", f"mrt-holes-{secrets.token_hex(3)}"]
    try:
        minirun(["import", str(archives / "zeros.tar.gz"), images[0]], check=0, timeout=120)
        minirun(["import", str(archives / "sparse.tar"), images[1]], check=0, timeout=120)
        zeros, holes = stored_file(minirun, name), stored_file(minirun, sparse_name)
        assert zeros.stat().st_size == ZEROS and zeros.stat().st_blocks * 512 < 1 << 20
        assert holes.stat().st_size == 1 << 30 and holes.stat().st_blocks * 512 < 4 << 20
        with open(holes, "rb") as f:
            f.seek(512 << 20)
            assert f.read(1 << 20) == data and f.read(1 << 20) == bytes(1 << 20)
    finally:
        for image in images:
            minirun(["rmi", image], timeout=120)
