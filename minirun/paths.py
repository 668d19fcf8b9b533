"""Where minirun keeps things: one place for images and container layers, one for run-time state.

Root and unprivileged users each get their own, like podman: a user's containers never touch
root's store. `MINIRUN_ROOT` moves the store (images, container layers) and `MINIRUN_STATE`
the run-time records, which tests use to keep each run apart.
"""

import os
from pathlib import Path


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
        runtime = f"/tmp/minirun-{os.getuid()}"
        os.makedirs(runtime, mode=0o700, exist_ok=True)
        return Path(runtime)
    return Path(runtime) / "minirun"
