"""A client for the OCI distribution API (v2), the HTTP protocol every image registry speaks.

Three kinds of request are all a pull needs (OCI distribution-spec, "Pull"):

    GET /v2/<repository>/manifests/<tag or digest>   Accept: the manifest formats we understand
    GET /v2/<repository>/blobs/<digest>              the image config and the layer tarballs
    (GET /v2/ is the "do you speak v2, and how do I log in?" probe; the first 401 tells us too)

Authentication is discovered, not configured: a request without credentials answers 401 with a
`WWW-Authenticate` header saying how to authenticate (RFC 6750 / Docker's token spec):
 - `Basic realm=...`: send the user's name and password with every request (htpasswd registries);
 - `Bearer realm=URL,service=S,scope=repository:NAME:pull`: ask the token server at URL for a
   short-lived token for that scope (anonymously, or with the user's name and password as Basic
   auth), then send `Authorization: Bearer TOKEN`. Docker Hub works this way even for anonymous
   pulls.
Users' existing `docker login`s work: credentials come from ~/.docker/config.json (`auths`, the
base64 "user:password" in `auth`), or $DOCKER_CONFIG/config.json.

Why the standard library's http.client and not `requests`/`httpx`: a pull needs GET, headers,
redirects and streaming, about 100 lines here, and one dependency less keeps `minirun run`
free of third-party imports. TLS certificates are checked by ssl's default context.

Every network failure (no DNS, refused, timed out, TLS) becomes one line: "registry unreachable".
"""

import base64
import contextlib
import hashlib
import http.client
import io
import json
import os
import re
import ssl
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minirun.errors import ImageNotFound, MinirunError
from minirun.images.reference import DOCKER_HUB, Reference

CONNECT_TIMEOUT = 5.0  # seconds to open a connection: an unreachable registry fails fast
READ_TIMEOUT = 60.0  # seconds without a byte before a download is given up
MAX_REDIRECTS = 5
MAX_MANIFEST = 4 << 20  # manifests are small JSON documents; refuse to buffer a huge one
USER_AGENT = "minirun/0.1 (+python http.client)"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


@dataclass
class Client:
    """One repository on one registry, and the Authorization header that works for it (once known)."""

    scheme: str  # "http" for localhost/127.0.0.0/8, else "https"
    host: str  # host[:port] of the API
    repository: str  # "library/alpine"
    credentials: Credentials | None = None
    authorization: str | None = field(default=None, repr=False)

    @classmethod
    def for_reference(cls, ref: Reference) -> "Client":
        return cls(ref.scheme, ref.api_host, ref.repository, credentials_for(ref.registry))


# --- credentials --------------------------------------------------------------------------------


def credentials_for(registry: str) -> Credentials | None:
    """The user's `docker login` for `registry`, from config.json's `auths`, if any."""
    directory = os.environ.get("DOCKER_CONFIG") or os.path.join(Path.home(), ".docker")
    try:
        with open(os.path.join(directory, "config.json")) as f:
            auths = json.load(f).get("auths") or {}
    except (OSError, ValueError, AttributeError):
        return None
    # docker writes Docker Hub's entry as its old v1 URL; others as host[:port], maybe with a scheme.
    keys = {registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/",
            f"https://{registry}/v2/"}
    if registry == DOCKER_HUB:
        keys |= {"https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io"}
    for key, entry in auths.items():
        if key.rstrip("/") in {k.rstrip("/") for k in keys} and isinstance(entry, dict):
            if entry.get("auth"):
                with contextlib.suppress(ValueError):
                    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                    return Credentials(user, password)
            if entry.get("username"):
                return Credentials(entry["username"], entry.get("password", ""))
    return None


def basic(credentials: Credentials) -> str:
    pair = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(pair).decode()


# --- one HTTP request, with authentication and redirects ------------------------------------------


def get(client: Client, path: str, accept: tuple[str, ...] = ()) -> http.client.HTTPResponse:
    """GET `path` on the registry; the response is open (status 200) for the caller to read.

    On a 401 the challenge is answered once (see the module docstring) and the request repeated.
    """
    headers = {"Accept": ", ".join(accept)} if accept else {}
    response = _follow(client, f"{client.scheme}://{client.host}{path}", headers)
    if response.status == 401:
        challenge = response.getheader("WWW-Authenticate", "")
        response.close()
        client.authorization = authenticate(client, challenge)
        response = _follow(client, f"{client.scheme}://{client.host}{path}", headers)
    if response.status == 200:
        return response
    body = ""
    with contextlib.suppress(OSError, http.client.HTTPException):  # the status alone says enough
        body = response.read(4096).decode(errors="replace")
    response.close()
    what = f"{client.host}/{client.repository}"
    if response.status == 404:
        raise ImageNotFound(f"not found: {what}: {_registry_message(body) or path}")
    if response.status in (401, 403):
        hint = "" if client.credentials else " (no credentials for it in ~/.docker/config.json)"
        raise MinirunError(f"access denied to {what}{hint}: {_registry_message(body) or response.reason}")
    raise MinirunError(f"registry error from {client.host}: HTTP {response.status} {response.reason}")


