"""File capabilities (`security.capability`) survive import and export, and work in containers.

The image: the busybox image plus /bin/busyboxcap, a copy of busybox given cap_net_raw+ep with
setcap(8) and packed with `tar --xattrs` (a PAX `SCHILY.xattr.security.capability` record), as a
Debian image carries /usr/bin/ping. busybox runs the applet named by its first argument when its
own name starts with "busybox", so `busyboxcap grep CapEff /proc/self/status` shows the
capabilities of the exec'd program itself, and `busyboxcap ping` needs CAP_NET_RAW (a raw ICMP
socket) as a non-root user. Both tiers: rootful (remapped root over idmapped layers) and rootless
(the kernel stores the capability as revision 3, rootid = the user). Pulled too: the capable
file in a layer of its own, pushed to a local registry (tests/registry.py).
"""

import gzip
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import Tier, one_line_error
from registry import PATH, Layout, Registry, gzip_file

CAP_NET_RAW = 1 << 13  # capabilities(7); <linux/capability.h>
CAP_XATTR = "SCHILY.xattr.security.capability"


def cap_eff(status: str) -> int:
    return int(next(line for line in status.splitlines() if line.startswith("CapEff:")).split()[1], 16)


def v2_net_raw() -> bytes:
    """vfs_cap_data revision 2, effective, permitted = {net_raw}."""
    return (0x02000001).to_bytes(4, "little") + CAP_NET_RAW.to_bytes(4, "little") + bytes(12)


@pytest.fixture(scope="session")
def caps_tar(busybox_tar: Path) -> Iterator[Path]:
    assert shutil.which("setcap"), "setcap (libcap2-bin) is needed to build the test image"
    work = Path(tempfile.mkdtemp(prefix="minirun-test-caps-"))
    try:
        work.chmod(0o755)
        root = work / "root"
        root.mkdir()
        subprocess.run(["tar", "-xpf", str(busybox_tar), "-C", str(root)], check=True)
        shutil.copy2(root / "bin" / "busybox", root / "bin" / "busyboxcap")
        subprocess.run(["setcap", "cap_net_raw+ep", str(root / "bin" / "busyboxcap")], check=True)
        tar = work / "caps.tar"
        subprocess.run(["tar", "--xattrs", "--format=posix", "--numeric-owner", "-cf", str(tar),
                        "-C", str(root), "."], check=True)
        tar.chmod(0o644)
        with tarfile.open(tar) as t:  # the archive really carries it, as GNU tar writes it
            assert CAP_XATTR in t.getmember("./bin/busyboxcap").pax_headers
        yield tar
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def caps_image(minirun: Tier, caps_tar: Path, names: Callable[[], str]) -> Iterator[str]:
    image = f"{names()}:caps"
    minirun(["import", str(caps_tar), image], check=0)
    yield image
    minirun(["rmi", "-f", image], check=0)


def test_capability_is_effective_for_a_non_root_user(minirun: Tier, caps_image: str) -> None:
    status = minirun(["run", "--rm", "--network", "none", "--user", "1000", caps_image,
                      "busyboxcap", "cat", "/proc/self/status"], check=0).stdout
    assert cap_eff(status) == CAP_NET_RAW, status
    # The same user without the file capability has none, and ping (a raw socket) is refused...
    plain = minirun(["run", "--rm", "--network", "none", "--user", "1000", caps_image,
                     "sh", "-c", "grep CapEff /proc/self/status; ping -c1 -W1 127.0.0.1"])
    assert cap_eff(plain.stdout) == 0 and plain.returncode != 0, plain.stdout + plain.stderr
    # ... where the capable copy may open one.
    ping = minirun(["run", "--rm", "--network", "none", "--user", "1000", caps_image,
                    "busyboxcap", "ping", "-c1", "-W5", "127.0.0.1"], check=0)
    assert "1 packets received" in ping.stdout


def test_export_keeps_the_capability(minirun: Tier, caps_image: str, names: Callable[[], str]) -> None:
    name = names()
    minirun(["run", "--name", name, "--network", "none", caps_image, "true"], check=0)
    try:
        exported = subprocess.run(minirun.argv(["export", name]), env=minirun.env, capture_output=True,
                                  timeout=120, check=False)
        assert exported.returncode == 0, exported.stderr
    finally:
        minirun(["rm", name], check=0)
    with tarfile.open(fileobj=io.BytesIO(exported.stdout)) as t:
        headers = t.getmember("./bin/busyboxcap").pax_headers
        # As `docker export` shows it: revision 2, for the archive's root, whatever the store holds
        # (rootless: revision 3 with the user's uid as rootid).
        assert headers[CAP_XATTR].encode("utf-8", "surrogateescape") == v2_net_raw()
        assert CAP_XATTR not in t.getmember("./bin/busybox").pax_headers


