"""`minirun-oci pause ID` / `resume ID`: the freezer of the container's cgroup."""

from minirun.errors import MinirunError
from minirun.oci import cgroup, record


def run(root: str, container_id: str, on: bool) -> int:
    data = record.load(root, container_id)
    current = record.status(root, container_id, data)
    if on and current != "running":
        raise MinirunError(f"cannot pause container {container_id}: it is {current}")
    if not on and current != "paused":
        raise MinirunError(f"cannot resume container {container_id}: it is {current}")
    try:
        cgroup.freeze(data.get("cgroup_paths", []), on)
    except MinirunError as e:
        raise MinirunError(f"cannot {'pause' if on else 'resume'} container {container_id}: {e}") from None
    return 0
