#!/usr/bin/env bash
# Build (or find in the cache) the pure cgroup v2 test guest: Debian 12 with Debian's own kernel.
#
#   tests/vm/build.sh            prints the directory holding vmlinuz, initrd.cpio and rootfs.img
#
# What a learner's or a CI runner's host is: Debian 12 / Ubuntu 22.04+ with only the unified
# cgroup hierarchy. This machine is a hybrid host, so the guest is where the v2 driver meets
# real v2 controllers (issue 10; tests/vm/test_guest.py boots it and runs the suite inside).
#
#   vmlinuz      the kernel of the package linux-image-amd64 depends on, unpacked with
#                dpkg-deb -x (never installed on this host)
#   initrd.cpio  a tiny busybox initramfs: there is no udev, so it loads the virtio and ext4
#                modules by hand, mounts the disk and switches to it. (The root is a real ext4
#                disk, not the initramfs: pivot_root(2) refuses the initramfs root, and Linux
#                6.1 cannot idmap tmpfs, so /var must be on a disk file system anyway.)
#   rootfs.img   ext4: `mmdebstrap --variant=minbase` with the packages install.sh installs
#                (read from install.sh itself, so the two lists cannot drift apart), the
#                kernel's modules (modprobe works, so the kernel autoloads overlay, veth, ...),
#                a copy of this host's /opt/minirun venv (the same Debian 12 python 3.11), the
#                test user mrtest, and /sbin/vm-init as PID 1: it mounts the host's 9p share
#                and runs tests/vm/guest-init.sh from the checkout there (so changing what the
#                guest does needs no new image).
#
# The result is cached under $MINIRUN_VM_CACHE (default /var/cache/minirun-vm), keyed by a hash
# of every input: this script, install.sh's package lines, the kernel package's
# version, the venv's packages and the static busybox. A changed input builds a new guest; older
# ones are removed. Needs root (mmdebstrap's root mode, chown) and the packages install.sh --dev
# installs (mmdebstrap, cpio, qemu-system-x86, e2fsprogs).
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tests/vm
CACHE=${MINIRUN_VM_CACHE:-/var/cache/minirun-vm}
SUITE=bookworm
MIRRORS=("deb http://deb.debian.org/debian $SUITE main"
         "deb http://deb.debian.org/debian $SUITE-updates main"
         "deb http://deb.debian.org/debian-security $SUITE-security main")
TEST_USER=mrtest
TEST_UID=1001
VENV=${MINIRUN_PREFIX:-/opt/minirun}

log() { echo "vm-build: $*" >&2; }

# --- the inputs and their hash ---------------------------------------------------------------

# The guest gets what install.sh installs (and --dev adds): its `packages=(...)` lines, as bash.
eval "$(grep -E '^[[:space:]]*packages\+?=\(' install.sh | grep -v vm_packages)"
packages+=(kmod e2fsprogs ca-certificates)
kernel_pkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1)
kernel_version=$(apt-cache show "$kernel_pkg" | sed -n 's/^Version: //p' | head -1)
[ -n "$kernel_pkg" ] && [ -n "$kernel_version" ] || { log "cannot find the kernel package (apt-get update?)"; exit 1; }
[ -x "$VENV/bin/python" ] || { log "no venv at $VENV: run ./install.sh --dev first"; exit 1; }

key=$( {
    cat "$here/build.sh"
    printf '%s\n' "${packages[@]}" "$kernel_pkg=$kernel_version" "${MIRRORS[@]}"
    "$VENV/bin/python" -m pip freeze --disable-pip-version-check --exclude-editable 2>/dev/null
    sha256sum /bin/busybox
} | sha256sum | cut -c1-16)
out=$CACHE/$key
if [ -f "$out/done" ]; then
    echo "$out"
    exit 0
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9  # one builder at a time; a second one waits, then finds the result
if [ -f "$out/done" ]; then
    echo "$out"
    exit 0
