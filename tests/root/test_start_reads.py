"""What one `minirun run` reads of the kernel's tables, counted in the process itself.

The container's cgroup places (PARENT in each hierarchy, rootless under the delegated subtree)
come from /proc/self/mountinfo: runtime.prepare finds them once (cgroups.find_places) and hands
them on to the frozen check, the record's plan, the mkdir and the monitor's OOM check and
teardown. Each of those read the table again before (5 reads a `run --rm`). The reads are
counted with an audit hook (sys.addaudithook, PEP 578: every open(2) through Python raises the
"open" event) in the minirun process alone: the clone child reads the table once more to mount
the container's /sys/fs/cgroup (rootfs.mount_cgroupfs), in its own mount namespace.
"""

import os
import subprocess

from helpers import IMAGE, Tier

COUNT_READS = """
import os, sys
me = os.getpid()
def hook(event, args):
    path = args[0] if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)) else ""
    if os.getpid() == me and os.fsdecode(path) == "/proc/self/mountinfo":
        os.write(2, b"mountinfo read\\n")
sys.addaudithook(hook)
sys.argv[0] = "minirun"
from minirun.cli import program
program()
"""


def test_a_run_reads_the_mount_table_once(minirun: Tier) -> None:
    python = minirun.prefix.index("-m") - 1
    args = ["run", "--rm", "--network", "none", IMAGE, "true"]
    argv = [*minirun.prefix[:python + 1], "-c", COUNT_READS, *args]
    result = subprocess.run(argv, env=minirun.env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    # Before Linux 6.3 one more, for another question: which file system holds the store (overlay
    # on tmpfs cannot be idmapped there: userns.layers_mode). Debian 12's 6.1, the VM tier's guest.
    release = tuple(int(n) for n in os.uname().release.split("-")[0].split(".")[:2])
    expected = 1 + (1 if not minirun.rootless and (5, 19) <= release < (6, 3) else 0)
    assert result.stderr.count("mountinfo read\n") == expected, result.stderr
