#!/bin/sh
# Download the official Alpine minirootfs for this machine, verify it, and import it (seed 001).
#
#   rootfs-images/alpine/fetch.sh [NAME[:TAG]]          (default name: alpine:latest)
#
#   ALPINE_MIRROR   where the release tree is (default https://dl-cdn.alpinelinux.org/alpine);
#                   any mirror, or a local one (http://127.0.0.1:8000), with the same layout:
#                   MIRROR/vX.Y/releases/ARCH/{latest-releases.yaml, FILE, FILE.sha256}
#   ALPINE_VERSION  e.g. 3.16.0 (the seed articles' one); default: the newest release of
#   ALPINE_BRANCH   (default v3.20), as named in that branch's latest-releases.yaml
#   MINIRUN         the minirun command to import with (default: minirun)
#
# The tarball is only imported if its sha256 equals the one in the release's FILE.sha256.
# That file comes from the same mirror: it catches corrupt and truncated downloads and a
# mirror serving the wrong file; against a hostile mirror, compare the sum with the one on
# alpinelinux.org (or check the release's GPG signature, FILE.asc).
set -eu

mirror=${ALPINE_MIRROR:-https://dl-cdn.alpinelinux.org/alpine}
minirun=${MINIRUN:-minirun}
name=${1:-alpine:latest}

# uname -m names -> Alpine's architecture directory names.
case $(uname -m) in
    x86_64) arch=x86_64 ;;
    aarch64 | arm64) arch=aarch64 ;;
    armv7l) arch=armv7 ;;
    armv6l) arch=armhf ;;
    i?86) arch=x86 ;;
    *) arch=$(uname -m) ;;
esac

if [ -n "${ALPINE_VERSION:-}" ]; then
    branch=v${ALPINE_VERSION%.*}
    file=alpine-minirootfs-$ALPINE_VERSION-$arch.tar.gz
else
    branch=${ALPINE_BRANCH:-v3.20}
fi
base=$mirror/$branch/releases/$arch

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp" # `minirun import` may run as another user (MINIRUN=...)

fetch() { curl --fail --silent --show-error --location --connect-timeout 10 -o "$2" "$1"; }

if [ -z "${file:-}" ]; then
    # latest-releases.yaml lists each flavour of the newest release with a `file:` line.
    fetch "$base/latest-releases.yaml" "$tmp/latest-releases.yaml"
    file=$(sed -n 's/^[[:space:]]*file:[[:space:]]*\(alpine-minirootfs-[0-9.]*-[a-z0-9_]*\.tar\.gz\)[[:space:]]*$/\1/p' \
        "$tmp/latest-releases.yaml" | head -n 1)
    if [ -z "$file" ]; then
        echo "fetch.sh: no alpine-minirootfs in $base/latest-releases.yaml" >&2
        exit 1
    fi
fi

echo "fetch.sh: downloading $base/$file" >&2
fetch "$base/$file" "$tmp/$file"
fetch "$base/$file.sha256" "$tmp/$file.sha256"

# FILE.sha256 is `sha256sum` output: "<64 hex digits>  FILE".
expected=$(cut -d ' ' -f 1 "$tmp/$file.sha256")
actual=$(sha256sum "$tmp/$file" | cut -d ' ' -f 1)
if ! printf '%s\n' "$expected" | grep -qx '[0-9a-f]\{64\}'; then
    echo "fetch.sh: $file.sha256 holds no sha256 sum; refusing $file" >&2
    exit 1
fi
if [ "$expected" != "$actual" ]; then
    echo "fetch.sh: $file has sha256 $actual, but $file.sha256 says $expected; refusing it" >&2
    exit 1
fi
echo "fetch.sh: sha256 verified: $actual" >&2

chmod 644 "$tmp/$file"
$minirun import "$tmp/$file" "$name"