fi
start=$(date +%s)
work=$(mktemp -d "$CACHE/.build-XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- the kernel: Debian's, unpacked, never installed --------------------------------------------

log "kernel $kernel_pkg $kernel_version"
(cd "$work" && apt-get download -q "$kernel_pkg=$kernel_version" >/dev/null 2>&1) \
    || (cd "$work" && apt-get download "$kernel_pkg=$kernel_version")
dpkg-deb -x "$work"/"$kernel_pkg"_*.deb "$work/kernel"
kver=${kernel_pkg#linux-image-}
depmod -b "$work/kernel" "$kver"
cp "$work/kernel/boot/vmlinuz-$kver" "$work/vmlinuz"

# --- the initramfs: busybox, the modules to reach the disk, an /init ---------------------------

init=$work/initramfs
mkdir -p "$init"/{bin,dev,proc,sys,newroot,lib/modules}
cp /bin/busybox "$init/bin/busybox"
for applet in sh mount umount insmod switch_root sleep echo mkdir cat; do
    ln -s busybox "$init/bin/$applet"
done
# No udev in the guest: the modules the disk needs, in dependency order (modprobe resolves it).
boot_modules=(virtio_pci virtio_blk ext4 crc32c_generic)
: >"$init/modules"
for m in "${boot_modules[@]}"; do
    modprobe -d "$work/kernel" -S "$kver" --show-depends "$m" | while read -r kind path _; do
        [ "$kind" = insmod ] || continue
        name=$(basename "$path")
        grep -qx "/lib/modules/$name" "$init/modules" && continue
        cp "$path" "$init/lib/modules/$name"  # (modprobe -d prints the path with the base)
        echo "/lib/modules/$name" >>"$init/modules"
    done
done
cat >"$init/init" <<'EOF'
#!/bin/sh
# PID 1 of the initramfs: load the disk's modules (no udev), mount it, switch to it.
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
while read -r m; do insmod "$m" 2>/dev/null; done < /modules
for i in $(seq 1 50); do [ -b /dev/vda ] && break; sleep 0.1; done
mount -t ext4 -o rw /dev/vda /newroot || { echo "vm: cannot mount /dev/vda"; sleep 2; echo o > /proc/sysrq-trigger; }
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/vm-init
EOF
chmod 755 "$init/init"
ln -s busybox "$init/bin/seq"
(cd "$init" && find . | sort | cpio -o -H newc --quiet) >"$work/initrd.cpio"

# --- the root file system ----------------------------------------------------------------------

log "rootfs: mmdebstrap $SUITE with ${#packages[@]} packages"
root=$work/root
include=$(IFS=,; echo "${packages[*]}")
mmdebstrap --quiet --variant=minbase --include="$include" \
    --aptopt='Acquire::Languages "none"' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    "$SUITE" "$root" "${MIRRORS[@]}"
mkdir -p "$root/lib/modules"
cp -a "$work/kernel/lib/modules/$kver" "$root/lib/modules/"
# The host's venv, at the same path: same Debian 12 python 3.11, so it runs as is.
mkdir -p "$root$(dirname "$VENV")"
cp -a "$VENV" "$root$VENV"
# Byte-code, compiled once here: python under TCG is 4-5x slower, and every `minirun` and test
# process would otherwise compile what it imports again (stdlib, pytest, pyroute2 ...).
chroot "$root" /usr/bin/python3 -m compileall -q /usr/lib/python3 /usr/lib/python3.11 "$VENV/lib" \
    >/dev/null || true
chroot "$root" ln -sf "$VENV/bin/minirun" /usr/local/bin/minirun
# What install.sh does besides packages: root's subordinate range, /dev/net/tun mode (at boot).
echo "root:1000000:65536" >>"$root/etc/subuid"
echo "root:1000000:65536" >>"$root/etc/subgid"
# The rootless tier's user, as the suite would create it (tests/conftest.py), fixed uid.
chroot "$root" useradd -m -u "$TEST_UID" -s /bin/sh "$TEST_USER"
chroot "$root" usermod --add-subuids 100000-165535 --add-subgids 100000-165535 "$TEST_USER"
# podman without systemd: cgroupfs and a file event log (a host without systemd configures the same).
mkdir -p "$root/etc/containers"
cat >"$root/etc/containers/containers.conf" <<'EOF'
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
echo minirun-vm >"$root/etc/hostname"
printf '127.0.0.1 localhost\n::1 localhost\n127.0.1.1 minirun-vm\n' >"$root/etc/hosts"
cat >"$root/sbin/vm-init" <<'EOF'
#!/bin/sh
# PID 1: reach the host's share (no udev: load 9p by hand), run the checkout's guest-init.sh.
mount -t proc proc /proc
mount -t sysfs sys /sys
modprobe 9pnet_virtio && modprobe 9p
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 xfer /xfer
exec /bin/bash /xfer/checkout/tests/vm/guest-init.sh
EOF
chmod 755 "$root/sbin/vm-init"
mkdir -p "$root/xfer" "$root/work"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

# The disk: the tree plus room for images, layers and podman's storage.
size_mb=$(( $(du -sm "$root" | cut -f1) + 3072 ))
mkfs.ext4 -q -F -L guestroot -d "$root" "$work/rootfs.img" "${size_mb}M" >&2

mkdir -p "$out"
mv "$work/vmlinuz" "$work/initrd.cpio" "$work/rootfs.img" "$out/"
echo "$kernel_pkg $kernel_version built in $(( $(date +%s) - start ))s" >"$out/done"
# Older guests are garbage: only the current inputs matter.
for old in "$CACHE"/[0-9a-f]*/; do
    [ "${old%/}" = "$out" ] || rm -rf "${old%/}"
done
log "$(cat "$out/done")"
echo "$out"
