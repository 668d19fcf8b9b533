"""The Alpine minirootfs recipe (rootfs-images/alpine/fetch.sh) against a local mirror.

The mirror is an http.server on 127.0.0.1 of the test network namespace serving the release
layout (latest-releases.yaml, the tarball, its .sha256); the tarball is built here from the
busybox image plus an /etc/alpine-release, so no byte comes from the internet.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import os
import shlex
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO, Tier
from registry import in_netns, nsenter

VERSION = "3.99.1"
ARCH = {"x86_64": "x86_64", "aarch64": "aarch64"}.get(os.uname().machine, os.uname().machine)
FILE = f"alpine-minirootfs-{VERSION}-{ARCH}.tar.gz"


def minirootfs(busybox_tar: Path) -> bytes:
    """busybox's files plus etc/alpine-release, gzip-compressed like the real release."""
    out = io.BytesIO()
    with tarfile.open(busybox_tar) as source, tarfile.open(fileobj=out, mode="w") as tar:
        for member in source.getmembers():
            tar.addfile(member, source.extractfile(member) if member.isreg() else None)
        release = f"{VERSION}\n".encode()
        info = tarfile.TarInfo("./etc/alpine-release")
        info.size, info.mode = len(release), 0o644
        tar.addfile(info, io.BytesIO(release))
    return gzip.compress(out.getvalue(), mtime=0)


@pytest.fixture(scope="module")
def mirror(busybox_tar: Path, tmp_path_factory: pytest.TempPathFactory,
           test_netns: str) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("mirror")
    releases = root / "v3.99" / "releases" / ARCH
    releases.mkdir(parents=True)
    data = minirootfs(busybox_tar)
    (releases / FILE).write_bytes(data)
    (releases / f"{FILE}.sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  {FILE}\n")
    (releases / "latest-releases.yaml").write_text(
        "---\n-\n  title: \"Standard\"\n  flavor: alpine-standard\n"
        f"  file: alpine-standard-{VERSION}-{ARCH}.iso\n"
        "-\n  title: \"Mini root filesystem\"\n  flavor: alpine-minirootfs\n"
        f"  version: {VERSION}\n  file: {FILE}\n  sha256: {hashlib.sha256(data).hexdigest()}\n")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    def serve() -> http.server.ThreadingHTTPServer:
        handler = functools.partial(Quiet, directory=str(root))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    server = in_netns(test_netns, serve)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", releases
    finally:
        server.shutdown()
        server.server_close()


def fetch(tier: Tier, mirror: str, name: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the recipe as root in the test netns; it imports with the tier's minirun."""
    environment = {**tier.env, "ALPINE_MIRROR": mirror, "MINIRUN": shlex.join(tier.prefix), **env}
    recipe = REPO / "rootfs-images" / "alpine" / "fetch.sh"
    return subprocess.run([*nsenter(tier.netns), str(recipe), name], env=environment, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_minirootfs_from_a_mirror_is_verified_and_imported(minirun: Tier, mirror: tuple[str, Path]) -> None:
    url, _ = mirror
    name = f"mrt-alpine-{minirun.name}:{VERSION}"
    try:
        for env in ({}, {"ALPINE_VERSION": VERSION}):  # newest of the branch, or a given version
            result = fetch(minirun, url, name, ALPINE_BRANCH="v3.99", **env)
            assert result.returncode == 0, result.stderr
            assert "sha256 verified" in result.stderr and result.stdout.startswith("sha256:")
        out = minirun(["run", "--rm", name, "cat", "/etc/alpine-release"], check=0).stdout
        assert out == f"{VERSION}\n"
    finally:
        minirun(["rmi", "-f", name])


def test_a_tampered_tarball_is_refused(minirun: Tier, mirror: tuple[str, Path]) -> None:
    url, releases = mirror
    original = (releases / FILE).read_bytes()
    (releases / FILE).write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    try:
        name = f"mrt-alpine-tampered-{minirun.name}:{VERSION}"
        result = fetch(minirun, url, name, ALPINE_VERSION=VERSION)
        assert result.returncode == 1
        assert "refusing it" in result.stderr
        assert minirun(["images", "-q", name.partition(":")[0]], check=0).stdout == ""
    finally:
        (releases / FILE).write_bytes(original)
