"""Real registries on loopback for the pull tests, and the images the tests push to them.

 - `Registry`: Debian's `docker-registry` (CNCF distribution) on 127.0.0.1:<free port>, storage
   in a temporary directory, optionally with htpasswd (bcrypt) basic auth; stopped afterwards.
 - `build_layout`: an OCI image layout (image-spec image-layout.md) written by hand, pushed
   with `skopeo copy oci:DIR:TAG docker://127.0.0.1:PORT/NAME:TAG`.
 - `TokenProxy`: a small HTTP server in front of a registry that speaks Docker's bearer token
   flow (401 + WWW-Authenticate: Bearer realm=...; GET /token -> {"token": ...}) and forwards
   authorised requests. It counts blob downloads, and can corrupt or stall them on request,
   which a real registry (which verifies what it stores) never would.
Nothing here talks to anything but 127.0.0.1 of the session's test network namespace, the
one the tiers run minirun in (conftest.test_netns): the registry and skopeo are started there with
nsenter, and the Python servers listen on sockets made by a thread that first setns(2)s into it
(a network namespace is per thread; threads it starts inherit it).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import http.server
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from minirun import kernel

T = TypeVar("T")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def nsenter(netns: str) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{netns}"] if netns else []


def in_netns(netns: str, function: Callable[[], T]) -> T:
    """Call `function` in a thread that has joined `netns` (and so do threads it starts)."""
    result: list[T] = []
    errors: list[BaseException] = []

    def body() -> None:
        try:
            if netns:
                fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
                try:
                    kernel.setns(fd, kernel.CLONE_NEWNET)
                finally:
                    os.close(fd)
            result.append(function())
        except BaseException as e:  # re-raised in the caller
            errors.append(e)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # 401 is an answer too
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not come up in {timeout}s") from None
            time.sleep(0.1)


# --- the registry ---------------------------------------------------------------------------------


@dataclass
class Registry:
    directory: Path
    port: int
    netns: str = ""
    user: str | None = None
    password: str | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def start(cls, netns: str, basic_auth: bool = False) -> Registry:
        directory = Path(tempfile.mkdtemp(prefix="minirun-test-registry-"))
        registry = cls(directory, in_netns(netns, free_port), netns)
        auth = ""
        if basic_auth:
            registry.user, registry.password = "tester", secrets.token_hex(8)
            entry = subprocess.run(["htpasswd", "-Bbn", registry.user, registry.password], check=True,
                                   capture_output=True, text=True).stdout
            (directory / "htpasswd").write_text(entry)
            auth = f"auth:\n  htpasswd:\n    realm: minirun-test\n    path: {directory / 'htpasswd'}\n"
        (directory / "config.yml").write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {directory / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {registry.host}\n  secret: {secrets.token_hex(16)}\n{auth}")
        log = open(directory / "registry.log", "wb")  # noqa: SIM115 (the process owns it)
        argv = [*nsenter(netns), "docker-registry", "serve", str(directory / "config.yml")]
        registry.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        log.close()
        try:
            in_netns(netns, lambda: wait_http(f"http://{registry.host}/v2/"))
        except AssertionError:
            registry.stop()
            raise
        return registry

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)

    def push(self, layout: Path, tag: str, name: str, all_platforms: bool = False) -> str:
        """skopeo copy the layout's `tag` to NAME:tag here; return the full reference."""
        ref = f"{self.host}/{name}:{tag}"
        argv = [*nsenter(self.netns), "skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
        if all_platforms:
            argv.append("--all")
        if self.user:
            argv.append(f"--dest-creds={self.user}:{self.password}")
        result = subprocess.run([*argv, f"oci:{layout}:{tag}", f"docker://{ref}"], capture_output=True,
                                text=True, timeout=120, env={**os.environ, "HOME": str(self.directory)})
        assert result.returncode == 0, f"skopeo copy failed:\n{result.stderr}"
        return ref


# --- OCI layouts -----------------------------------------------------------------------------------


@dataclass
class Layer:
    """Tar members to put in a layer: path -> bytes (a file), None (a directory),
    ("symlink", target) or ("hardlink", target)."""

    entries: dict[str, Any]

    def tar_gz(self) -> bytes:
        return gzip.compress(self.tar(), mtime=0)

    def tar_zst(self) -> bytes:
        import zstandard

        return zstandard.ZstdCompressor().compress(self.tar())

    def tar(self) -> bytes:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, value in self.entries.items():
                info = tarfile.TarInfo(name)
                info.mtime = 1700000000
                if value is None:
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                elif isinstance(value, tuple):
                    info.type = tarfile.SYMTYPE if value[0] == "symlink" else tarfile.LNKTYPE
                    info.linkname = value[1]
                    tar.addfile(info)
                else:
                    info.size, info.mode = len(value), 0o644
                    tar.addfile(info, io.BytesIO(value))
        return raw.getvalue()


def _decompress(data: bytes, zstd: bool) -> bytes:
    if not zstd:
        return gzip.decompress(data)
    import zstandard

    return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()


def gzip_file(path: Path) -> bytes:
    return gzip.compress(path.read_bytes(), mtime=0)


@dataclass
class Layout:
    """Write blobs into an OCI layout and name manifests in its index.json."""

    directory: Path
    index: list[dict[str, Any]] = field(default_factory=list)

    def blob(self, data: bytes, media_type: str) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        (self.directory / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.directory / "blobs" / "sha256" / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    def image(self, layers: list[bytes], config: dict[str, Any], arch: str = HOST_ARCH) -> dict[str, Any]:
        """A manifest for gzip or zstd layer blobs (lowest first); returns its descriptor."""
        kinds = [(data, data.startswith(ZSTD_MAGIC)) for data in layers]
        layer_descriptors = [self.blob(data, OCI_LAYER_ZSTD if zstd else OCI_LAYER_GZIP)
                             for data, zstd in kinds]
        diff_ids = [f"sha256:{hashlib.sha256(_decompress(data, zstd)).hexdigest()}" for data, zstd in kinds]
        config_blob = json.dumps({"architecture": arch, "os": "linux", "config": config,
                                  "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": self.blob(config_blob, OCI_CONFIG), "layers": layer_descriptors}
        descriptor = self.blob(json.dumps(manifest).encode(), OCI_MANIFEST)
        descriptor["platform"] = {"architecture": arch, "os": "linux"}
        return descriptor

    def image_index(self, manifests: list[dict[str, Any]]) -> dict[str, Any]:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        return self.blob(json.dumps(index).encode(), OCI_INDEX)

    def tag(self, descriptor: dict[str, Any], tag: str) -> None:
        self.index.append({**{k: v for k, v in descriptor.items() if k != "platform"},
                           "annotations": {"org.opencontainers.image.ref.name": tag}})
        (self.directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        (self.directory / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": self.index}))


# --- a bearer-token front end ------------------------------------------------------------------------


@dataclass
class ProxyState:
    upstream: str  # host:port of the registry behind
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    token_requests: list[str] = field(default_factory=list)  # the query strings /token saw
    blob_gets: Counter[str] = field(default_factory=Counter)  # digest -> GETs that reached the end
    corrupt: set[str] = field(default_factory=set)  # blob digests to serve with one byte flipped
    stall: set[str] = field(default_factory=set)  # blob digests to stop sending half-way
    stalled: threading.Event = field(default_factory=threading.Event)  # set when one has stalled
    release: threading.Event = field(default_factory=threading.Event)  # set to end a stall


class _Handler(http.server.BaseHTTPRequestHandler):
    state: ProxyState
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        host = self.headers.get("Host", "")
        if self.path.startswith("/token"):
            self.state.token_requests.append(self.path.partition("?")[2])
            self._reply(200, json.dumps({"token": self.state.token}).encode(), "application/json")
            return
        if self.headers.get("Authorization") != f"Bearer {self.state.token}":
            repository = self.path.split("/manifests/")[0].split("/blobs/")[0].removeprefix("/v2/")
            scope = f',scope="repository:{repository}:pull"' if repository else ""
            challenge = f'Bearer realm="http://{host}/token",service="minirun-test"{scope}'
            self._reply(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"token needed"}]}',
                        "application/json", {"WWW-Authenticate": challenge})
            return
        self._forward()

    def _forward(self) -> None:
        upstream = http.client.HTTPConnection(self.state.upstream, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept",)}
        upstream.request("GET", self.path, headers=headers)
        response = upstream.getresponse()
        body = response.read()
        upstream.close()
        digest = self.path.rpartition("/blobs/")[2] if "/blobs/" in self.path else ""
        extra = {k: v for k, v in response.getheaders()
                 if k.lower() in ("docker-content-digest", "location")}
        if digest and response.status == 200:
            if digest in self.state.corrupt:
                body = bytes([body[0] ^ 0xFF]) + body[1:]
            if digest in self.state.stall:
                # Half the blob, then nothing until the test says so, then the rest.
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.state.stalled.set()
                self.state.release.wait(60)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body[len(body) // 2:])
                self.state.blob_gets[digest] += 1
                return
        self._reply(response.status, body, response.getheader("Content-Type", ""), extra)
        if digest and response.status == 200:
            self.state.blob_gets[digest] += 1

    def _reply(self, status: int, body: bytes, content_type: str,
               headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up half-way (a killed or failed pull) is what some tests do


@dataclass
class TokenProxy:
    server: http.server.ThreadingHTTPServer
    state: ProxyState
    thread: threading.Thread

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    @classmethod
    def start(cls, upstream: str, netns: str) -> TokenProxy:
        state = ProxyState(upstream)
        handler = type("Handler", (_Handler,), {"state": state})

        def serve() -> tuple[http.server.ThreadingHTTPServer, threading.Thread]:
            # The listening socket, and the threads serve_forever starts, live in `netns`.
            server = _QuietServer(("127.0.0.1", 0), handler)
            server.daemon_threads = True
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            return server, thread

        server, thread = in_netns(netns, serve)
        return cls(server, state, thread)

    def stop(self) -> None:
        self.state.release.set()
        self.server.shutdown()
        self.server.server_close()