def _follow(client: Client, url: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    """Send the request, following redirects (registries send blobs from CDNs this way).

    Credentials are only ever sent to the registry itself: a redirect to another host (a
    storage bucket with a signed URL) gets no Authorization header.
    """
    for _ in range(MAX_REDIRECTS + 1):
        parts = urllib.parse.urlsplit(url)
        own_host = parts.netloc == client.host
        request_headers = dict(headers)
        if own_host and client.authorization:
            request_headers["Authorization"] = client.authorization
        response = request(parts.scheme, parts.netloc, _path_of(parts), request_headers)
        if response.status in (301, 302, 303, 307, 308) and response.getheader("Location"):
            response.close()
            url = urllib.parse.urljoin(url, response.getheader("Location", ""))
            continue
        return response
    raise MinirunError(f"registry {client.host}: too many redirects")


def _path_of(parts: urllib.parse.SplitResult) -> str:
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def request(scheme: str, netloc: str, path: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    """One GET on a fresh connection. Network failures become "registry unreachable"."""
    connection: http.client.HTTPConnection
    if scheme == "https":
        connection = http.client.HTTPSConnection(netloc, timeout=CONNECT_TIMEOUT,
                                                 context=ssl.create_default_context())
    elif scheme == "http":
        connection = http.client.HTTPConnection(netloc, timeout=CONNECT_TIMEOUT)
    else:
        raise MinirunError(f"registry sent an unsupported URL scheme: {scheme}")
    try:
        connection.connect()
        assert connection.sock is not None
        connection.sock.settimeout(READ_TIMEOUT)
        connection.request("GET", path, headers={"User-Agent": USER_AGENT, **headers})
        return connection.getresponse()
    except (OSError, http.client.HTTPException) as e:
        connection.close()
        raise MinirunError(f"registry unreachable: {netloc}: {_reason(e)}") from e


def _reason(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _registry_message(body: str) -> str:
    """Registries explain errors as {"errors": [{"code": ..., "message": ...}]} (distribution-spec)."""
    with contextlib.suppress(ValueError, TypeError, AttributeError, KeyError, IndexError):
        error = json.loads(body)["errors"][0]
        return f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
    return ""


# --- answering a challenge --------------------------------------------------------------------------


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="https://a/token",service="s",scope="repository:x:pull"` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {key.lower(): value for key, value in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


def authenticate(client: Client, challenge: str) -> str:
    """Answer a 401's challenge: the Authorization header to repeat the request with."""
    scheme, params = parse_challenge(challenge)
    if scheme == "basic":
        if client.credentials is None:
            raise MinirunError(f"registry {client.host} needs a login: add it to ~/.docker/config.json "
                               "(`docker login`, or an `auths` entry)")
        return basic(client.credentials)
    if scheme == "bearer" and params.get("realm"):
        return "Bearer " + fetch_token(client, params)
    raise MinirunError(f"registry {client.host} asks for an unsupported authentication: {challenge[:80]!r}")


def fetch_token(client: Client, params: dict[str, str]) -> str:
    """Docker's token flow: GET realm?service=...&scope=... ; the answer is {"token": ...}."""
    realm = urllib.parse.urlsplit(params["realm"])
    if realm.scheme not in ("http", "https"):
        raise MinirunError(f"registry {client.host}: bad token realm {params['realm']!r}")
    scope = params.get("scope") or f"repository:{client.repository}:pull"
    fields = {"service": params.get("service"), "scope": scope}
    query = urllib.parse.urlencode({key: value for key, value in fields.items() if value})
    path = (realm.path or "/") + "?" + "&".join(filter(None, (realm.query, query)))
    headers = {"Authorization": basic(client.credentials)} if client.credentials else {}
    response = request(realm.scheme, realm.netloc, path, headers)
    with response:
        body = _read_some(response, 1 << 20, "token")
    if response.status != 200:
        raise MinirunError(f"token server {realm.netloc} refused a token for {scope}: HTTP {response.status}"
                           f"{'' if client.credentials else ' (anonymous)'}")
    try:
        answer = json.loads(body)
        token = answer.get("token") or answer.get("access_token")
    except (ValueError, AttributeError):
        token = None
    if not isinstance(token, str) or not token:
        raise MinirunError(f"token server {realm.netloc} sent no token")
    return token


# --- manifests and blobs, verified -------------------------------------------------------------------


def fetch_manifest(client: Client, wanted: str, accept: tuple[str, ...]) -> tuple[bytes, str, str]:
    """(bytes, media type, digest) of the manifest for a tag or digest.

    Fetched by digest, the bytes must hash to it (that is what makes `@sha256:` a pin); fetched
    by tag, the digest is computed here, and must agree with the registry's own if it sent one.
    """
    response = get(client, f"/v2/{client.repository}/manifests/{wanted}", accept)
    with response:
        data = _read_some(response, MAX_MANIFEST, "manifest")
        media_type = (response.getheader("Content-Type") or "").split(";")[0].strip()
        claimed = response.getheader("Docker-Content-Digest")
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    expected = wanted if wanted.startswith("sha256:") else claimed
    if expected and expected.startswith("sha256:") and expected != digest:
        raise MinirunError(f"manifest {wanted} from {client.host}: digest mismatch (got {digest})")
    return data, media_type, digest


def fetch_blob_bytes(client: Client, digest: str, size: int, limit: int = MAX_MANIFEST) -> bytes:
    """A small blob (the image config), read whole and verified."""
    if size > limit:
        raise MinirunError(f"blob {digest} is too large ({size} bytes) for what it should be")
    with get(client, f"/v2/{client.repository}/blobs/{digest}") as response:
        reader = VerifiedReader(response, digest, size)
        return reader.read_all()


def open_blob(client: Client, digest: str, size: int, on_bytes: Callable[[int], None]) -> "VerifiedReader":
    """A layer, as a stream that verifies itself: see VerifiedReader. Close it when done."""
    return VerifiedReader(get(client, f"/v2/{client.repository}/blobs/{digest}"), digest, size, on_bytes)


def _read_some(response: http.client.HTTPResponse, limit: int, what: str) -> bytes:
    try:
        data = response.read(limit + 1)
    except (OSError, http.client.HTTPException) as e:
        raise MinirunError(f"registry unreachable: connection lost reading the {what}: {_reason(e)}") from e
    if len(data) > limit:
        raise MinirunError(f"{what} larger than {limit} bytes: refused")
    return data


class VerifiedReader(io.RawIOBase):
    """Pass a blob through, hashing and counting as it goes; at its end, check both.

    The manifest gives each blob's digest and size. Reading past the size stops at once (a
    registry cannot make us download forever); a short or different blob is an error at EOF.
    The caller extracts into a staging directory that is thrown away on any error, so a bad
    blob leaves nothing behind.
    """

    def __init__(self, response: http.client.HTTPResponse, digest: str, size: int,
                 on_bytes: Callable[[int], None] | None = None) -> None:
        super().__init__()
        self.response = response
        self.digest = digest
        self.size = size
        self.on_bytes = on_bytes
        self.done = 0
        self.sha256 = hashlib.sha256()
        self.verified = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self.response.read(min(len(buffer), self.size - self.done + 1))
        except (OSError, http.client.HTTPException) as e:
            raise MinirunError(f"registry unreachable: download of {self.digest[:19]} broke off: "
                               f"{_reason(e)}") from e
        self.done += len(data)
        if self.done > self.size:
            raise MinirunError(f"blob {self.digest} is larger than the {self.size} bytes its manifest says")
        self.sha256.update(data)
        if self.on_bytes is not None and data:
            self.on_bytes(self.done)
        if not data:
            self._verify()
        buffer[: len(data)] = data
        return len(data)

    def _verify(self) -> None:
        if self.verified:
            return
        if self.done != self.size:
            raise MinirunError(f"blob {self.digest} is truncated: {self.done} of {self.size} bytes")
        actual = "sha256:" + self.sha256.hexdigest()
        if actual != self.digest:
            raise MinirunError(f"blob {self.digest} failed verification: its content hashes to {actual}")
        self.verified = True

    def check_rest(self) -> None:
        """Read what is left (never more than the size) and verify: raises if the blob was bad."""
        while self.read(1 << 20):
            pass
        self._verify()

    def read_all(self) -> bytes:
        chunks = []
        while chunk := self.read(1 << 16):
            chunks.append(chunk)
        self._verify()
        return b"".join(chunks)

    def close(self) -> None:
        self.response.close()
        super().close()
