"""Manifests: what an image *is* on a registry, and how to pick the one for this machine.

A tag points to one of two kinds of JSON document (OCI image-spec manifest.md, image-index.md;
Docker's "image manifest v2, schema 2" is the same shape with other media types):

 - a *manifest*: the digest of the image's config blob and the digests of its layer tarballs,
   lowest layer first;
 - an *index* (Docker: "manifest list"): one manifest per platform, e.g. linux/amd64 and
   linux/arm64/v8. The client picks the entry for its own platform (or --platform) and fetches
   that manifest by its digest.

Every reference to a blob is a *descriptor*: media type, digest, size. The digest is what makes
the whole chain verifiable: tag -> manifest (hashed) -> config and layers (hashed).
"""

import json
import os
import re
from dataclasses import dataclass
from typing import Any

from minirun.errors import MinirunError
from minirun.images.store import DIGEST

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
# What we send as Accept, so the registry does not fall back to the old schema 1 format.
ACCEPT = (OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST)

GZIP_LAYERS = ("application/vnd.oci.image.layer.v1.tar+gzip",
               "application/vnd.docker.image.rootfs.diff.tar.gzip")
TAR_LAYERS = ("application/vnd.oci.image.layer.v1.tar", "application/vnd.docker.image.rootfs.diff.tar")
ZSTD_LAYERS = ("application/vnd.oci.image.layer.v1.tar+zstd",)


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(filter(None, (self.os, self.architecture, self.variant)))


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None


@dataclass(frozen=True)
class Manifest:
    config: Descriptor
    layers: list[Descriptor]  # lowest first


@dataclass(frozen=True)
class Index:
    manifests: list[Descriptor]


# --- platforms ---------------------------------------------------------------------------------------

# uname(2)'s machine names -> the OCI/Go names registries use (GOARCH, and arm's variant).
_MACHINES = {
    "x86_64": ("amd64", ""), "aarch64": ("arm64", "v8"), "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"),
    "i686": ("386", ""), "i386": ("386", ""), "ppc64le": ("ppc64le", ""), "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
}


def host_platform() -> Platform:
    machine = os.uname().machine
    architecture, variant = _MACHINES.get(machine, (machine, ""))
    return Platform("linux", architecture, variant)


def parse_platform(text: str) -> Platform:
    """`--platform linux/arm64[/v8]` (the os may be left out: `arm64` means linux/arm64)."""
    parts = text.strip().lower().split("/")
    if len(parts) == 1:
        parts = ["linux", *parts]
    if not 2 <= len(parts) <= 3 or not all(re.fullmatch(r"[a-z0-9_]+", p) for p in parts):
        raise MinirunError(f"invalid --platform {text!r}: expected OS/ARCH[/VARIANT], e.g. linux/arm64")
    return Platform(*parts)


def _normalized(platform: Platform) -> Platform:
    # arm64's only variant is v8, so "linux/arm64" and "linux/arm64/v8" are the same (containerd's rule).
    if platform.architecture == "arm64" and platform.variant in ("", "v8"):
        return Platform(platform.os, "arm64", "v8")
    return platform


def select(index: Index, wanted: Platform) -> Descriptor:
    """The index entry for `wanted`: same os and architecture, and variant if we asked for one."""
    want = _normalized(wanted)
    for entry in index.manifests:
        if entry.platform is None:
            continue
        have = _normalized(entry.platform)
        if (have.os, have.architecture) == (want.os, want.architecture) and (
                not want.variant or not have.variant or have.variant == want.variant):
            return entry
    # (BuildKit adds "unknown/unknown" entries for attestations: not images.)
    available = ", ".join(str(e.platform) for e in index.manifests
                          if e.platform and e.platform.os != "unknown")
    raise MinirunError(f"no image for platform {wanted} in the manifest list (it has: {available or 'none'})")


# --- parsing -----------------------------------------------------------------------------------------


def parse(data: bytes, media_type: str) -> Manifest | Index:
    """A manifest or an index. The JSON's own mediaType wins over the HTTP Content-Type."""
    try:
        document = json.loads(data)
        kind = document.get("mediaType") or media_type
        if kind in (OCI_INDEX, DOCKER_LIST) or (not kind and "manifests" in document):
            return Index([_descriptor(d) for d in document["manifests"]])
        if kind in (OCI_MANIFEST, DOCKER_MANIFEST) or (not kind and "layers" in document):
            return Manifest(_descriptor(document["config"]), [_layer(d) for d in document["layers"]])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise MinirunError(f"malformed manifest ({type(e).__name__}: {e})") from e
    raise MinirunError(f"unsupported manifest type {kind!r} (schema 1 manifests are not supported)")


def _descriptor(value: dict[str, Any]) -> Descriptor:
    digest, size = value["digest"], value["size"]
    if not isinstance(digest, str) or not re.fullmatch(DIGEST, digest):
        raise MinirunError(f"unsupported digest {digest!r}: only sha256 is supported")
    if not isinstance(size, int) or size < 0:
        raise MinirunError(f"bad size {size!r} for {digest}")
    platform = value.get("platform")
    return Descriptor(
        media_type=str(value.get("mediaType", "")), digest=digest, size=size,
        platform=Platform(str(platform.get("os", "")), str(platform.get("architecture", "")),
                          str(platform.get("variant", ""))) if isinstance(platform, dict) else None,
    )


def _layer(value: dict[str, Any]) -> Descriptor:
    layer = _descriptor(value)
    if layer.media_type not in (*GZIP_LAYERS, *TAR_LAYERS, *ZSTD_LAYERS):
        # e.g. Windows' "foreign" layers, or an artifact that is not a container image at all.
        raise MinirunError(f"unsupported layer type {layer.media_type!r}")
    return layer
