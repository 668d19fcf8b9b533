#!/usr/bin/env bash
# Install minirun on a Debian/Ubuntu host, as root. Idempotent: run it again after a `git pull`.
#
#   ./install.sh          system packages, a venv in /opt/minirun, /usr/local/bin/minirun,
#                         and the offline `busybox` image (built from Debian's busybox-static)
#   ./install.sh --dev    the same, plus what the test suite and benchmarks use
#
# Why a venv from Debian's /usr/bin/python3 and not whatever `python3` is first on PATH:
# the rootless tests run minirun as an unprivileged user, who must be able to read the
# interpreter (a pyenv under /root is not), and start-up time matters: a venv's python starts
# in ~11 ms, a pyenv shim adds over 100 ms (see bench/).
set -euo pipefail
cd "$(dirname "$0")"
PREFIX=${MINIRUN_PREFIX:-/opt/minirun}
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1

if [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root (it installs system packages)" >&2
    exit 1
fi

packages=(python3 python3-venv busybox-static uidmap iproute2 procps util-linux)
if [ "$DEV" = 1 ]; then
    # podman + runc: the exit-code comparison tests run the same cases through podman.
    packages+=(podman runc)
fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ -x "$PREFIX/bin/python" ] || /usr/bin/python3 -m venv "$PREFIX"
extras=""
[ "$DEV" = 1 ] && extras="[dev]"
if [ "$DEV" = 1 ]; then
    # Editable: the tests exercise this checkout, not a copy.
    "$PREFIX/bin/pip" install -q --disable-pip-version-check -e ".$extras"
else
    "$PREFIX/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps .
fi
chmod -R a+rX "$PREFIX"
ln -sf "$PREFIX/bin/minirun" /usr/local/bin/minirun

# The offline default image. Local images are used first, as docker does.
if ! "$PREFIX/bin/minirun" images -q busybox 2>/dev/null | grep -q .; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    rootfs-images/busybox/build.sh "$tmp/busybox.tar"
    "$PREFIX/bin/minirun" import "$tmp/busybox.tar" busybox:latest >/dev/null
fi
echo "minirun installed: $(command -v minirun)"
