"""The image store: names, import, lookup, re-tagging, and that a failed import leaves nothing behind.

Also the two verbs built on it, `minirun import` and `minirun images`, through minirun.cli.main.
"""

import hashlib
import io
import json
import os
import stat
import tarfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from minirun.cli import main
from minirun.commands.images import human_duration, human_size
from minirun.errors import RUNTIME_ERROR, ImageNotFound, MinirunError
from minirun.images import ImageConfig, import_tarball, list_images, normalize_ref, resolve


def rootfs_tar(marker: str = "one", *, extra: list[tarfile.TarInfo] | None = None) -> bytes:
    """A tiny root file system; `marker` makes different archives (and so different layers)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in [
            (tarfile.TarInfo("./"), None),
            (tarfile.TarInfo("./bin"), None),
            (tarfile.TarInfo("./bin/sh"), b"#!shell"),
            (tarfile.TarInfo("./etc/marker"), marker.encode()),
        ]:
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            else:
                info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
        for info in extra or []:
            tar.addfile(info)
    return buffer.getvalue()


def do_import(store: Path, data: bytes, ref: str, config: ImageConfig | None = None) -> str:
    return import_tarball(store, io.BytesIO(data), ref, config=config).id


def store_contents(store: Path) -> dict[str, list[str]]:
    """What an import can leave behind: layers, image records, staging directories, names."""
    listing = {
        sub: sorted(os.listdir(store / sub)) if (store / sub).exists() else []
        for sub in ("layers", "images", "tmp")
    }
    repositories = store / "repositories.json"
    listing["names"] = sorted(json.loads(repositories.read_text())) if repositories.exists() else []
    return listing


EMPTY: dict[str, list[str]] = {"layers": [], "images": [], "tmp": [], "names": []}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "normalized"),
    [
        ("busybox", "busybox:latest"),
        ("busybox:1.36", "busybox:1.36"),
        ("a/b:1", "a/b:1"),
        # docker's familiar names: an official image is kept without `docker.io/library/`.
        ("library/alpine", "alpine:latest"),
        ("docker.io/library/alpine:3", "alpine:3"),
        ("docker.io/x/y", "x/y:latest"),
        ("docker.io/library/a/b", "library/a/b:latest"),
        ("localhost:5000/team/app:v1.2-rc_3", "localhost:5000/team/app:v1.2-rc_3"),
        ("my-app__x.y", "my-app__x.y:latest"),
    ],
)
def test_normalize_ref(ref: str, normalized: str) -> None:
    assert normalize_ref(ref) == normalized


@pytest.mark.parametrize(
    "ref",
    ["", "Busybox", "busybox:", ":tag", "a b", "a//b", "-a", "a:-x", "a@sha256:" + "0" * 64, "0123abcd" * 8],
)
def test_normalize_ref_rejects_malformed(ref: str) -> None:
    with pytest.raises(MinirunError, match="invalid reference format"):
        normalize_ref(ref)


# --- import and lookup -------------------------------------------------------------------------


def test_import_lays_out_layer_record_and_name(store: Path) -> None:
    data = rootfs_tar()
    image = import_tarball(store, io.BytesIO(data), "busybox")

    layer_hex = hashlib.sha256(data).hexdigest()  # the layer is named by the tarball's digest
    assert image.layers == [store / "layers" / layer_hex / "rootfs"]
    assert (image.layers[0] / "bin/sh").read_bytes() == b"#!shell"
    assert json.loads((store / "layers" / layer_hex / "layer.json").read_text()) == {
        "digest": f"sha256:{layer_hex}",
        "size": len(b"#!shell") + len(b"one"),
    }
    assert image.id.startswith("sha256:") and len(image.id) == 71
    record = json.loads((store / "images" / f"{image.id[7:]}.json").read_text())
    assert record["layers"] == [f"sha256:{layer_hex}"]
    assert record["config"]["Cmd"] == ["/bin/sh"]
    assert json.loads((store / "repositories.json").read_text()) == {"busybox:latest": image.id}
    assert image.repo_tags == ["busybox:latest"]
    assert image.config == ImageConfig()
    assert image.size == len(b"#!shell") + len(b"one")
    assert datetime.fromisoformat(image.created).tzinfo is not None
    assert os.listdir(store / "tmp") == []  # the staging area is gone
    assert stat.S_IMODE(os.stat(store / "layers").st_mode) == 0o700  # no setuid files for host users


def test_compressed_tarball_from_a_non_seekable_stream(store: Path) -> None:
    import gzip

    data = gzip.compress(rootfs_tar())
    image = import_tarball(store, io.BufferedReader(Trickle(data)), "zipped")
    assert image.layers[0].name == "rootfs"
    assert image.layers[0].parent.name == hashlib.sha256(data).hexdigest()


def test_resolve_by_name_id_and_prefix(store: Path) -> None:
    image_id = do_import(store, rootfs_tar(), "busybox:1")
    hex_id = image_id.removeprefix("sha256:")
    for ref in ["busybox:1", image_id, hex_id, hex_id[:4], hex_id[:12], f"sha256:{hex_id[:6]}"]:
        assert resolve(store, ref).id == image_id
    for ref in [
        "busybox",
        "busybox:2",
        "other",
        hex_id[:3],
        "sha256:ffff" if hex_id[:4] != "ffff" else "sha256:0000",
    ]:
        with pytest.raises(ImageNotFound, match=f"image not found: {ref}") as caught:
            resolve(store, ref)
        assert caught.value.code == RUNTIME_ERROR


def test_a_name_wins_over_an_id_prefix(store: Path) -> None:
    first = do_import(store, rootfs_tar("one"), "first")
    prefix = first.removeprefix("sha256:")[:6]
    second = do_import(store, rootfs_tar("two"), prefix)
    assert resolve(store, prefix).id == second


def test_ambiguous_id_prefix(store: Path) -> None:
    (store / "images").mkdir(parents=True)
    for digit in "01":
        (store / "images" / f"abcd{digit * 60}.json").write_text("{}")
    with pytest.raises(MinirunError, match="ambiguous"):
        resolve(store, "abcd")


def test_missing_store_is_empty_and_not_created(store: Path) -> None:
    assert list_images(store) == []
    with pytest.raises(ImageNotFound):
        resolve(store, "busybox")
    assert not store.exists()


def test_config_is_stored_and_part_of_the_id(store: Path) -> None:
    config = ImageConfig(
        env=("PATH=/bin", "A=1"),
        cmd=("echo", "hi"),
        entrypoint=("/bin/sh", "-c"),
        working_dir="/tmp",
        user="1000:1000",
    )
    plain = do_import(store, rootfs_tar(), "plain")
    configured = do_import(store, rootfs_tar(), "configured", config)
    assert plain != configured
    assert resolve(store, "configured").config == config
    assert len(os.listdir(store / "layers")) == 1  # both images share the one layer


# --- names moving between images ---------------------------------------------------------------


def test_reimport_of_same_tarball_is_idempotent(store: Path) -> None:
    first = do_import(store, rootfs_tar(), "busybox")
    again = do_import(store, rootfs_tar(), "busybox")
    also = do_import(store, rootfs_tar(), "alias:v1")
    assert first == again == also
    (image,) = list_images(store)
    assert image.repo_tags == ["alias:v1", "busybox:latest"]
    assert store_contents(store)["tmp"] == []
    assert len(os.listdir(store / "layers")) == 1


def test_zstd_tarball_from_a_trickling_stream(store: Path) -> None:
    """A zstd stream (OCI `tar+zstd`) read 100 bytes at a time: same files, digest of the bytes."""
    import zstandard

    data = zstandard.ZstdCompressor().compress(rootfs_tar())
    reader = io.BufferedReader(Trickle(data))
    image = import_tarball(store, reader, "zstd")
    assert image.layers[0].parent.name == hashlib.sha256(data).hexdigest()
    assert (image.layers[0] / "bin").is_dir()


class Trickle(io.RawIOBase):
    """Readable, not seekable, short reads: like a pipe or a socket."""

    def __init__(self, data: bytes) -> None:
        self.inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: "memoryview") -> int:  # type: ignore[override]
        chunk = self.inner.read(min(len(buffer), 100))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_retag_removes_the_old_untagged_image_and_its_layer(store: Path) -> None:
    old = do_import(store, rootfs_tar("one"), "busybox")
    new = do_import(store, rootfs_tar("two"), "busybox")
    assert old != new
    assert [image.id for image in list_images(store)] == [new]
    assert store_contents(store)["layers"] == [hashlib.sha256(rootfs_tar("two")).hexdigest()]
    assert store_contents(store)["tmp"] == []


def test_retag_removes_read_only_directories(store: Path) -> None:
    """As a user (no root to ignore modes), deleting a 0555 directory's entries needs care."""
    locked_dir = tarfile.TarInfo("./locked")
    locked_dir.type, locked_dir.mode = tarfile.DIRTYPE, 0o555
    do_import(store, rootfs_tar("one", extra=[locked_dir, tarfile.TarInfo("./locked/file")]), "busybox")
    new = do_import(store, rootfs_tar("two"), "busybox")
    assert [image.id for image in list_images(store)] == [new]
    assert len(store_contents(store)["layers"]) == 1
    assert store_contents(store)["tmp"] == []


