#!/bin/bash
# PID 1 of the test guest (exec'ed by the image's /sbin/vm-init, which has mounted /proc, /sys
# and the host's 9p share `xfer` on /xfer; tests/vm/build.sh). It sets the guest up
# the way systemd sets up a pure cgroup v2 host, then runs tests/vm/guest-run.sh from the
# checkout the host shares over 9p (tag `xfer`), and powers off. The results go back through
# the same share: xfer/out/{junit.xml,pytest.log,rc}.
#
# A systemd host, as far as the suite can tell (systemd.resource-control(5), cgroup-v2.rst):
#   - cgroup2 alone on /sys/fs/cgroup (the kernel runs with cgroup_no_v1=all), mounted with
#     nsdelegate and memory_recursiveprot, as systemd mounts it;
#   - the controllers switched on at the root: +cpuset +cpu +io +memory +pids;
#   - the test session in a non-root cgroup, as a service: system.slice/mrtests.service;
#   - the test user's user@UID.service (Delegate=yes): the directory and its cgroup.procs,
#     cgroup.subtree_control and cgroup.threads chowned to the user.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
TEST_USER=mrtest

poweroff() {
    sync
    echo o >/proc/sysrq-trigger
    sleep 30
}
trap poweroff EXIT

mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup
mount -t securityfs securityfs /sys/kernel/security  # as systemd does: AppArmor's files (Debian's kernel has it on)
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/lock /run/user
ln -sfn /proc/self/fd /dev/fd
mount -o remount,rw /

# No udev: load what the kernel does not autoload (a module alias for an open device node needs
# the node first). The rest (overlay, veth, bridge, nf_tables ...) modprobe loads on demand.
for m in tun loop; do
    modprobe "$m" || echo "vm-init: cannot load $m"
done
chmod 0666 /dev/net/tun  # what udev does (install.sh does it too)
hostname minirun-vm
# Swap, as most installed hosts have, so memory.swap.max has something to limit.
fallocate -l 256M /swapfile && chmod 600 /swapfile && mkswap -q /swapfile && swapon /swapfile
ip link set lo up

mkdir -p /xfer/out

# --- cgroups, as systemd leaves them ---------------------------------------------------------
cg=/sys/fs/cgroup
echo "+cpuset +cpu +io +memory +pids" >$cg/cgroup.subtree_control
for slice in system.slice user.slice; do
    mkdir -p $cg/$slice
    echo "+cpuset +cpu +io +memory +pids" >$cg/$slice/cgroup.subtree_control
done
uid=$(id -u $TEST_USER)
gid=$(id -g $TEST_USER)
user_slice=$cg/user.slice/user-$uid.slice
mkdir -p "$user_slice/user@$uid.service"
echo "+cpuset +cpu +io +memory +pids" >"$user_slice/cgroup.subtree_control"
delegated=$user_slice/user@$uid.service
chown "$uid:$gid" "$delegated" "$delegated"/cgroup.procs "$delegated"/cgroup.subtree_control \
    "$delegated"/cgroup.threads
# systemd --user lives in init.scope of its delegated tree (a leaf, created by the user).
setpriv --reuid="$uid" --regid="$gid" --init-groups mkdir "$delegated/init.scope"
service=$cg/system.slice/mrtests.service
mkdir -p $service
echo $$ >$service/cgroup.procs

# --- the checkout, leakcheck and the OCI kit, where the suite looks for them -----------------
mkdir -p /work/checkout /work/shared/tools
tar -C /xfer/checkout -cf - . | tar -C /work/checkout -xf -
install -m 755 /xfer/leakcheck /work/shared/tools/leakcheck
cp -a /xfer/oci-validation /work/shared/tools/  # the OCI kit: its rootfs makes test_oci's bundles
# The labs' Debian image, built by the host from the apt mirror (the guest has no network), where
# rootfs-images/debian/build.sh looks for it: the same recipe, so the same cache key. A link, not
# a copy (177 MB through 9p cost 20-30 s of boot); the share is world-readable for mrtest.
mkdir -p /var/cache/minirun/rootfs-images
ln -s /xfer/rootfs-images/*.tar /var/cache/minirun/rootfs-images/ || echo "vm-init: no Debian image from the host"
# Byte-code for the checkout, once (the root tier imports minirun from here, PYTHONPATH).
/opt/minirun/bin/python -m compileall -q -j0 /work/checkout/minirun /work/checkout/tests >/dev/null
echo "vm-init: at $(cut -d" " -f1 /proc/uptime)s: $(uname -r), $(nproc) CPUs, cgroup root controllers: $(cat $cg/cgroup.subtree_control), LSMs: $(cat /sys/kernel/security/lsm 2>/dev/null), AppArmor: $(cat /sys/module/apparmor/parameters/enabled 2>/dev/null || echo none)"

# --- the suite: the whole root and rootless tiers, leakcheck at the end (tests/conftest.py) ----
# VM_SUITE_TIMEOUT (from the kernel command line) interrupts it with SIGINT: junit is still written.
# MINIRUN_TEST_CONCURRENT stays unset: nobody else runs here, so the session's leak check counts.
# MINIRUN_TEST_DELEGATED_CGROUP: where the rootless limits tests find the user's delegated
# subtree (tests/rootless/test_limits_rootless.py), as `systemd-run --user --scope` would.
# MINIRUN_TEST_REQUIRE_V2=1: the cgroup v2 enforcement tests must run here, never skip.
cd /work/checkout
selection=(tests/root tests/rootless)  # by path: some tests there carry no root/rootless mark
[ -s /xfer/selection ] && mapfile -t selection </xfer/selection  # MINIRUN_VM_TESTS on the host
# MINIRUN_VM_SHARD on the host: one rotating shard of the suite plus what always runs
# (tests/conftest.py, select_shard); VM_TIME_BOX (kernel command line, with a shard): the session
# starts no more tests of the shard after that many seconds, so the tier keeps to its budget.
read -r shard rotate < /xfer/shard 2>/dev/null || true
keep=$(cat /xfer/keep 2>/dev/null || true)
env MINIRUN_TEST_DELEGATED_CGROUP="$delegated" MINIRUN_TEST_REQUIRE_V2=1 \
    MINIRUN_TEST_SHARD="${shard:-}" MINIRUN_TEST_SHARD_ROTATE="${rotate:-}" MINIRUN_TEST_SHARD_KEEP="$keep" \
    MINIRUN_TEST_TIME_BOX="${VM_TIME_BOX:-}" \
    timeout -s INT -k 30 "${VM_SUITE_TIMEOUT:-1500}" /opt/minirun/bin/python -m pytest -ra \
    -v -p no:cacheprovider --durations=0 --timeout=300 --junitxml=/xfer/out/junit.xml "${selection[@]}" 2>&1 | tee /xfer/out/pytest.log
echo "${PIPESTATUS[0]}" >/xfer/out/rc
