"""Pulling from a real registry (Debian's docker-registry on 127.0.0.1), as root and rootless.

The images are built here as OCI layouts and pushed with skopeo (tests/registry.py): a
three-layer image with a whiteout and an opaque directory, an image with Entrypoint, Cmd, Env,
WorkingDir, User and ExposedPorts, a manifest list with two platforms, and hostile layers.
Every pulled image is checked by running containers from it, or by exporting one.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import subprocess
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import Tier, one_line_error, wait_for
from registry import HOST_ARCH, PATH, Layer, Layout, Registry, TokenProxy, free_port, gzip_file, in_netns

OTHER_ARCH = "arm64" if HOST_ARCH != "arm64" else "amd64"


@dataclass
class Pushed:
    registry: Registry
    proxy: TokenProxy
    layers: str  # references on the registry itself (no auth)
    config: str
    multi: str
    traversal: str
    symlink: str
    hardlink: str
    zstd: str
    whiteout_layer: str  # the digest of the layer with the whiteouts
    hostile_layers: dict[str, str]  # tag -> hex digest of its hostile layer

    def via_proxy(self, ref: str) -> str:
        """The same image through the bearer-token front end."""
        return ref.replace(self.registry.host, self.proxy.host)


@pytest.fixture(scope="module")
def pushed(busybox_tar: Path, tmp_path_factory: pytest.TempPathFactory, test_netns: str) -> Iterator[Pushed]:
    registry = Registry.start(test_netns)
    proxy = TokenProxy.start(registry.host, test_netns)
    try:
        layout = Layout(tmp_path_factory.mktemp("oci"))
        base = gzip_file(busybox_tar)
        files = Layer({"data": None, "data/keep": b"keep\n", "data/gone": b"gone\n", "opaque": None,
                       "opaque/old": b"old\n", "opaque/sub": None, "opaque/sub/old2": b"old2\n",
                       "hello.txt": b"hello\n"}).tar_gz()
        deletions = Layer({"data/.wh.gone": b"", "opaque/.wh..wh..opq": b"", "opaque/new": b"new\n",
                           ".wh.hello.txt": b""}).tar_gz()
        default = {"Env": [PATH], "Cmd": ["sh"]}
        layout.tag(layout.image([base, files, deletions], default), "layers")
        work = Layer({"work": None, "work/README": b"w\n"}).tar_gz()
        config = {"Env": [PATH, "GREETING=hello"], "Entrypoint": ["/bin/sh", "-c"],
                  "Cmd": ['echo "$GREETING from $(pwd) as $(id -u):$(id -g)"'], "WorkingDir": "/work",
                  "User": "1000:1000", "ExposedPorts": {"8080/tcp": {}}}
        layout.tag(layout.image([base, work], config), "config")
        here = layout.image([base, Layer({"platform": f"{HOST_ARCH}\n".encode()}).tar_gz()], default)
        other = layout.image([base, Layer({"platform": f"{OTHER_ARCH}\n".encode()}).tar_gz()], default,
                             arch=OTHER_ARCH)
        layout.tag(layout.image_index([here, other]), "multi")
        # OCI's zstd layers (what `podman push --compression-format zstd` makes), over a gzip base.
        zstd_layer = Layer({"zstd.txt": b"from a zstd layer\n"}).tar_zst()
        layout.tag(layout.image([base, zstd_layer], default), "zstd")
        hostile = {"traversal": Layer({"../../../../tmp/minirun-escape": b"x"}).tar_gz(),
                   "symlink": Layer({"link": ("symlink", "/tmp"), "link/minirun-escape": b"x"}).tar_gz(),
                   "hardlink": Layer({"shadow": ("hardlink", "/etc/shadow")}).tar_gz()}
        for tag, layer in hostile.items():
            layout.tag(layout.image([base, layer], default), tag)
        yield Pushed(
            registry, proxy,
            layers=registry.push(layout.directory, "layers", "mrtest/layers"),
            config=registry.push(layout.directory, "config", "mrtest/config"),
            multi=registry.push(layout.directory, "multi", "mrtest/multi", all_platforms=True),
            zstd=registry.push(layout.directory, "zstd", "mrtest/zstd"),
            traversal=registry.push(layout.directory, "traversal", "mrtest/evil"),
            symlink=registry.push(layout.directory, "symlink", "mrtest/evil"),
            hardlink=registry.push(layout.directory, "hardlink", "mrtest/evil"),
            whiteout_layer="sha256:" + hashlib.sha256(deletions).hexdigest(),
            hostile_layers={tag: hashlib.sha256(layer).hexdigest() for tag, layer in hostile.items()},
        )
    finally:
        proxy.stop()
        registry.stop()


@pytest.fixture
def rmi(minirun: Tier) -> Iterator[Callable[[str], None]]:
    """rmi(ref) at the end of the test: the tiers' stores are shared with other tests."""
    refs: list[str] = []
    yield refs.append
    for ref in refs:
        minirun(["rmi", "-f", ref], timeout=60)