def rewrite(source: Path, out: Path, value: bytes) -> None:
    """A copy of `source` whose busyboxcap carries `value` as its security.capability."""
    with tarfile.open(source) as src, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
        for member in src:
            if member.name == "./bin/busyboxcap":
                member.pax_headers = {**member.pax_headers,
                                      CAP_XATTR: value.decode("utf-8", "surrogateescape")}
            dst.addfile(member, src.extractfile(member) if member.isreg() else None)
    out.chmod(0o644)


def test_namespaced_capability_from_elsewhere_works_for_the_image_root(
        minirun: Tier, caps_tar: Path, names: Callable[[], str], shared_dir: Path) -> None:
    # Revision 3 (what `tar --xattrs` records as a user, or from a user namespace) names the
    # host uid of the root it was set for: 4242 on the machine that made the archive. Here that
    # means nothing; the capability is for the image's root, whoever that is on this host.
    v3 = (0x03000001).to_bytes(4, "little") + CAP_NET_RAW.to_bytes(4, "little") + bytes(12) + \
        (4242).to_bytes(4, "little")
    tar = shared_dir / "v3.tar"
    rewrite(caps_tar, tar, v3)
    image = f"{names()}:v3"
    minirun(["import", str(tar), image], check=0)
    try:
        status = minirun(["run", "--rm", "--network", "none", "--user", "1000", image,
                          "busyboxcap", "cat", "/proc/self/status"], check=0).stdout
        assert cap_eff(status) == CAP_NET_RAW
    finally:
        minirun(["rmi", "-f", image], check=0)


def test_malformed_capability_is_refused(minirun: Tier, caps_tar: Path, shared_dir: Path,
                                         names: Callable[[], str]) -> None:
    tar = shared_dir / "bad.tar"
    rewrite(caps_tar, tar, b"\x01\x00\x00\x09junk")
    result = minirun(["import", str(tar), f"{names()}:bad"], check=125)
    assert "malformed security.capability" in one_line_error(result)


@pytest.fixture(scope="module")
def pushed_caps(busybox_tar: Path, caps_tar: Path, test_netns: str) -> Iterator[str]:
    """busybox, plus a layer holding only /bin/busyboxcap with its capability, in a registry."""
    registry = Registry.start(test_netns)
    work = Path(tempfile.mkdtemp(prefix="minirun-test-caps-oci-"))
    try:
        raw = io.BytesIO()
        with tarfile.open(caps_tar) as src, \
                tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as dst:
            member = src.getmember("./bin/busyboxcap")
            dst.addfile(member, src.extractfile(member))
        layout = Layout(work)
        layout.tag(layout.image([gzip_file(busybox_tar), gzip.compress(raw.getvalue(), mtime=0)],
                                {"Env": [PATH], "Cmd": ["sh"]}), "caps")
        yield registry.push(layout.directory, "caps", "mrtest/caps")
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_pulled_layer_keeps_the_capability(minirun: Tier, pushed_caps: str) -> None:
    minirun(["pull", "-q", pushed_caps], check=0, timeout=120)
    try:
        status = minirun(["run", "--rm", "--network", "none", "--user", "1000", pushed_caps,
                          "busyboxcap", "cat", "/proc/self/status"], check=0).stdout
        assert cap_eff(status) == CAP_NET_RAW, status
    finally:
        minirun(["rmi", "-f", pushed_caps], check=0)


def test_capability_of_a_replaced_file_goes_with_it(minirun: Tier, shared_dir: Path,
                                                    names: Callable[[], str]) -> None:
    # A capable file, then its directory replaced by a symlink to a host directory: the capability
    # is set after extraction, by the same no-follow walk, so it never lands on the host's file.
    victim = shared_dir / "victim"
    victim.write_bytes(b"host file\n")
    victim.chmod(0o666)
    tar = shared_dir / "replaced.tar"
    with tarfile.open(tar, "w", format=tarfile.PAX_FORMAT) as t:
        directory = tarfile.TarInfo("./d")
        directory.type, directory.mode = tarfile.DIRTYPE, 0o755
        t.addfile(directory)
        capable = tarfile.TarInfo("./d/victim")
        capable.size, capable.mode = 4, 0o755
        capable.pax_headers = {CAP_XATTR: v2_net_raw().decode("utf-8", "surrogateescape")}
        t.addfile(capable, io.BytesIO(b"evil"))
        link = tarfile.TarInfo("./d")
        link.type, link.linkname = tarfile.SYMTYPE, str(shared_dir)
        t.addfile(link)
    tar.chmod(0o644)
    image = f"{names()}:replaced"
    result = minirun(["import", str(tar), image], check=0)
    try:
        assert result.stderr == "", result.stderr
        assert victim.read_bytes() == b"host file\n"
        with pytest.raises(OSError):
            os.getxattr(victim, "security.capability")
    finally:
        minirun(["rmi", "-f", image], check=0)
