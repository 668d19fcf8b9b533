"""Small file-system helpers shared by the image store and the container records.

Two rules keep concurrent minirun processes from seeing half-written data:
 - a record is written to a temporary file in the same directory and rename(2)d over the old
   one: rename within a file system is atomic, so readers see the old or the new, never half;
 - a read-modify-write of a shared file happens under flock(2) on a separate lock file.
"""

import contextlib
import fcntl
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def atomic_write_json(path: Path, value: Any, mode: int = 0o644) -> None:
    """Write `value` as JSON to `path` so that readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid in the name: a SIGKILLed writer's file is found and removed by
    # remove_abandoned_tmp (what `prune` does), never one that a live writer is still writing.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(value, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fchmod(f.fileno(), mode)
        os.rename(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not e.filename:  # say which file (ENOSPC, EIO ...)
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


ABANDONED_TMP = re.compile(r"^\..+\.(\d+)\.[a-z0-9_]+\.tmp$")


def remove_abandoned_tmp(directory: Path) -> list[Path]:
    """Remove atomic_write_json's temporary files whose writer has died; return them."""
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            match = ABANDONED_TMP.match(entry.name)
            if match and not os.path.exists(f"/proc/{match.group(1)}"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


@contextlib.contextmanager
def locked(lock_path: Path, shared: bool = False) -> Iterator[None]:
    """Hold flock(2) on `lock_path` (created if missing) for the duration of the block.

    flock locks belong to the open file description, so they are released when the process
    dies, also by SIGKILL: a crashed minirun never leaves a lock held.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