def image_names(tier: Tier) -> list[str]:
    rows = [line.split() for line in tier(["images"], check=0).stdout.splitlines()[1:]]
    return [f"{row[0]}:{row[1]}" for row in rows]


def tar_names(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name.removeprefix("./").rstrip("/"): m for m in tar.getmembers()}


# --- layers, whiteouts, opaque directories ------------------------------------------------------


def test_layers_whiteouts_and_opaque_dirs(minirun: Tier, pushed: Pushed, rmi: Callable[[str], None],
                                          names: Callable[[], str]) -> None:
    rmi(pushed.layers)
    result = minirun(["pull", pushed.layers], check=0, timeout=120)
    assert result.stdout.strip().endswith(pushed.layers), result.stdout
    # Not a terminal: one line per layer, and the digest.
    assert result.stdout.count("Pull complete") + result.stdout.count("Already exists") == 3, result.stdout
    assert "Digest: sha256:" in result.stdout

    script = "ls -A /data; echo --; ls -AR /opaque; echo --; test -e /hello.txt && echo present || echo gone"
    out = minirun(["run", "--rm", pushed.layers, "sh", "-c", script], check=0).stdout
    data, opaque, hello = out.split("--\n")
    assert data.split() == ["keep"]  # data/gone was whited out
    assert opaque.split() == ["/opaque:", "new"]  # the opaque dir hides old and sub/
    assert hello.strip() == "gone"

    # The layer on disk holds overlay's own forms: a 0/0 char device and the opaque xattr.
    layer = minirun.store_dir / "layers" / pushed.whiteout_layer.removeprefix("sha256:") / "rootfs"
    gone = (layer / "data" / "gone").lstat()
    assert (gone.st_mode & 0o170000) == 0o020000 and gone.st_rdev == 0
    assert os.getxattr(layer / "opaque", "user.overlay.opaque") == b"y"


def test_zstd_layers(minirun: Tier, pushed: Pushed, rmi: Callable[[str], None]) -> None:
    """OCI `tar+zstd` layers: pulled, verified against their digest, extracted, and run."""
    rmi(pushed.zstd)
    out = minirun(["run", "--rm", pushed.zstd, "cat", "/zstd.txt"], check=0, timeout=120).stdout
    assert out.endswith("from a zstd layer\n"), out


def test_export_shows_the_merged_view(minirun: Tier, pushed: Pushed, rmi: Callable[[str], None],
                                      names: Callable[[], str], tmp_path: Path) -> None:
    rmi(pushed.layers)
    name = names()
    minirun(["run", "--name", name, pushed.layers, "sh", "-c",
             "rm /data/keep && echo mine > /new && mkdir /opaque/d && rm -r /etc/init.d 2>/dev/null; true"],
            check=0, timeout=120)
    try:
        # `minirun export NAME > rootfs.tar`: bytes on stdout (the tier's own runs are text).
        exported = subprocess.run(minirun.argv(["export", name]), env=minirun.env, capture_output=True,
                                  stdin=subprocess.DEVNULL, timeout=60)
        assert exported.returncode == 0, exported.stderr
        members = tar_names(exported.stdout)
        if not minirun.rootless:  # -o FILE (the test user cannot reach tmp_path)
            minirun(["export", "-o", str(tmp_path / "rootfs.tar"), name], check=0)
            assert tar_names((tmp_path / "rootfs.tar").read_bytes()).keys() == members.keys()
    finally:
        minirun(["rm", name], check=0)
    assert "new" in members and "data" in members and "bin/busybox" in members
    for hidden in ("data/keep", "data/gone", "hello.txt", "opaque/old", "opaque/sub"):
        assert hidden not in members, hidden
    assert "opaque/new" in members and "opaque/d" in members
    assert all(not m.ischr() for m in members.values()), "a whiteout leaked into the export"
    assert members["new"].uid == 0 and members["bin/busybox"].uid == 0  # as the container sees them