def test_retag_keeps_an_old_image_with_other_names(store: Path) -> None:
    old = do_import(store, rootfs_tar("one"), "busybox")
    do_import(store, rootfs_tar("one"), "keep")
    new = do_import(store, rootfs_tar("two"), "busybox")
    assert resolve(store, "keep").id == old
    assert resolve(store, "keep").repo_tags == ["keep:latest"]
    assert resolve(store, "busybox").id == new


def test_retag_keeps_a_layer_another_image_shares(store: Path) -> None:
    do_import(store, rootfs_tar("one"), "busybox")
    shared = do_import(store, rootfs_tar("one"), "custom", ImageConfig(cmd=("true",)))
    do_import(store, rootfs_tar("two"), "busybox")  # the first image goes, its layer stays
    assert (resolve(store, shared).layers[0] / "etc/marker").read_text() == "one"


def test_list_images_newest_first_with_sizes(store: Path) -> None:
    a = do_import(store, rootfs_tar("a"), "a")
    b = do_import(store, rootfs_tar("bb"), "b")
    images = list_images(store)
    assert {image.id for image in images} == {a, b}
    assert [image.created for image in images] == sorted((image.created for image in images), reverse=True)
    assert {image.size for image in images} == {len(b"#!shell") + 1, len(b"#!shell") + 2}


