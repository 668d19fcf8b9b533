"""Unit tests of the pull's parts that need no registry: references, manifests and platforms,
auth challenges and credentials, the verifying reader, progress output, whiteouts and export."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from minirun.errors import MinirunError
from minirun.images import manifest, reference, registry
from minirun.images.export import write_tar
from minirun.images.progress import Progress
from minirun.images.tarball import safe_extract
from minirun.userns import IdMap

# --- references -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "registry_host", "repository", "tag", "local"),
    [
        ("alpine", "docker.io", "library/alpine", "latest", "alpine:latest"),
        ("nginx:1.23.1", "docker.io", "library/nginx", "1.23.1", "nginx:1.23.1"),
        ("raesene/alpine-containertools", "docker.io", "raesene/alpine-containertools", "latest",
         "raesene/alpine-containertools:latest"),
        ("docker.io/library/ubuntu:22.04", "docker.io", "library/ubuntu", "22.04", "ubuntu:22.04"),
        ("localhost:5000/team/app:v1", "localhost:5000", "team/app", "v1", "localhost:5000/team/app:v1"),
        ("quay.io/x/y", "quay.io", "x/y", "latest", "quay.io/x/y:latest"),
    ],
)
def test_reference_normalisation(text: str, registry_host: str, repository: str, tag: str,
                                 local: str) -> None:
    ref = reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.local_name) == (registry_host, repository, tag, local)


def test_digest_reference() -> None:
    digest = "sha256:" + "ab" * 32
    ref = reference.parse(f"localhost:5000/team/app@{digest}")
    assert ref.wanted == digest and ref.local_name == f"localhost:5000/team/app@{digest}"
    assert str(ref) == f"localhost:5000/team/app@{digest}"
    with pytest.raises(MinirunError, match="invalid reference"):
        reference.parse("app@sha256:1234")


def test_docker_hub_api_host_and_transport() -> None:
    assert reference.parse("alpine").api_host == "registry-1.docker.io"
    assert reference.parse("alpine").scheme == "https"
    for local in ("localhost:5000/a", "127.0.0.1:5000/a", "127.1.2.3/a", "[::1]:5000/a"):
        assert reference.is_local(local.partition("/")[0]), local
    assert reference.parse("example.com:5000/a").scheme == "https"


# --- manifests and platforms ------------------------------------------------------------------------


def descriptor(arch: str, variant: str = "") -> dict[str, object]:
    platform = {"os": "linux", "architecture": arch, **({"variant": variant} if variant else {})}
    digest = "sha256:" + hashlib.sha256(arch.encode()).hexdigest()
    return {"mediaType": manifest.OCI_MANIFEST, "digest": digest, "size": 10, "platform": platform}


def test_index_platform_selection() -> None:
    index = manifest.parse(json.dumps({"mediaType": manifest.OCI_INDEX, "manifests": [
        descriptor("amd64"), descriptor("arm", "v7"), descriptor("arm64", "v8"),
        {**descriptor("unknown"), "platform": {"os": "unknown", "architecture": "unknown"}}]}).encode(), "")
    assert isinstance(index, manifest.Index)
    pick = manifest.select
    assert pick(index, manifest.parse_platform("linux/amd64")).platform == manifest.Platform("linux", "amd64")
    assert pick(index, manifest.parse_platform("arm64")).platform.architecture == "arm64"  # type: ignore[union-attr]
    assert pick(index, manifest.parse_platform("linux/arm/v7")).platform.variant == "v7"  # type: ignore[union-attr]
    with pytest.raises(MinirunError, match=r"no image for platform linux/arm/v6 .*linux/amd64, linux/arm/v7, "
                                           r"linux/arm64/v8\)"):
        pick(index, manifest.parse_platform("linux/arm/v6"))


def test_host_platform_is_known() -> None:
    assert manifest.host_platform().os == "linux"
    known = ("amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64")
    assert manifest.host_platform().architecture in known


@pytest.mark.parametrize(
    ("layer_type", "message"),
    [("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "unsupported layer type")],
)
def test_unsupported_layers_are_refused(layer_type: str, message: str) -> None:
    document = {"mediaType": manifest.OCI_MANIFEST,
                "config": {"mediaType": "x", "digest": "sha256:" + "0" * 64, "size": 2},
                "layers": [{"mediaType": layer_type, "digest": "sha256:" + "1" * 64, "size": 3}]}
    with pytest.raises(MinirunError, match=message):
        manifest.parse(json.dumps(document).encode(), "")


def test_schema1_and_bad_digests_are_refused() -> None:
    with pytest.raises(MinirunError, match="schema 1"):
        manifest.parse(b'{"schemaVersion": 1, "fsLayers": []}',
                       "application/vnd.docker.distribution.manifest.v1+prettyjws")
    document = {"mediaType": manifest.OCI_MANIFEST, "config": {"digest": "md5:00", "size": 1}, "layers": []}
    with pytest.raises(MinirunError, match="only sha256"):
        manifest.parse(json.dumps(document).encode(), "")


# --- auth ---------------------------------------------------------------------------------------------


def test_parse_challenge() -> None:
    scheme, params = registry.parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/alpine:pull"')
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                      "scope": "repository:library/alpine:pull"}
    assert registry.parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})


def test_credentials_from_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    auth = base64.b64encode(b"me:pa:ss").decode()
    auths = {"https://index.docker.io/v1/": {"auth": auth},
             "localhost:5000": {"username": "u", "password": "p"}}
    (tmp_path / "config.json").write_text(json.dumps({"auths": auths}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert registry.credentials_for("docker.io") == registry.Credentials("me", "pa:ss")
    assert registry.credentials_for("localhost:5000") == registry.Credentials("u", "p")
    assert registry.credentials_for("quay.io") is None


def test_basic_challenge_without_credentials_is_one_clear_error() -> None:
    client = registry.Client("http", "127.0.0.1:1", "x/y")
    with pytest.raises(MinirunError, match="needs a login"):
        registry.authenticate(client, 'Basic realm="r"')
    with pytest.raises(MinirunError, match="unsupported authentication"):
        registry.authenticate(client, "Negotiate")


# --- the verifying reader ----------------------------------------------------------------------------


class Response(io.BytesIO):
    """What VerifiedReader reads from: an HTTP response is a file-like object too."""


def verified(data: bytes, digest: str | None = None, size: int | None = None) -> registry.VerifiedReader:
    digest = digest or "sha256:" + hashlib.sha256(data).hexdigest()
    return registry.VerifiedReader(Response(data), digest, len(data) if size is None else size)  # type: ignore[arg-type]


def test_verified_reader_accepts_the_right_bytes() -> None:
    seen: list[int] = []
    reader = verified(b"x" * 100_000)
    reader.on_bytes = seen.append
    assert reader.read_all() == b"x" * 100_000
    assert reader.verified and seen[-1] == 100_000


@pytest.mark.parametrize(
    ("make", "message"),
    [(lambda: verified(b"abc", digest="sha256:" + "0" * 64), "failed verification"),
     (lambda: verified(b"abc", size=10), "truncated"),
     (lambda: verified(b"abcdef", size=3), "larger than")],
)
def test_verified_reader_refuses_wrong_bytes(make: object, message: str) -> None:
    with pytest.raises(MinirunError, match=message):
        make().read_all()  # type: ignore[operator]


def test_unreachable_registry_is_one_line() -> None:
    with pytest.raises(MinirunError, match=r"^registry unreachable: 127\.0\.0\.1:1: "):
        registry.request("http", "127.0.0.1:1", "/v2/", {})


# --- progress --------------------------------------------------------------------------------------------


class Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_not_a_terminal_is_one_line_per_layer() -> None:
    out = Pipe()
    progress = Progress.to(out)
    line = progress.add_layer("sha256:" + "a" * 64)
    progress.downloading(line, 10, 100)
    progress.status(line, "Extracting")
    progress.status(line, "Pull complete", final=True)
    assert out.getvalue() == "aaaaaaaaaaaa: Pull complete\n"


def test_progress_on_a_terminal_redraws_with_bytes() -> None:
    out = Terminal()
    progress = Progress.to(out)
    first, second = progress.add_layer("sha256:" + "a" * 64), progress.add_layer("sha256:" + "b" * 64)
    progress.status(first, "Downloading")
    progress.downloading(second, 2_500_000, 3_000_000)
    progress.status(second, "Pull complete", final=True)
    text = out.getvalue()
    assert "\x1b[2A" in text and "bbbbbbbbbbbb: Pull complete" in text


def test_progress_quiet_prints_nothing() -> None:
    out = Terminal()
    progress = Progress.to(out, quiet=True)
    progress.message("hello")
    progress.status(progress.add_layer("sha256:" + "a" * 64), "Pull complete", final=True)
    assert out.getvalue() == ""


# --- whiteouts and the merged view -----------------------------------------------------------------------


def layer_tar(entries: dict[str, bytes | None]) -> io.BytesIO:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    raw.seek(0)
    return raw


def test_whiteouts_become_overlay_whiteouts(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    safe_extract(layer_tar({"d": None, "d/.wh.gone": b"", "o": None, "o/.wh..wh..opq": b"", "o/new": b"n"}),
                 layer, chown=False, whiteouts=True)
    gone = os.lstat(layer / "d" / "gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(layer / "o", "user.overlay.opaque") == b"y"
    assert not (layer / "o" / ".wh..wh..opq").exists() and not (layer / "d" / ".wh.gone").exists()


def test_whiteouts_are_plain_files_in_a_rootfs_import(tmp_path: Path) -> None:
    safe_extract(layer_tar({".wh.x": b""}), tmp_path / "r", chown=False)
    assert (tmp_path / "r" / ".wh.x").is_file()


@pytest.mark.parametrize("name", ["d/.wh..", "d/.wh."])
def test_bad_whiteouts_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(MinirunError, match="refusing"):
        safe_extract(layer_tar({"d": None, name: b""}), tmp_path / "r", chown=False, whiteouts=True)


def test_merged_view_applies_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    lower, middle, upper = tmp_path / "lower", tmp_path / "middle", tmp_path / "upper"
    safe_extract(layer_tar({"a": b"1", "d": None, "d/x": b"x", "o": None, "o/old": b"o", "f": b"file"}),
                 lower, chown=False)
    safe_extract(layer_tar({"d": None, "d/.wh.x": b"", "d/y": b"y", "o": None, "o/.wh..wh..opq": b"",
                            "o/new": b"n"}), middle, chown=False, whiteouts=True)
    safe_extract(layer_tar({"a": b"2", "f": None, "f/inside": b"i"}), upper, chown=False)
    out = io.BytesIO()
    me = [IdMap(0, os.getuid(), 1)]
    write_tar([lower, middle, upper], out, me, [IdMap(0, os.getgid(), 1)])
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile(members["./a"]).read() == b"2"  # type: ignore[union-attr]
    assert set(members) == {".", "./a", "./d", "./d/y", "./f", "./f/inside", "./o", "./o/new"}
    assert {m.uid for m in members.values()} == {0}


@pytest.mark.parametrize("ref", ["alpine", "library/alpine", "docker.io/library/alpine:3", "library/a/b",
                                 "docker.io/library/a/b", "x/y", "docker.io/x/y", "localhost:5000/library/x"])
def test_a_pull_stores_under_the_name_the_store_looks_up(ref: str) -> None:
    """`run`, `images` and `rmi` find a pulled image by the name it was pulled as."""
    from minirun.images.store import normalize_ref

    assert reference.parse(ref).local_name == normalize_ref(ref)