# --- the image config --------------------------------------------------------------------------


def test_image_config_is_honoured(minirun: Tier, pushed: Pushed, rmi: Callable[[str], None]) -> None:
    rmi(pushed.config)
    minirun(["pull", "-q", pushed.config], check=0, timeout=120)
    out = minirun(["run", "--rm", pushed.config], check=0).stdout
    assert out.strip() == "hello from /work as 1000:1000"
    # --entrypoint replaces the entrypoint and drops the image's Cmd; -e and -w override.
    out = minirun(["run", "--rm", "--entrypoint", "env", "-e", "GREETING=bye", "-w", "/", pushed.config],
                  check=0).stdout
    assert "GREETING=bye" in out.splitlines()
    [inspect] = json.loads(minirun(["image", "inspect", pushed.config], check=0).stdout)
    assert inspect["Config"]["ExposedPorts"] == {"8080/tcp": {}}
    assert inspect["Config"]["Entrypoint"] == ["/bin/sh", "-c"]
    assert inspect["Os"] == "linux" and inspect["Architecture"] == HOST_ARCH
    assert inspect["RepoDigests"][0].startswith(pushed.config.rpartition(":")[0] + "@sha256:")


# --- platforms -------------------------------------------------------------------------------------


def test_manifest_list_picks_the_host_platform_or_platform_flag(minirun: Tier, pushed: Pushed,
                                                               rmi: Callable[[str], None]) -> None:
    rmi(pushed.multi)
    assert minirun(["run", "--rm", pushed.multi, "cat", "/platform"], check=0).stdout.strip() == HOST_ARCH
    out = minirun(["run", "--rm", "--pull", "always", "--platform", f"linux/{OTHER_ARCH}", pushed.multi,
                   "cat", "/platform"], check=0).stdout
    assert out.strip() == OTHER_ARCH
    [inspect] = json.loads(minirun(["image", "inspect", pushed.multi], check=0).stdout)
    assert inspect["Architecture"] == OTHER_ARCH
    result = minirun(["pull", "--platform", "linux/s390x", pushed.multi], check=125)
    assert "no image for platform linux/s390x" in one_line_error(result)


# --- pull on first use, policies, errors -----------------------------------------------------------


def test_run_pulls_on_first_use_and_pull_never_does_not(minirun: Tier, pushed: Pushed,
                                                        rmi: Callable[[str], None]) -> None:
    rmi(pushed.layers)
    minirun(["rmi", "-f", pushed.layers])
    result = minirun(["run", "--rm", "--pull", "never", pushed.layers, "true"], check=125)
    assert "not found" in one_line_error(result)
    result = minirun(["run", "--rm", pushed.layers, "echo", "ran"], check=0, timeout=120)
    assert result.stdout == "ran\n"
    assert "Pulling from mrtest/layers" not in result.stdout  # progress goes to stderr
    assert pushed.layers in image_names(minirun)


def test_unknown_tag_and_unreachable_registry(minirun: Tier, pushed: Pushed) -> None:
    result = minirun(["pull", f"{pushed.registry.host}/mrtest/layers:no-such-tag"], check=125)
    assert "not found" in one_line_error(result)
    result = minirun(["pull", f"{pushed.registry.host}/mrtest/no-such-repo"], check=125)
    assert "not found" in one_line_error(result)
    result = minirun(["pull", f"127.0.0.1:{in_netns(minirun.netns, free_port)}/x/y"], check=125)
    assert "registry unreachable" in one_line_error(result)
    result = minirun(["pull", "Bad/Name"], check=125)
    assert "invalid reference format" in one_line_error(result)


