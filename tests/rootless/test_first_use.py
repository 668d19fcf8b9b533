"""A user with an empty store of their own gets a working `minirun run busybox`, offline.

As after `pip install --user` on a machine where root never installed anything: the first run of
`busybox` builds the offline image into the user's store from the host's busybox-static
(minirun/images/offline.py), says so, and runs; the next run just runs. The image is the same
(same id) as the one rootfs-images/busybox/build.sh gives the tiers.
"""

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import IMAGE, Tier, one_line_error

pytestmark = pytest.mark.rootless


@pytest.fixture
def fresh_store(rootless_minirun: Tier) -> Iterator[Tier]:
    """The rootless tier with MINIRUN_ROOT pointing to a store that does not exist yet."""
    home = Path(tempfile.mkdtemp(prefix="minirun-test-fresh-"))
    try:
        home.chmod(0o755)
        shutil.chown(home, rootless_minirun.uid, rootless_minirun.gid)
        store = home / "store"
        prefix = list(rootless_minirun.prefix)
        prefix.insert(len(prefix) - 3, f"MINIRUN_ROOT={store}")  # an `env -i` argument, before python
        yield replace(rootless_minirun, prefix=prefix, store_dir=store, processes=[])
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_first_run_builds_busybox_then_runs(fresh_store: Tier, rootless_minirun: Tier) -> None:
    assert fresh_store(["images", "-q"], check=0).stdout == ""
    first = fresh_store(["run", "--rm", "--network", "none", IMAGE, "sh", "-c",
                         "id -u; grep ^ID= /etc/os-release"], check=0, timeout=120)
    assert first.stdout.split() == ["0", "ID=minirun-busybox"]
    assert f"no busybox image in {fresh_store.store_dir} yet: building it offline" in one_line_error(first)
    again = fresh_store(["run", "--rm", "--network", "none", IMAGE, "true"], check=0)
    assert again.stderr == "", "built once, then simply used"
    ids = fresh_store(["images", "-q", IMAGE], check=0).stdout.split()
    assert ids == rootless_minirun(["images", "-q", IMAGE], check=0).stdout.split(), "reproducible: same id"


def test_only_the_name_busybox_is_built_and_only_when_pulling_is_allowed(fresh_store: Tier) -> None:
    never = fresh_store(["run", "--rm", "--pull", "never", "--network", "none", IMAGE, "true"], check=125)
    assert "building" not in never.stderr
    assert fresh_store(["images", "-q"], check=0).stdout == ""
