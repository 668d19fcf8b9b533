#!/usr/bin/env bash
# Install minirun on a Debian/Ubuntu host, as root. Idempotent: run it again after a `git pull`.
#
#   ./install.sh          system packages, a venv in /opt/minirun, /usr/local/bin/minirun,
#                         and the offline `busybox` image (built from Debian's busybox-static)
#   ./install.sh --dev    the same, plus what the test suite and benchmarks use
#
# As root, or as a user with sudo (it asks for it). Debian 12 or Ubuntu 24.04 (Python 3.11+).
#
# Why a venv from Debian's /usr/bin/python3 and not whatever `python3` is first on PATH:
# the rootless tests run minirun as an unprivileged user, who must be able to read the
# interpreter (a pyenv under /root is not), and start-up time matters: a venv's python starts
# in ~11 ms, a pyenv shim adds over 100 ms (see bench/).
set -euo pipefail
cd "$(dirname "$0")"
PREFIX=${MINIRUN_PREFIX:-/opt/minirun}
DEV=0
case "${1:-}" in
    "") ;;
    --dev) DEV=1 ;;
    *) echo "usage: ./install.sh [--dev]" >&2; exit 2 ;;
esac

# It installs system packages, so it runs as root: in a root shell as it is (a fresh Debian has
# no sudo), from a user account through sudo, which it asks for itself.
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then
        exec sudo "$0" "$@"
    fi
    echo "install.sh: run it as root (su -c $0; there is no sudo here)" >&2
    exit 1
fi

packages=(python3 python3-venv busybox-static uidmap iproute2 procps util-linux libseccomp2)
# Networking: nft for the bridge network's NAT and published ports, slirp4netns for rootless.
packages+=(nftables slirp4netns)
if [ "$DEV" = 1 ]; then
    # podman + runc: the exit-code comparison tests run the same cases through podman.
    # catatonit: podman's --init (a Recommends, which a minimal install such as the VM guest skips).
    packages+=(podman runc catatonit)
    # The pull tests: a real registry (CNCF distribution), skopeo to push to it, htpasswd (bcrypt).
    packages+=(docker-registry skopeo apache2-utils curl)
    # gcc + libc6-dev: the escape tests build a small static probe (tests/escape_probe.c).
    packages+=(gcc libc6-dev)
    # crun + bubblewrap: the other rows of the start-up benchmark (bench/startup.py).
    packages+=(crun bubblewrap)
    # libcap2-bin: setcap/getcap, for the file capability tests (tests/root/test_file_caps.py).
    packages+=(libcap2-bin)
    # mmdebstrap: the labs' Debian image, built offline from the apt mirror (rootfs-images/debian).
    # jq: the labs pipe `minirun inspect` through it, as docker's users do (examples/labs).
    packages+=(mmdebstrap jq)
    # The VM tier (tests/vm): qemu boots a pure cgroup v2 Debian guest that mmdebstrap builds;
    # cpio packs its initramfs, kmod (depmod, modprobe) finds the kernel modules it needs,
    # e2fsprogs makes its disk. A list of their own: tests/vm/build.sh gives the guest the others.
    vm_packages=(qemu-system-x86 mmdebstrap cpio kmod e2fsprogs)
    packages+=("${vm_packages[@]}")
fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    # With recommends: podman's (catatonit, fuse-overlayfs, ...) are what the tests ran with.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Rootful containers run with root remapped to unprivileged host ids (minirun/userns.py,
# minirun/idranges.py): reserve root's ranges in /etc/subuid and /etc/subgid, so no user is ever
# given the same ids. The first 65536 are --userns=shared's (the labs'); each container's range of
# its own (--userns=auto, the default) comes from the rest: 22767 ranges of 65536 above useradd's
# (minirun uses the same default without the line; `minirun doctor` says which it uses).
for f in /etc/subuid /etc/subgid; do
    grep -q '^root:' "$f" 2>/dev/null || echo "root:1000000:65536" >> "$f"
    if [ "$(awk -F: '$1 == "root" { n += $3 } END { print n + 0 }' "$f")" -le 65536 ]; then
        echo "root:655360000:1492058112" >> "$f"
        echo "install.sh: added root:655360000:1492058112 to $f (per-container id ranges)" >&2
    fi
done

[ -x "$PREFIX/bin/python" ] || /usr/bin/python3 -m venv "$PREFIX"
extras="[zstd]"
[ "$DEV" = 1 ] && extras="[dev,zstd]"
if [ "$DEV" = 1 ]; then
    # Editable: the tests exercise this checkout, not a copy.
    "$PREFIX/bin/pip" install -q --disable-pip-version-check -e ".$extras" --config-settings editable_mode=compat
    # pip compiles byte-code for a normal install, not an editable one; without it (and with
    # PYTHONDONTWRITEBYTECODE, as CI machines often set) each start compiles every module: ~45 ms.
    "$PREFIX/bin/python" -m compileall -q minirun >/dev/null
else
    "$PREFIX/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps .
    # The dependencies (pyproject.toml): pyseccomp compiles seccomp profiles; the extra
    # zstandard reads zstd-compressed layers.
    "$PREFIX/bin/pip" install -q --disable-pip-version-check ".$extras"
fi
# Signals during the interpreter's own start-up (issue 12): minirun's handlers from the first
# .pth file that site reads (minirun/early-signals.pth says why), not only once the package loads.
site_packages=$("$PREFIX/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cp minirun/early-signals.pth "$site_packages/00-minirun-early-signals.pth"
chmod -R a+rX "$PREFIX"

# slirp4netns (rootless networking) opens /dev/net/tun as the user. udev makes it 0666 on a
# normal system (creating a tap still needs CAP_NET_ADMIN in a network namespace); containers
# and minimal images without udev may leave it 0600.
if [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
    chmod 0666 /dev/net/tun
fi
ln -sf "$PREFIX/bin/minirun" /usr/local/bin/minirun
ln -sf "$PREFIX/bin/minirun-oci" /usr/local/bin/minirun-oci  # the OCI runtime (README, "minirun as an OCI runtime")

# The offline default image. Local images are used first, as docker does.
if ! "$PREFIX/bin/minirun" images -q busybox 2>/dev/null | grep -q .; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    rootfs-images/busybox/build.sh "$tmp/busybox.tar"
    "$PREFIX/bin/minirun" import "$tmp/busybox.tar" busybox:latest >/dev/null
fi
echo "minirun installed: $(command -v minirun)"