def test_pull_by_digest(minirun: Tier, pushed: Pushed, rmi: Callable[[str], None]) -> None:
    rmi(pushed.config)
    minirun(["pull", "-q", pushed.config], check=0, timeout=120)
    [inspect] = json.loads(minirun(["image", "inspect", pushed.config], check=0).stdout)
    repository = pushed.config.rpartition(":")[0]
    pinned = f"{repository}@{inspect['RepoDigests'][0].partition('@')[2]}"
    rmi(pinned)
    assert minirun(["pull", "-q", pinned], check=0, timeout=120).stdout.strip() == pinned
    rows = [line.split()[:3] for line in minirun(["images", repository], check=0).stdout.splitlines()[1:]]
    assert [repository, "<none>", inspect["Id"].removeprefix("sha256:")[:12]] in rows
    assert minirun(["run", "--rm", pinned], check=0).stdout.strip() == "hello from /work as 1000:1000"
    wrong = f"{repository}@sha256:{'0' * 64}"
    assert "not found" in one_line_error(minirun(["pull", wrong], check=125))


# --- hostile layers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["traversal", "symlink", "hardlink"])
def test_hostile_layers_are_refused(minirun: Tier, pushed: Pushed, which: str) -> None:
    escape = Path("/tmp/minirun-escape")
    assert not escape.exists()
    result = minirun(["pull", getattr(pushed, which)], check=125, timeout=120)
    assert "refusing" in one_line_error(result)
    assert not escape.exists()
    assert not (minirun.store_dir / "layers" / pushed.hostile_layers[which]).exists()
    assert getattr(pushed, which) not in image_names(minirun)
    leftovers = list((minirun.store_dir / "tmp").iterdir()) if (minirun.store_dir / "tmp").is_dir() else []
    assert not [p for p in leftovers if p.name.startswith("import-")], leftovers


# --- authentication ---------------------------------------------------------------------------------


def unique_image(pushed: Pushed, tmp_path: Path, name: str) -> tuple[str, list[str]]:
    """A small image no store has yet (two layers of random bytes); its reference and layer digests."""
    layout = Layout(tmp_path / "oci")
    layers = [Layer({f"f{i}": os.urandom(200_000)}).tar_gz() for i in range(2)]
    layout.tag(layout.image(layers, {"Env": [PATH], "Cmd": ["sh"]}), "v1")
    ref = pushed.registry.push(layout.directory, "v1", name)
    return ref, [f"sha256:{hashlib.sha256(layer).hexdigest()}" for layer in layers]


def test_bearer_token_flow(minirun: Tier, pushed: Pushed, rmi: Callable[[str], None]) -> None:
    ref = pushed.via_proxy(pushed.config)
    rmi(ref)
    seen = len(pushed.proxy.state.token_requests)
    minirun(["pull", ref], check=0, timeout=120)
    queries = pushed.proxy.state.token_requests[seen:]
    assert queries and all("service=minirun-test" in q and "scope=repository%3Amrtest%2Fconfig%3Apull" in q
                           for q in queries), queries
    assert minirun(["run", "--rm", ref], check=0).stdout.strip() == "hello from /work as 1000:1000"


@contextlib.contextmanager
def stalled_on(pushed: Pushed, layer: str) -> Iterator[Any]:
    """The token proxy holds back `layer` half-way until the block ends; yields its state."""
    state = pushed.proxy.state
    state.stall, state.release = {layer}, threading.Event()
    state.stalled.clear()
    try:
        yield state
    finally:
        state.release.set()
        state.stall = set()


def test_concurrent_pulls_download_once(minirun: Tier, pushed: Pushed, rmi: Callable[[str], None],
                                        tmp_path: Path) -> None:
    upstream, layers = unique_image(pushed, tmp_path, f"mrtest/concurrent-{minirun.name}")
    ref = pushed.via_proxy(upstream)
    rmi(ref)
    with stalled_on(pushed, layers[0]) as state:
        first = minirun.popen(["pull", ref])
        wait_for(state.stalled.is_set, what="the first pull to be half-way through a layer")
        second = minirun.popen(["pull", ref])
        # The second waits for the first one's lock on the reference (flock: /proc/locks shows it blocked).
        wait_for(lambda: "->" in Path("/proc/locks").read_text(), what="the second pull to wait for the lock")
    for proc in (first, second):
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert [state.blob_gets[d] for d in layers] == [1, 1]
    assert ref in image_names(minirun)


