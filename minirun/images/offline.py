"""The offline `busybox` image, built on first use for a store that has none.

A user who installed minirun without root (`pip install --user`, pipx) has an empty store of
their own, and `minirun run busybox` would go to Docker Hub, which a CI runner or a classroom
may not reach. So, as `install.sh` does for root, the image is built here from the host's
statically linked busybox (Debian and Ubuntu: busybox-static) by the same script as
rootfs-images/busybox/build.sh, and imported under the name `busybox:latest`. The script is
reproducible, so every user and root get the same image id.

Why this rather than reading root's store (podman's `additionalimagestores`): it needs nothing
from root, no install.sh and no store of root's that a user could read; and the user's image
is the user's own (`rmi`, file owners that are the user's, file capabilities as revision 3 with
the user's uid, see tarball._set_capabilities). Only `busybox` and `busybox:latest` as typed are
built; `docker.io/library/busybox` and every other name is pulled, as docker does. Without a
static busybox the pull happens as before.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from minirun.errors import MinirunError
from minirun.images.store import Image, import_tarball

BUSYBOX = "/bin/busybox"  # where busybox-static installs it (the script checks it is static)
SCRIPT = Path(__file__).with_name("busybox-rootfs.sh")
NAMES = ("busybox", "busybox:latest")


def build_busybox(store: Path, ref: str) -> Image | None:
    """The image for `ref` if it is the offline busybox and this host can build it, else None."""
    if ref not in NAMES or not os.access(BUSYBOX, os.X_OK):
        return None
    print(f"minirun: no busybox image in {store} yet: building it offline from {BUSYBOX}",
          file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="minirun-busybox-") as tmp:
        tar = Path(tmp, "busybox.tar")
        built = subprocess.run(["bash", str(SCRIPT), str(tar)], capture_output=True, text=True,
                               stdin=subprocess.DEVNULL, check=False)
        if built.returncode != 0:
            lines = built.stderr.strip().splitlines() or [f"exit {built.returncode}"]
            raise MinirunError(f"cannot build the busybox image: {lines[-1]}")
        with open(tar, "rb") as f:
            return import_tarball(store, f, "busybox:latest")
