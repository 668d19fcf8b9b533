"""Image references: what `alpine`, `nginx:1.23.1` or `localhost:5000/team/app@sha256:...` mean.

A reference names a repository on a registry, and a tag or a digest in it. Docker's rules
(github.com/distribution/reference, normalize.go), which minirun follows so the names the seed
articles use mean the same thing here:

 - the first path component is a registry host only if it contains a "." or a ":" or is
   "localhost"; otherwise the registry is Docker Hub (`docker.io`), whose API lives at
   registry-1.docker.io;
 - on Docker Hub a one-component name is an "official image" in `library/`:
   `alpine` is `docker.io/library/alpine`;
 - no tag and no digest means `:latest`; a digest (`@sha256:...`) pins the exact manifest.

Locally an image is known by its short, "familiar" name (`alpine:latest`), as `docker images`
shows it. Transport: `localhost`, 127.0.0.0/8 and ::1 registries are spoken to over plain HTTP
(docker treats them as insecure registries by default); everything else needs HTTPS.
"""

import ipaddress
import re
from dataclasses import dataclass

from minirun.errors import MinirunError
from minirun.images.store import DIGEST, normalize_ref

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
OFFICIAL_PREFIX = "library/"


@dataclass(frozen=True)
class Reference:
    registry: str  # "docker.io", "localhost:5000", "quay.io"
    repository: str  # "library/alpine", "team/app"
    tag: str  # "latest" when only a digest was given too (then unused)
    digest: str | None = None  # "sha256:..." pins the manifest

    @property
    def api_host(self) -> str:
        """The host[:port] the distribution API is served from."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def scheme(self) -> str:
        return "http" if is_local(self.registry) else "https"

    @property
    def wanted(self) -> str:
        """What the manifest is fetched by: the digest if there is one, else the tag."""
        return self.digest or self.tag

    @property
    def familiar_repository(self) -> str:
        """`docker.io/library/alpine` -> `alpine`, `docker.io/x/y` -> `x/y`, others unchanged."""
        if self.registry == DOCKER_HUB:
            # Only an official image loses `library/`: `library/a/b` stays as it is (docker's rule).
            official = self.repository.startswith(OFFICIAL_PREFIX) and self.repository.count("/") == 1
            return self.repository.removeprefix(OFFICIAL_PREFIX) if official else self.repository
        return f"{self.registry}/{self.repository}"

    @property
    def local_name(self) -> str:
        """The name the store keeps the image under: `alpine:latest`, `host:5000/app@sha256:...`."""
        if self.digest:
            return f"{self.familiar_repository}@{self.digest}"
        return f"{self.familiar_repository}:{self.tag}"

    def __str__(self) -> str:
        """The fully qualified form docker prints after a pull: docker.io/library/alpine:latest."""
        suffix = f"@{self.digest}" if self.digest else f":{self.tag}"
        return f"{self.registry}/{self.repository}{suffix}"


def parse(ref: str) -> Reference:
    """Parse and normalise a reference; a malformed one is the user's error (exit 125)."""
    name, at, digest = ref.partition("@")
    if at and not re.fullmatch(DIGEST, digest):
        raise MinirunError(f"invalid reference format: {ref!r} (a digest is sha256: and 64 hex digits)")
    # The store's grammar check (lowercase path components, tag syntax) with ":latest" added.
    repository, _, tag = normalize_ref(name, familiar=False).rpartition(":")
    first, slash, rest = repository.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = DOCKER_HUB, repository
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in path:
        path = OFFICIAL_PREFIX + path
    return Reference(registry=registry, repository=path, tag=tag, digest=digest or None)


def is_local(registry: str) -> bool:
    """localhost[:port], 127.0.0.0/8[:port] and [::1][:port]: plain HTTP, as docker allows."""
    host = registry
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
