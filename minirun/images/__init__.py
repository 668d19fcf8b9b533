"""Images: the local store of root file systems and the safe import of tarballs into it.

store.py keeps images (layers + config) under names; tarball.py extracts an untrusted tar
archive without letting it write outside its directory.
"""

from minirun.images.store import Image, ImageConfig, import_tarball, list_images, normalize_ref, resolve
from minirun.images.tarball import safe_extract

__all__ = [
    "Image",
    "ImageConfig",
    "import_tarball",
    "list_images",
    "normalize_ref",
    "resolve",
    "safe_extract",
]
