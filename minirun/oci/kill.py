"""`minirun-oci kill [--all] ID [SIGNAL]`: a signal (KILL, SIGKILL or 9; default TERM) to the
container's process, or with --all to every process of its cgroup (podman with --pid=host,
where the container has no PID namespace whose end would take the others along).

The pid comes from the record, so it is checked first: a pidfd opened, then the start time
compared (a pid is reused; the pidfd then names the right process for good, pidfd_open(2))."""

import contextlib
import os
import signal

from minirun import state
from minirun.container import parse_signal
from minirun.errors import MinirunError
from minirun.oci import cgroup, record


def run(root: str, container_id: str, sig: str, every: bool) -> int:
    number = parse_signal(sig)
    data = record.load(root, container_id)
    current = record.status(root, container_id, data)
    if current not in ("created", "running", "paused"):
        raise MinirunError(f"cannot kill container {container_id}: it is {current}")
    if every:
        for pid in cgroup.pids(data.get("cgroup_paths", [])):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, number)
        return 0
    send(data, number)
    return 0


def send(data: dict[str, object], number: int) -> None:
    pid = data["pid"]
    if not isinstance(pid, int) or pid <= 0:
        raise MinirunError("the container has no process (yet)")
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise MinirunError("the container's process is gone") from None
    try:
        if state.process_start_time(pid) != data.get("start_time"):
            raise MinirunError("the container's process is gone (its pid was reused)")
        signal.pidfd_send_signal(pidfd, number)
    finally:
        os.close(pidfd)