# --- failed imports leave nothing --------------------------------------------------------------


def _hostile(kind: str) -> bytes:
    if kind == "dotdot":
        extra = [tarfile.TarInfo("../canary/pwned")]
    elif kind == "symlink write-through":
        link = tarfile.TarInfo("etc2")
        link.type, link.linkname = tarfile.SYMTYPE, "CANARY"
        file = tarfile.TarInfo("etc2/pwned")
        extra = [link, file]
    else:  # hard link to a host file
        info = tarfile.TarInfo("stolen")
        info.type, info.linkname = tarfile.LNKTYPE, "CANARY/file"
        extra = [info]
    return rootfs_tar(extra=extra)


@pytest.mark.parametrize("kind", ["dotdot", "symlink write-through", "hardlink"])
def test_refused_import_leaves_nothing(tmp_path: Path, store: Path, kind: str) -> None:
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "file").write_bytes(b"original")
    data = _with_canary(_hostile(kind), canary)
    with pytest.raises(MinirunError, match="refusing archive"):
        import_tarball(store, io.BytesIO(data), "evil")
    assert store_contents(store) == EMPTY
    assert sorted(os.listdir(canary)) == ["file"]
    assert (canary / "file").read_bytes() == b"original"
    assert os.stat(canary / "file").st_nlink == 1


