"""Where an OCI container lives between verbs: ROOT/ID/ (ROOT is --root, /run/minirun-oci).

  ROOT/ID/state.json  what `state` prints, plus what the other verbs need (pid + its start
                      time, the cgroup directories, the hooks for poststart/poststop)
  ROOT/ID/exec.fifo   the wait between create and start (minirun/oci/__init__.py's table);
                      it exists exactly while the container is "created"

There is no monitor: `create` exits, and the container's process is reparented to the
nearest subreaper (conmon under podman) or to PID 1. So the status is derived, never stored:
a live process with the recorded start time (pids are reused) and the fifo -> created;
without the fifo -> running (or paused, by the freezer); otherwise stopped.
"""

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

from minirun import procfs
from minirun import state as records
from minirun.errors import MinirunError

DEFAULT_ROOT = "/run/minirun-oci"
CGROUP_ROOT = "/sys/fs/cgroup/"
# runc's rule for ids: no path separators, nothing a file name cannot be (ASCII, as Go's \w;
# at most NAME_MAX = 255 bytes, the longest file name, path_resolution(7)).
CONTAINER_ID = re.compile(r"^[\w+.-]{1,255}$", re.ASCII)


def check_id(container_id: str) -> str:
    if not CONTAINER_ID.fullmatch(container_id) or container_id in (".", ".."):
        raise MinirunError(f"invalid container id {container_id!r}: letters, digits, _ + . - only, "
                           "at most 255")
    return container_id


def directory(root: str, container_id: str) -> Path:
    return Path(root) / check_id(container_id)


def fifo(root: str, container_id: str) -> Path:
    return directory(root, container_id) / "exec.fifo"


def save(root: str, container_id: str, data: dict[str, Any]) -> None:
    path = directory(root, container_id) / "state.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)  # atomic: a concurrent `state` sees the old or the new, never half


def load(root: str, container_id: str) -> dict[str, Any]:
    try:
        data = json.loads((directory(root, container_id) / "state.json").read_text())
    except FileNotFoundError:
        raise MinirunError(f"container {container_id} does not exist") from None
    except (OSError, ValueError) as e:
        raise MinirunError(f"container {container_id}: unreadable state: {e}") from None
    if not isinstance(data, dict) or not well_formed(data):
        raise MinirunError(f"container {container_id}: bad state.json")
    return data


def well_formed(data: Any) -> bool:
    """What the verbs act on has the types create wrote: a pid, cgroup directories (the only
    places delete and kill --all reach) under /sys/fs/cgroup, hooks with a path each. A record
    changed by hand is refused in one line, not followed (a string of cgroup_paths would be
    its letters, each a directory relative to the cwd)."""
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int) or isinstance(data["pid"], bool):
        return False
    for key in ("cgroup_paths", "cgroup_made"):
        paths = data.get(key, [])
        if paths is None and key == "cgroup_made":
            continue
        if not isinstance(paths, list) or not all(
                isinstance(p, str) and p.startswith(CGROUP_ROOT) and "/../" not in f"{p}/" for p in paths):
            return False
    hooks = data.get("hooks", {})
    return isinstance(hooks, dict) and all(
        isinstance(kind, list) and all(isinstance(h, dict) and isinstance(h.get("path"), str) for h in kind)
        for kind in hooks.values())


def alive(data: dict[str, Any]) -> bool:
    """Is the recorded pid still the container's process, and not a zombie (exited, unreaped:
    a PID 1 that never reaps keeps it so)?"""
    pid = data["pid"]
    if pid <= 0 or records.process_start_time(pid) != data.get("start_time"):
        return False
    fields = procfs.stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def status(root: str, container_id: str, data: dict[str, Any]) -> str:
    if data["pid"] == 0:  # create has not cloned yet: "creating" while it lives
        creator = data.get("creator")
        creating = isinstance(creator, int) and creator > 0 and \
            records.process_start_time(creator) == data.get("creator_start")
        return "creating" if creating else "stopped"
    if not alive(data):
        return "stopped"
    if fifo(root, container_id).exists():
        return "created"
    from minirun.oci import cgroup

    return "paused" if cgroup.frozen(data.get("cgroup_paths", [])) else "running"


def public(root: str, container_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """The spec's state (runtime.md, "State"), as `state` prints it and hooks read it on stdin."""
    current = status(root, container_id, data)
    shown = {
        "ociVersion": data.get("ociVersion", "1.0.2"),
        "id": container_id,
        "status": current,
        "pid": data["pid"] if current != "stopped" else 0,
        "bundle": data.get("bundle", ""),
        "rootfs": data.get("rootfs", ""),
        "created": data.get("created", ""),
        "owner": "",
    }
    if data.get("annotations"):
        shown["annotations"] = data["annotations"]
    return shown


def remove(root: str, container_id: str) -> None:
    where = directory(root, container_id)
    for name in ("exec.fifo", "state.json", "state.tmp", "seccomp.json"):
        with contextlib.suppress(FileNotFoundError):
            (where / name).unlink()
    with contextlib.suppress(FileNotFoundError):
        where.rmdir()
