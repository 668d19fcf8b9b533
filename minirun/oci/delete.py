"""`minirun-oci delete [--force] ID`: remove what create made (runtime.md, "delete").

A stopped container goes at once; a created, running or paused one only with --force (the
spec: deleting a container that is not stopped MUST fail): thawed, SIGKILLed, waited for.
Then its cgroup is emptied and removed, the poststop hooks run (failures are warnings), and
the record goes. --force on an unknown id succeeds, as runc's: podman calls it after the
container may be gone already."""

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

from minirun.errors import MinirunError
from minirun.oci import cgroup, hooks, kill, record


def run(root: str, container_id: str, force: bool) -> int:
    try:
        data = record.load(root, container_id)
    except MinirunError as e:
        if force and not record.directory(root, container_id).exists():
            return 0
        if force and (record.directory(root, container_id) / "state.json").exists():
            # Unreadable or changed by hand: nothing in it can be trusted to name a process or a
            # cgroup, but the record itself goes, or the id could never be used again.
            print(f"minirun-oci: warning: {e}; its record removed, nothing else", file=sys.stderr)
            record.remove(root, container_id)
            return 0
        raise
    current = record.status(root, container_id, data)
    if current != "stopped" and not force:
        raise MinirunError(f"cannot delete container {container_id} that is not stopped: {current}")
    destroy(root, container_id, data, current)
    return 0


def destroy(root: str, container_id: str, data: dict[str, Any], current: str) -> None:
    """Kill (thawed first), wait, remove the cgroup and the record, run the poststop hooks."""
    paths = data.get("cgroup_paths", [])
    if current != "stopped":
        if current == "paused":
            with contextlib.suppress(OSError, MinirunError):
                cgroup.freeze(paths, on=False)
        with contextlib.suppress(MinirunError):
            kill.send(data, 9)
        deadline = time.monotonic() + 10
        while record.alive(data) and time.monotonic() < deadline:
            time.sleep(0.02)
    public = record.public(root, container_id, data)
    cgroup.remove(paths, data.get("cgroup_made"))  # a list or None: record.well_formed
    if data.get("default_cgroup"):
        for text in paths:
            with contextlib.suppress(OSError):
                Path(text).parent.rmdir()
    if data.get("systemd_cgroup"):
        cgroup.remove_slices(paths)
    record.remove(root, container_id)
    hooks.run("poststop", hooks.from_json(data.get("hooks", {}), "poststop"), public, warn_only=True)
