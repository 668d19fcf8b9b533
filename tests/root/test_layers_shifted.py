"""Rootful remapped containers on kernels without idmapped overlay layers (issue 10, item 4).

Before Linux 5.19 overlayfs refuses idmapped lower layers (Ubuntu 22.04 ships 5.15), and before
6.3 tmpfs cannot be idmapped at all (Debian 12 ships 6.1): there minirun falls back to shifted
copies, one per layer and id range (minirun/userns.py, layers_mode; images/store.shifted_layer).
MINIRUN_LAYERS=shifted forces that fallback, so it is tested here on any kernel.
"""

import os
import secrets
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import IMAGE, Tier, one_line_error

from minirun import userns

pytestmark = pytest.mark.root


def forced(tier: Tier, mode: str) -> Tier:
    return replace(tier, env={**tier.env, userns.LAYERS_ENV: mode}, processes=tier.processes)


def shifted_copies(store: Path) -> list[Path]:
    return sorted((store / "layers").glob("*/rootfs-shifted-*"))


def test_shifted_copies_look_like_the_image_and_are_shared(root_minirun: Tier,
                                                          names: Callable[[], str]) -> None:
    shifted = forced(root_minirun, "shifted")
    uid, gid = root_minirun.container_root
    name = names()
    out = shifted(["run", "--name", name, "--userns=shared", IMAGE, "sh", "-c",
                   "stat -c '%u:%g' /bin/busybox /etc; echo x > /etc/made; stat -c '%u:%g' /etc/made"],
                  check=0).stdout.split()
    assert out == ["0:0", "0:0", "0:0"], "image files and new files are root's, inside"
    item = shifted.inspect(name)
    assert item["HostConfig"]["LayersMode"] == "shifted copies"
    upper = Path(item["GraphDriver"]["Data"]["UpperDir"])
    assert (os.stat(upper / "etc" / "made").st_uid, os.stat(upper / "etc" / "made").st_gid) == (uid, gid)
    copies = [c for c in shifted_copies(root_minirun.store_dir)
              if c.name == f"rootfs-shifted-{uid}-{gid}-65536"]
    assert copies, "a copy next to the layer, named after the range"
    busybox = copies[0] / "bin" / "busybox"
    assert (busybox.stat().st_uid, busybox.stat().st_gid) == (uid, gid), "owners moved into the range"
    made_at = copies[0].stat().st_ctime_ns
    shifted(["rm", name], check=0)
    shifted(["run", "--rm", "--userns=shared", IMAGE, "true"], check=0)
    assert copies[0].stat().st_ctime_ns == made_at, "made once: the next container reuses it"


def test_a_range_of_its_own_has_copies_of_its_own_removed_with_it(root_minirun: Tier,
                                                                  names: Callable[[], str]) -> None:
    """--userns=auto (the default): copies keyed by the container's range, gone with the range."""
    shifted = forced(root_minirun, "shifted")
    name = names()
    shifted(["run", "-d", "--name", name, "--network", "none", IMAGE, "sleep", "600"], check=0)
    maps = shifted.inspect(name)["HostConfig"]["IDMappings"]
    uid, count = (int(v) for v in maps["UidMap"][0].split(":")[1:])
    gid = int(maps["GidMap"][0].split(":")[1])
    copies = [c for c in shifted_copies(root_minirun.store_dir)
              if c.name == f"rootfs-shifted-{uid}-{gid}-{count}"]
    assert copies, "a copy for this container's range"
    assert (copies[0] / "bin" / "busybox").stat().st_uid == uid
    shifted(["rm", "-f", name], check=0)
    assert not [c for c in copies if c.exists()], "removed with the range"


def test_the_default_follows_the_kernel(root_minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    root_minirun(["run", "--name", name, IMAGE, "true"], check=0)
    release = tuple(int(p) for p in os.uname().release.split("-")[0].split(".")[:2])
    expected = "idmapped" if release >= (5, 19) else "shifted copies"  # the store is on disk here
    assert root_minirun.inspect(name)["HostConfig"]["LayersMode"] == expected
    root_minirun(["rm", name], check=0)
    userns_host = names()
    root_minirun(["run", "--name", userns_host, "--userns", "host", IMAGE, "true"], check=0)
    assert root_minirun.inspect(userns_host)["HostConfig"]["LayersMode"] == "as is"
    root_minirun(["rm", userns_host], check=0)


def test_rmi_removes_the_shifted_copies(root_minirun: Tier, shared_dir: Path) -> None:
    """An image of its own (one layer no other image shares), run shifted, then removed."""
    source = shared_dir / "root"
    (source / "bin").mkdir(parents=True)
    busybox = shutil.which("busybox")
    assert busybox, "busybox-static is needed (install.sh installs it)"
    (source / "bin" / "busybox").write_bytes(Path(busybox).read_bytes())
    (source / "bin" / "busybox").chmod(0o755)
    (source / "marker").write_text(secrets.token_hex(16))  # a layer digest of its own
    tar = shared_dir / "image.tar"
    with tarfile.open(tar, "w") as t:
        t.add(source, arcname=".")
    ref = f"mrt-shifted-{secrets.token_hex(4)}"
    root_minirun(["import", str(tar), ref], check=0)
    before = set(shifted_copies(root_minirun.store_dir))
    forced(root_minirun, "shifted")(["run", "--rm", "--userns=shared", ref, "/bin/busybox", "true"], check=0)
    made = set(shifted_copies(root_minirun.store_dir)) - before
    assert len(made) == 1, made
    root_minirun(["rmi", ref], check=0)
    assert not [c for c in made if c.exists()], "rmi took the copy away with the layer"


def test_a_bad_mode_is_one_line(root_minirun: Tier) -> None:
    result = forced(root_minirun, "sideways")(["run", "--rm", IMAGE, "true"], check=125)
    assert "MINIRUN_LAYERS" in one_line_error(result)