def _with_canary(data: bytes, canary: Path) -> bytes:
    """Copy an archive, replacing the placeholder CANARY in link targets with the real path."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for info in src:
            info.linkname = info.linkname.replace("CANARY", str(canary))
            dst.addfile(info, src.extractfile(info) if info.isreg() else None)
    return out.getvalue()


@pytest.mark.parametrize(
    "data", [b"", b"garbage" * 200, rootfs_tar()[:1500]], ids=["empty", "garbage", "cut"]
)
def test_broken_tarball_leaves_nothing(store: Path, data: bytes) -> None:
    with pytest.raises(MinirunError):
        import_tarball(store, io.BytesIO(data), "broken")
    assert store_contents(store) == EMPTY


def test_interrupted_import_leaves_nothing(store: Path) -> None:
    class Interrupted(io.RawIOBase):  # the user presses ^C half-way through the tarball
        def __init__(self, data: bytes) -> None:
            self.inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: "memoryview") -> int:  # type: ignore[override]
            if self.inner.tell() > 1500:
                raise KeyboardInterrupt
            chunk = self.inner.read(min(len(buffer), 512))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    with pytest.raises(KeyboardInterrupt):
        import_tarball(store, io.BufferedReader(Interrupted(rootfs_tar()), buffer_size=512), "busybox")
    assert store_contents(store) == EMPTY


def test_bad_name_is_refused_before_reading(store: Path) -> None:
    with pytest.raises(MinirunError, match="invalid reference"):
        import_tarball(store, io.BytesIO(b"never read"), "Bad Name")
    assert not store.exists()


# --- the verbs ---------------------------------------------------------------------------------


@pytest.fixture
def cli_store(store: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MINIRUN_ROOT", str(store))
    return store


def test_import_and_images_verbs(cli_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tarball = tmp_path / "rootfs.tar"
    tarball.write_bytes(rootfs_tar())
    assert main(["import", str(tarball), "busybox"]) == 0
    image_id = capsys.readouterr().out.strip()
    assert image_id == resolve(cli_store, "busybox").id

    assert main(["images"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert row.split()[:3] == ["busybox", "latest", image_id[7:19]]
    assert row.endswith("ago   10B")

    assert main(["images", "-q"]) == 0
    assert capsys.readouterr().out == f"{image_id[7:19]}\n"
    assert main(["images", "--quiet", "--no-trunc"]) == 0
    assert capsys.readouterr().out == f"{image_id}\n"


def test_import_verb_reads_stdin(
    cli_store: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(rootfs_tar())))
    assert main(["import", "-", "piped:v1"]) == 0
    assert capsys.readouterr().out.strip() == resolve(cli_store, "piped:v1").id


def test_import_verb_errors_are_one_line(
    cli_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", str(tmp_path / "missing.tar"), "x"]) == RUNTIME_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.tar" in err
    (tmp_path / "bad.tar").write_bytes(b"garbage")
    assert main(["import", str(tmp_path / "bad.tar"), "x"]) == RUNTIME_ERROR
    assert capsys.readouterr().err.startswith("minirun: not a tar archive")
    assert store_contents(cli_store) == EMPTY


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (999, "999B"),
        (1000, "1kB"),
        (1234, "1.23kB"),
        (4_260_000, "4.26MB"),
        (77_800_000, "77.8MB"),
    ],
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text


@pytest.mark.parametrize(
    ("elapsed", "text"),
    [
        (timedelta(seconds=0.5), "Less than a second"),
        (timedelta(seconds=5), "5 seconds"),
        (timedelta(seconds=90), "About a minute"),
        (timedelta(minutes=5), "5 minutes"),
        (timedelta(minutes=61), "About an hour"),
        (timedelta(hours=5), "5 hours"),
        (timedelta(days=3), "3 days"),
        (timedelta(days=21), "3 weeks"),
        (timedelta(days=100), "3 months"),
        (timedelta(days=800), "2 years"),
    ],
)
def test_human_duration(elapsed: timedelta, text: str) -> None:
    assert human_duration(elapsed) == text
