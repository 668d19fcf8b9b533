#!/bin/bash
# Build a minimal busybox root file system tarball, offline, from the host's static busybox.
#
#   rootfs-images/busybox/build.sh OUT.tar     (a link to minirun/images/busybox-rootfs.sh, which
#                                                `minirun run busybox` also runs on first use)
#   minirun import OUT.tar busybox
#
# The image holds one program, /bin/busybox (statically linked, so no libc or loader is needed
# inside), a symlink to it for every applet it provides (busybox looks at the name it was run
# by, argv[0], to pick the applet), the usual top-level directories, and just enough of /etc
# for `id`, `ls -l`, `su user` and a readable prompt. The tarball is reproducible: same busybox,
# same bytes (sorted names, mtime 0, numeric root owner), so the same image id every time.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 OUT.tar" >&2
    exit 2
fi
out=$1
busybox=/bin/busybox

# Debian's busybox-static is linked statically; the dynamic `busybox` package would need the
# host's libc copied in too.
if [ ! -x "$busybox" ] || ! "$busybox" --list-full >/dev/null 2>&1; then
    echo "$0: no static busybox at $busybox; install it with: apt-get install busybox-static" >&2
    exit 1
fi
if command -v file >/dev/null && ! file -L "$busybox" | grep -q 'statically linked'; then
    echo "$0: $busybox is not statically linked; install it with: apt-get install busybox-static" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs

# Directories. /tmp and /var/tmp are world-writable with the sticky bit (1777: anyone may create,
# only the owner may delete), /root is private. dev, proc and sys stay empty: minirun mounts
# them when the container starts.
install -d -m 0755 "$root"
for dir in bin sbin usr/bin usr/sbin etc dev proc sys home home/user run var var/log; do
    install -d -m 0755 "$root/$dir"
done
install -d -m 1777 "$root/tmp" "$root/var/tmp"
install -d -m 0700 "$root/root"

# The one real program, and one link per applet ("usr/bin/awk", "sbin/ip", ...). Absolute
# link targets are fine: they are resolved inside the container's root.
install -m 0755 "$busybox" "$root/bin/busybox"
"$busybox" --list-full | while read -r applet; do
    case $applet in
        bin/busybox | */ | "") continue ;;  # the program itself; empty names
        */*) ln -s /bin/busybox "$root/$applet" ;;
        *) ;;                                # "linuxrc": the initrd entry point, not wanted here
    esac
done

# Users and groups (passwd(5), group(5)). No /etc/shadow: no account has a password, and
# `su` from root needs none.
cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
daemon:x:1:
bin:x:2:
tty:x:5:
wheel:x:10:root
user:x:1000:
nogroup:x:65534:
GROUP
chmod 0644 "$root/etc/passwd" "$root/etc/group"

# os-release(5): how programs (and people) tell which system they are on.
cat >"$root/etc/os-release" <<'OSRELEASE'
NAME="minirun busybox"
ID=minirun-busybox
PRETTY_NAME="minirun busybox"
HOME_URL="https://busybox.net/"
OSRELEASE

# Read by every login shell (sh -l); shows host:cwd and # for root, $ for others.
cat >"$root/etc/profile" <<'PROFILE'
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
PS1='\h:\w\$ '
export PS1
PROFILE

# Owners come from tar's flags, not from the files here (which belong to whoever runs this):
# everything is root:root, then /home/user is appended as user's (1000:1000).
tar --create --file="$out" --directory="$root" \
    --sort=name --mtime=@0 --numeric-owner --owner=0 --group=0 \
    --exclude=./home/user .
tar --append --file="$out" --directory="$root" \
    --sort=name --mtime=@0 --numeric-owner --owner=1000 --group=1000 \
    ./home/user
echo "$out: $(tar -tf "$out" | wc -l) entries, $(du -h "$out" | cut -f1)"
