#!/bin/sh
# Lab 01 — "Linux namespaces to understand containerization" (seed 001), redone with minirun.
# Each step runs the article's command in a minirun container and shows what the namespace hides.
# Run as root (or as a user after the README's rootless set-up): sh examples/labs/01-seven-namespaces.sh
set -eu
MINIRUN=${MINIRUN:-minirun}
step() { printf '\n== %s\n' "$*"; }

step "PID namespace: the shell is PID 1 and ps sees only the container (article: unshare --pid --fork)"
$MINIRUN run --rm busybox sh -c 'echo "my pid: $$"; ps'

step "Network namespace: only lo, which minirun brought up (article: unshare --net ip a)"
$MINIRUN run --rm busybox ip addr

step "UTS namespace: a hostname of its own; the host's is unchanged (article: unshare --uts)"
$MINIRUN run --rm --hostname foo busybox hostname
echo "host: $(hostname)"

step "User namespace: root inside, mapped to an id outside (article: unshare --user --map-root-user)"
$MINIRUN run --rm busybox sh -c 'id; cat /proc/self/uid_map'

step "Mount namespace: the container's mounts are its own (article: unshare --mount chroot testrootfs)"
$MINIRUN run --rm busybox sh -c 'mount | head -4'
echo "host mounts of the container's overlay: $(grep -c ' overlay ' /proc/self/mountinfo || true)"

step "IPC namespace: a System V segment made on the host is invisible inside (article: ipcmk -M; unshare --ipc ipcs)"
if command -v ipcmk >/dev/null; then
    id=$(ipcmk -M 1024 | awk '{print $NF}')
    echo "host segments: $(tail -n +2 /proc/sysvipc/shm | wc -l)"
    $MINIRUN run --rm busybox sh -c 'echo "container segments: $(tail -n +2 /proc/sysvipc/shm | wc -l)"'
    ipcrm -m "$id"
fi

step "cgroup namespace: the container's cgroup is its root (article: cgroup_namespaces(7))"
$MINIRUN run --rm busybox cat /proc/self/cgroup
