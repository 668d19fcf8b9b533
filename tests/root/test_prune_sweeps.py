"""Issue 12, item 11 (the rest): `prune` sweeps what killed commands left outside any record:
an rmi's or an import's staging directory in the store's tmp/ (import-PID-*, remove-PID-*), and
the address book of a network namespace that is gone (/run/minirun/networks)."""

import io
import json
import os
import secrets
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import IMAGE, Tier, wait_for
from test_hostile_state import private_state

pytestmark = pytest.mark.root

FILES = 40000  # enough that unpacking and removing take long enough to be killed half-way


def many_files_tar(path: Path) -> None:
    """A rootfs tarball of FILES small files (and busybox, so that it is a runnable image)."""
    with tarfile.open(path, "w") as tar:
        for n in range(FILES):
            info = tarfile.TarInfo(f"d{n // 1000}/f{n}")
            data = secrets.token_bytes(8)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def killed_half_way(tier: Tier, args: list[str], prefix: str) -> int:
    """Start `minirun ARGS`, SIGKILL it as soon as its tmp/PREFIX-PID-* exists; return its pid."""
    tmp = tier.store_dir / "tmp"
    proc = tier.popen(args)
    pattern = f"{prefix}-{proc.pid}-*"
    deadline = time.monotonic() + 60
    while not list(tmp.glob(pattern)) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"{args[0]} ended before it could be killed half-way"
    assert list(tmp.glob(pattern)), f"no tmp/{pattern} to sweep"
    return proc.pid


def test_prune_sweeps_what_a_killed_import_and_rmi_left(root_minirun: Tier, shared_dir: Path) -> None:
    tar = shared_dir / "many.tar"
    many_files_tar(tar)
    tmp = root_minirun.store_dir / "tmp"
    ref = f"mrt-sweep-{secrets.token_hex(4)}"
    pid = killed_half_way(root_minirun, ["import", str(tar), ref], "import")
    with private_state(root_minirun) as tier:
        tier(["prune"], check=0)
        assert not list(tmp.glob(f"import-{pid}-*")), "prune swept the killed import's staging area"
        # 40000 files: seconds here, minutes in the VM tier's emulated guest.
        tier(["import", str(tar), ref], timeout=600, check=0)
        pid = killed_half_way(tier, ["rmi", ref], "remove")
        assert ref not in tier(["images"], check=0).stdout, "the name went first"
        tier(["prune"], check=0)
        assert not list(tmp.glob(f"remove-{pid}-*")), "prune swept the killed rmi's layer"


def test_prune_sweeps_the_leases_of_a_gone_network_namespace(root_minirun: Tier,
                                                             names: Callable[[], str]) -> None:
    """A container on the bridge of a throwaway network namespace (`unshare -n`), whose monitor is
    SIGKILLed: the namespace goes with its last process, its book of leases stays."""
    with private_state(root_minirun) as tier:
        name = names()
        run = subprocess.run(["unshare", "--net", sys.executable, "-m", "minirun", "run", "-d",
                              "--name", name, "--network", "bridge", IMAGE, "sleep", "600"], env=tier.env,
                             capture_output=True, text=True, timeout=60, check=False)
        assert run.returncode == 0, run.stderr
        monitor = json.loads(Path(tier.state_dir / f"{run.stdout.strip()}.json").read_text())["monitor_pid"]
        netns = os.stat(f"/proc/{monitor}/ns/net").st_ino
        book = Path(f"/run/minirun/networks/minirun0-netns{netns}.json")
        assert book.exists(), "a book for that namespace"
        os.kill(monitor, signal.SIGKILL)
        wait_for(lambda: not os.path.exists(f"/proc/{monitor}"), timeout=20, what="the monitor's end")
        tier(["prune"], check=0)
        assert not book.exists(), "prune removed the book of the dead lease"
        assert tier(["ps", "-a", "-q"], check=0).stdout == ""
