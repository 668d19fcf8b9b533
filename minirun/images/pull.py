"""`pull`: from a reference on a registry to an image in the local store, every byte verified.

In order (OCI distribution-spec "Pull", image-spec):
  1  parse the reference (reference.py): registry, repository, tag or digest
  2  fetch the manifest by tag or digest (registry.py handles auth); an index (manifest list)
     is resolved to the manifest for our platform (manifest.py), fetched by its digest
  3  fetch the image config blob: Env, Cmd, Entrypoint, WorkingDir, User, ExposedPorts
  4  for each layer, lowest first: skip it if the store has that digest (layers are shared
     between images); else stream it from the registry through a verifying reader into the
     safe extractor (tarball.py), turning whiteouts into overlayfs's form, in a staging dir
  5  commit: move new layers into place, record the image under its config digest (its id, as
     in Docker), point the name at it (store.py: all under the store's lock)

Robustness: the whole pull holds a per-reference flock(2), so two `minirun pull alpine` at once
download once (the second waits, then finds every layer present). Nothing is visible before
step 5: an interrupted pull leaves only a staging directory in tmp/, which nothing reads and the
next pull does not need.
"""

import hashlib
import json
from pathlib import Path
from typing import Any

from minirun import paths, state
from minirun.errors import MinirunError
from minirun.fsutil import locked
from minirun.images import manifest, reference, registry
from minirun.images.progress import Progress, human
from minirun.images.store import (
    Image,
    ImageConfig,
    commit_image,
    config_from_json,
    extract_layer,
    staging_area,
)


def pull(store: Path, ref_text: str, progress: Progress, platform: manifest.Platform | None = None) -> Image:
    ref = reference.parse(ref_text)  # 1
    wanted = platform or manifest.host_platform()
    client = registry.Client.for_reference(ref)
    lock = store / "pulls" / (hashlib.sha256(str(ref).encode()).hexdigest() + ".lock")
    with locked(lock):
        data, media_type, digest = registry.fetch_manifest(client, ref.wanted, manifest.ACCEPT)  # 2
        progress.message(f"{ref.wanted}: Pulling from {ref.familiar_repository}")
        document = manifest.parse(data, media_type)
        if isinstance(document, manifest.Index):
            entry = manifest.select(document, wanted)
            data, media_type, _ = registry.fetch_manifest(client, entry.digest, manifest.ACCEPT)
            document = manifest.parse(data, media_type)
            if isinstance(document, manifest.Index):
                raise MinirunError(f"{ref}: a manifest list points to another manifest list")
        config_blob = registry.fetch_blob_bytes(client, document.config.digest, document.config.size)  # 3
        config, image_platform = image_config(config_blob)
        if platform is not None and image_platform.architecture != platform.architecture:
            raise MinirunError(f"{ref} is for {image_platform}, not the requested {platform}")

        with staging_area(store) as staging:  # 4
            layers = [fetch_layer(store, client, layer, staging, progress) for layer in document.layers]
            image = commit_image(  # 5
                store, layers, config, ref.local_name, image_id=document.config.digest,
                repo_digest=f"{ref.familiar_repository}@{digest}", platform=str(image_platform),
                in_use=state.image_ids_in_use(paths.state_dir()))
    fresh = any(path.parent == staging for _, path in layers)
    progress.message(f"Digest: {digest}")
    status = "Downloaded newer image" if fresh else "Image is up to date"
    progress.message(f"Status: {status} for {ref.local_name}")
    return image


def fetch_layer(store: Path, client: registry.Client, layer: manifest.Descriptor, staging: Path,
                progress: Progress) -> tuple[str, Path]:
    """One layer into the staging area, unless the store already has it (then: the stored one)."""
    line = progress.add_layer(layer.digest)
    stored = store / "layers" / layer.digest.removeprefix("sha256:")
    if (stored / "layer.json").exists():
        progress.status(line, "Already exists", final=True)
        return layer.digest, stored
    staged = staging / layer.digest.removeprefix("sha256:")
    with registry.open_blob(client, layer.digest, layer.size,
                            lambda done: progress.downloading(line, done, layer.size)) as blob:
        try:
            digest = extract_layer(blob, staged, whiteouts=True)  # type: ignore[arg-type]
        except MinirunError:
            blob.check_rest()  # if the bytes were not the blob, that is the error to report
            raise
        if not blob.verified or digest != layer.digest:
            raise MinirunError(f"layer {layer.digest} was not verified to its end")
    progress.status(line, "Extracting")
    progress.status(line, f"Pull complete {human(layer.size)}", final=True)
    return layer.digest, staged


def image_config(blob: bytes) -> tuple[ImageConfig, manifest.Platform]:
    """The OCI image config's "config" object (image-spec config.md), and its platform."""
    try:
        document: dict[str, Any] = json.loads(blob)
        config = config_from_json(document.get("config") or {})
        platform = manifest.Platform(str(document.get("os", "")), str(document.get("architecture", "")),
                                     str(document.get("variant", "")))
    except (ValueError, TypeError, AttributeError) as e:
        raise MinirunError(f"malformed image config ({e})") from e
    # An image without Cmd and Entrypoint is valid; `run` then needs a command (docker's rule).
    return config, platform