def test_tampered_blob_stores_nothing(minirun: Tier, pushed: Pushed, rmi: Callable[[str], None],
                                      tmp_path: Path) -> None:
    upstream, layers = unique_image(pushed, tmp_path, f"mrtest/tampered-{minirun.name}")
    ref = pushed.via_proxy(upstream)
    rmi(ref)
    pushed.proxy.state.corrupt.add(layers[1])
    try:
        result = minirun(["pull", ref], check=125, timeout=120)
    finally:
        pushed.proxy.state.corrupt.discard(layers[1])
    assert "failed verification" in one_line_error(result)
    assert not (minirun.store_dir / "layers" / layers[1].removeprefix("sha256:")).exists()
    assert ref not in image_names(minirun)
    minirun(["pull", ref], check=0, timeout=120)


def test_interrupted_pull_leaves_nothing_and_the_next_one_works(
        minirun: Tier, pushed: Pushed, rmi: Callable[[str], None], tmp_path: Path) -> None:
    upstream, layers = unique_image(pushed, tmp_path, f"mrtest/interrupted-{minirun.name}")
    ref = pushed.via_proxy(upstream)
    rmi(ref)
    with stalled_on(pushed, layers[1]) as state:
        proc = minirun.popen(["pull", ref])
        wait_for(state.stalled.is_set, what="the pull to be half-way through a layer")
        proc.kill()  # SIGKILL: no handler, no cleanup
        proc.communicate(timeout=30)
    assert ref not in image_names(minirun)
    assert not (minirun.store_dir / "layers" / layers[1].removeprefix("sha256:")).exists()
    minirun(["pull", ref], check=0, timeout=120)
    # ...and the next pull cleared the dead one's staging directory.
    staging = [p.name for p in (minirun.store_dir / "tmp").iterdir()]
    assert not [n for n in staging if n.startswith(f"import-{proc.pid}-")], staging


def test_basic_auth_with_docker_config(root_minirun: Tier, test_netns: str, tmp_path: Path) -> None:
    registry = Registry.start(test_netns, basic_auth=True)
    try:
        layout = Layout(tmp_path / "oci")
        layout.tag(layout.image([Layer({"f": b"x"}).tar_gz()], {"Env": [PATH], "Cmd": ["sh"]}), "v1")
        ref = registry.push(layout.directory, "v1", "mrtest/private")
        result = root_minirun(["pull", ref], check=125)
        assert "needs a login" in one_line_error(result)

        config = tmp_path / "docker"
        config.mkdir()
        auth = base64.b64encode(f"{registry.user}:wrong".encode()).decode()
        (config / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
        env = {**root_minirun.env, "DOCKER_CONFIG": str(config)}
        with_config = dataclasses.replace(root_minirun, env=env)
        result = with_config(["pull", ref], check=125)
        assert "access denied" in one_line_error(result)

        auth = base64.b64encode(f"{registry.user}:{registry.password}".encode()).decode()
        auths = {f"http://{registry.host}": {"auth": auth}}  # docker accepts a URL as the key too
        (config / "config.json").write_text(json.dumps({"auths": auths}))
        with_config(["pull", ref], check=0, timeout=120)
        assert ref in image_names(root_minirun)
    finally:
        root_minirun(["rmi", "-f", f"{registry.host}/mrtest/private:v1"])
        registry.stop()


# --- rmi ----------------------------------------------------------------------------------------------


def test_rmi_is_refused_while_a_container_uses_the_image(
        minirun: Tier, pushed: Pushed, rmi: Callable[[str], None], names: Callable[[], str]) -> None:
    rmi(pushed.config)
    name = names()
    minirun(["run", "--name", name, pushed.config], check=0, timeout=120)
    try:
        result = minirun(["rmi", pushed.config], check=1)
        assert "in use by a container" in one_line_error(result)
        assert pushed.config in image_names(minirun)
        result = minirun(["rmi", "-f", pushed.config], check=0)
        assert "Untagged:" in result.stdout and "Deleted: sha256:" in result.stdout
        assert pushed.config not in image_names(minirun)
        result = minirun(["export", name], check=125)
        assert "was removed" in one_line_error(result)
    finally:
        minirun(["rm", name], check=0)
