"""`minirun-oci update --resources FILE ID`: new linux.resources for a container's cgroup
(podman's `update`; `-` reads them from stdin)."""

import json
import sys
from pathlib import Path

from minirun.cgroups import Cgroup
from minirun.errors import MinirunError
from minirun.oci import cgroup, record


def run(root: str, container_id: str, resources: str | None) -> int:
    data = record.load(root, container_id)
    if record.status(root, container_id, data) == "stopped":
        raise MinirunError(f"cannot update container {container_id}: it is stopped")
    try:
        text = sys.stdin.read() if resources in (None, "-") else Path(resources).read_text()
        wanted = json.loads(text)
    except (OSError, ValueError) as e:
        raise MinirunError(f"--resources: {e}") from None
    if not isinstance(wanted, dict):
        raise MinirunError("--resources: expected a JSON object (linux.resources)")
    cgroup.apply(
        Cgroup(tuple(Path(p) for p in data.get("cgroup_paths", []) if Path(p).is_dir())), wanted
    )
    return 0
