#!/bin/bash
# The labs' Debian image, offline from the apt mirror: nginx, procps, iproute2, iputils-ping (with
# its file capability) and libcap2-bin (getcap/setcap), built with mmdebstrap(1), cached, and
# imported with its Cmd.
#
#   rootfs-images/debian/build.sh [NAME[:TAG]]     build if not cached, import (default debian-lab)
#   rootfs-images/debian/build.sh --tar            build if not cached, print the tarball's path
#
# The cache key is a hash of every input: this script, the suite, the mirror, the packages and
# the architecture. The same inputs reuse the tarball (root: /var/cache/minirun/rootfs-images,
# users: ~/.cache/minirun/rootfs-images); change one and it is built again. The mirror moves on,
# so a rebuild may bring newer package versions: remove the cache directory to refresh.
#
# Why each package: nginx (the articles' web server, `Cmd` below), procps (ps, top: seed 000's
# PID namespace), iproute2 (ip addr, ip route: seed 003), iputils-ping (seed 004's capability
# lesson: /usr/bin/ping carries cap_net_raw=ep, set by its postinst with setcap, so a non-root
# user may ping without setuid), libcap2-bin (getcap, to see that capability; and setcap is what
# iputils-ping's postinst needs to set it at all, else it falls back to setuid root).
set -euo pipefail

SUITE=${DEBIAN_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=(nginx procps iproute2 iputils-ping libcap2-bin)
CMD='CMD ["nginx", "-g", "daemon off;"]'  # nginx in the foreground as PID 1, as docker's nginx image

mode=import
name=debian-lab:latest
case "${1:-}" in
    --tar) mode=tar ;;
    -h | --help) sed -n '2,9p' "$0"; exit 0 ;;
    "") ;;
    *) name=$1 ;;
esac

if ! command -v mmdebstrap >/dev/null; then
    echo "$0: needs mmdebstrap (apt-get install mmdebstrap)" >&2
    exit 1
fi
if [ "$(id -u)" = 0 ]; then
    cache=/var/cache/minirun/rootfs-images
else
    cache=${XDG_CACHE_HOME:-$HOME/.cache}/minirun/rootfs-images
fi
arch=$(dpkg --print-architecture)
key=$( { cat "$0"; echo "$SUITE $MIRROR $arch ${PACKAGES[*]}"; } | sha256sum | cut -c1-16)
tar=$cache/debian-$SUITE-$arch-$key.tar

if [ ! -f "$tar" ]; then
    install -d -m 0755 "$cache"
    tmp=$(mktemp "$cache/.build-XXXXXX.tar")
    trap 'rm -f "$tmp"' EXIT
    # minbase: Essential and apt only, then our packages. As root mmdebstrap builds in a chroot;
    # as a user it uses a user namespace with the user's subordinate ids (mode "unshare").
    # The tarball keeps owners and xattrs, so /usr/bin/ping's security.capability travels in a
    # PAX SCHILY.xattr record that `minirun import` restores (README, "File capabilities").
    # Documentation and man pages are left out (dpkg path-exclude), as in Docker's debian images.
    mmdebstrap --variant=minbase --include="$(IFS=,; echo "${PACKAGES[*]}")" \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --format=tar "$SUITE" "$tmp" "$MIRROR" >&2
    chmod 0644 "$tmp"
    mv "$tmp" "$tar"
    trap - EXIT
fi

if [ "$mode" = tar ]; then
    echo "$tar"
else
    minirun import --change "$CMD" --change 'EXPOSE 80' "$tar" "$name"
fi
