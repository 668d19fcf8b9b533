"""Images: the local store of root file systems, the safe import of tarballs, and registry pulls.

store.py keeps images (layers + config) under names; tarball.py extracts an untrusted tar
archive without letting it write outside its directory; pull.py fetches images from registries
(reference.py names, registry.py HTTP + auth, manifest.py formats and platforms, progress.py);
export.py reads a container's merged file system back out as a tarball.
"""

import contextlib
import sys
from pathlib import Path

from minirun.errors import ImageNotFound
from minirun.images.store import Image, ImageConfig, import_tarball, list_images, normalize_ref, resolve

__all__ = [
    "Image",
    "ImageConfig",
    "get",
    "import_tarball",
    "list_images",
    "normalize_ref",
    "resolve",
]


def get(store: Path, ref: str, policy: str = "missing", platform: str | None = None) -> Image:
    """The image `run` uses, pulled according to docker's `--pull` policy.

    missing: the local image if there is one, else pull; always: pull (cheap when the layers are
    here already); never: local only. The registry code is imported only when a pull happens,
    so starting a container from a local image stays lean.
    """
    if policy != "always":
        try:
            return resolve(store, ref)
        except ImageNotFound:
            if policy == "never":
                raise
    from minirun.images import manifest, pull, reference
    from minirun.images.progress import Progress

    wanted = manifest.parse_platform(platform) if platform else None
    if policy == "missing":
        with contextlib.suppress(ImageNotFound):  # `docker.io/library/alpine` is kept as `alpine`
            return resolve(store, reference.parse(ref).local_name)
        from minirun.images import offline

        if (image := offline.build_busybox(store, ref)) is not None:  # a store without busybox
            return image
    # Progress goes to stderr: the container's own output owns stdout.
    return pull.pull(store, ref, Progress.to(sys.stderr), wanted)
