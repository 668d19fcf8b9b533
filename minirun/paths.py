"""Where minirun keeps things: one place for images and container layers, one for run-time state.

Root and unprivileged users each get their own, like podman: a user's containers never touch
root's store. `MINIRUN_ROOT` moves the store (images, container layers) and `MINIRUN_STATE`
the run-time records, which tests use to keep each run apart.
"""

import contextlib
import os
import stat
from pathlib import Path

from minirun.errors import MinirunError


def is_rootless() -> bool:
    """Rootless means the invoking user is not root on the host (euid != 0)."""
    return os.geteuid() != 0


def store_dir() -> Path:
    """Images and per-container layers: /var/lib/minirun, or $XDG_DATA_HOME/minirun for users."""
    if "MINIRUN_ROOT" in os.environ:
        return Path(os.environ["MINIRUN_ROOT"])
    if not is_rootless():
        return Path("/var/lib/minirun")
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(data_home) / "minirun"


def state_dir() -> Path:
    """Container records: /run/minirun, or $XDG_RUNTIME_DIR/minirun for users.

    /run is cleared at boot, and so are the records, exactly as the containers they describe.
    A user without XDG_RUNTIME_DIR (su, sudo -u, setpriv) gets /run/user/UID when it exists
    and is theirs, else a private directory under /tmp.
    """
    if "MINIRUN_STATE" in os.environ:
        return Path(os.environ["MINIRUN_STATE"])
    if not is_rootless():
        return Path("/run/minirun")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if not runtime:
        candidate = Path(f"/run/user/{os.getuid()}")
        if candidate.is_dir() and candidate.stat().st_uid == os.getuid():
            runtime = str(candidate)
    if not runtime:
        return private_tmp_dir(Path(f"/tmp/minirun-{os.getuid()}"))
    return Path(runtime) / "minirun"


def private_tmp_dir(path: Path) -> Path:
    """A directory in world-writable /tmp that is really ours.

    Anyone can create /tmp/minirun-UID before we do; records planted there would make `rm` and
    `prune` remove or signal what they name, as us. So it must be a directory (not a symlink),
    owned by us, with no access for others (the classic /tmp race, CWE-377).
    """
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise MinirunError(f"{path} is not a private directory of this user: remove it, or set "
                           "XDG_RUNTIME_DIR")
    return path
