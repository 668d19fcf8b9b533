"""`minirun-oci start ID`: let a created container's program go (runtime.md, "start").

Opening the exec fifo for reading is what wakes the child blocked in open(O_WRONLY) (fifo(7));
it writes one byte, and we wait for it (while checking the child still lives: a container
killed while created would otherwise keep `start` waiting forever). Before that the prestart
hooks run (the 1.0 spec's moment, which the validation suite checks; createRuntime hooks run at
create). Then the fifo goes (the status is "running" from here) and the poststart hooks run.
"""

import contextlib
import os
import select

from minirun import trace
from minirun.errors import MinirunError
from minirun.oci import delete, hooks, kill, record


def run(root: str, container_id: str) -> int:
    data = record.load(root, container_id)
    current = record.status(root, container_id, data)
    if current != "created":
        raise MinirunError(f"cannot start a container that is {current}")
    if not data.get("has_process", True):
        with contextlib.suppress(MinirunError):
            kill.send(data, 9)  # it can never run: stopped, so that delete removes it
        raise MinirunError(f"cannot start container {container_id}: its config.json has no process")
    public = record.public(root, container_id, data)
    try:  # the 1.0 spec's moment: after start is called, before the program runs (config.md)
        hooks.run("prestart", hooks.from_json(data.get("hooks", {}), "prestart"), public)
    except MinirunError:
        # runtime.md, "Lifecycle": the container is stopped and the lifecycle goes on at delete.
        delete.destroy(root, container_id, data, "created")
        raise
    trace.mark("oci: prestart hooks", hooks=len(data.get("hooks", {}).get("prestart", [])))
    path = record.fifo(root, container_id)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        got = b""
        while True:  # the byte (the program may go), then EOF (its execve closed the fifo)
            if poller.poll(100):
                chunk = os.read(fd, 1)
                if not chunk and got:
                    break
                got += chunk
            if not record.alive(data):
                if got:
                    break  # it ran and is done already, or its execve failed: its stderr says
                raise MinirunError(f"container {container_id} exited before it was started")
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    trace.mark("oci: start", pid=data["pid"], fifo=str(path))
    # The state at the hooks' moment: the program was exec'd (the fifo's EOF), so "running" with
    # its pid, even when a short program has already exited by now (runtime.md, "poststart").
    state = {**record.public(root, container_id, data), "status": "running", "pid": data["pid"]}
    # The spec: a poststart failure is a warning, and the next hooks still run.
    hooks.run("poststart", hooks.from_json(data.get("hooks", {}), "poststart"), state, warn_only=True)
    return 0
