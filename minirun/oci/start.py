"""`minirun-oci start ID`: let a created container's program go (runtime.md, "start").

Opening the exec fifo for reading is what wakes the child blocked in open(O_WRONLY) (fifo(7));
it writes one byte, and we wait for it (while checking the child still lives: a container
killed while created would otherwise keep `start` waiting forever). Then the fifo goes (the
status is "running" from here) and the poststart hooks run.
"""

import contextlib
import os
import select
import sys

from minirun.errors import MinirunError
from minirun.oci import hooks, record


def run(root: str, container_id: str) -> int:
    data = record.load(root, container_id)
    current = record.status(root, container_id, data)
    if current != "created":
        raise MinirunError(f"cannot start a container that is {current}")
    path = record.fifo(root, container_id)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            if poller.poll(100) and os.read(fd, 1):
                break
            if not record.alive(data):
                raise MinirunError(f"container {container_id} exited before it was started")
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    try:
        hooks.run(
            "poststart",
            hooks.from_json(data.get("hooks", {}), "poststart"),
            record.public(root, container_id, data),
        )
    except MinirunError as e:  # the spec: a poststart failure is logged, the container runs on
        print(f"minirun-oci: warning: {e}", file=sys.stderr)
    return 0
