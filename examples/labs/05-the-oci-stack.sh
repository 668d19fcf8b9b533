#!/bin/sh
# Lab 05 — the layers of the container stack: one container started by minirun alone, then the
# same image under podman with minirun as its OCI runtime (engine -> conmon -> runtime -> kernel),
# what each layer did (`minirun run --explain`, and `minirun-oci --explain` under podman), then
# the runtime by hand, verb by verb, as conmon drives it.
# Run as root: sh examples/labs/05-the-oci-stack.sh   (needs podman; README "minirun as an OCI runtime")
set -eu
MINIRUN=${MINIRUN:-minirun}
MINIRUN_OCI=${MINIRUN_OCI:-minirun-oci}
step() { printf '\n== %s\n' "$*"; }
work=$(mktemp -d)
name=lab-oci-$$
cleanup() {
    podman rm -f -t 0 "$name" >/dev/null 2>&1 || true
    podman rmi -f localhost/lab-oci-busybox >/dev/null 2>&1 || true
    $MINIRUN_OCI --root "$work/state" delete --force lab1 >/dev/null 2>&1 || true
    $MINIRUN rm -f "$name" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
# podman 4.3 (Debian 12) races its own cleanup process: `podman rm -f` of a running container
# fails about one time in ten with "unlinkat .../userdata/shm: device or resource busy", with
# runc as with minirun-oci (podman issue #11594, fixed in podman 4.4). A second rm succeeds.
podman_rm() { podman rm -f -t 0 "$1" >/dev/null 2>&1 || podman rm -f "$1" >/dev/null; }

step "minirun alone: one program is engine, monitor and runtime (minirun run)"
$MINIRUN run --rm --network none busybox sh -c 'echo "pid $$, $(hostname), caps $(grep CapEff /proc/self/status)"'

step "minirun run --explain: every step minirun took, as it happened (minirun/explain.py)"
$MINIRUN run --rm --explain --network none busybox true 2>&1

step "The same image for podman (minirun export | podman import)"
$MINIRUN create --name "$name" busybox true >/dev/null
$MINIRUN export "$name" | podman import --change 'CMD=["sh"]' - localhost/lab-oci-busybox >/dev/null 2>&1
$MINIRUN rm "$name" >/dev/null
echo "imported localhost/lab-oci-busybox"

step "podman -> conmon -> minirun-oci: every call the runtime gets is logged"
# The runtime is a path; this one logs its argv, then runs minirun-oci.
printf '#!/bin/sh\necho "$*" >> %s/calls\nexec %s "$@"\n' "$work" "$MINIRUN_OCI" > "$work/runtime"
chmod +x "$work/runtime"
podman --runtime "$work/runtime" run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
    localhost/lab-oci-busybox sh -c 'echo "pid $$, $(hostname), caps $(grep CapEff /proc/self/status)"; exit 3' \
    || echo "exit code $? (the program's 3, through conmon and podman)"
echo "what the runtime was asked (the long ids shortened):"
sed -E 's/[0-9a-f]{64}/ID/g; s#/var/lib/containers/[^ ]*#BUNDLE#; s#/run/containers/[^ ]*#RUNDIR/pidfile#' "$work/calls"

step "Who is the container's parent? conmon, the subreaper, not the runtime (it has exited)"
podman --runtime "$work/runtime" run -d --name "$name" --network none --ulimit nofile=1024:1024 \
    --ulimit nproc=1024:1024 localhost/lab-oci-busybox sleep 60 >/dev/null
pid=$(podman inspect -f '{{.State.Pid}}' "$name")
echo "container pid $pid, parent: $(ps -o comm= -p "$(ps -o ppid= -p "$pid" | tr -d ' ')")"
podman_rm "$name"

step "The runtime's side under podman: --runtime-flag explain=FILE (minirun-oci --explain)"
# podman puts "--" before each --runtime-flag, so every call conmon and podman make is
# `minirun-oci --explain=FILE VERB ...`: create and start narrate what they do, with the real
# values, into FILE. A user namespace (--uidmap) and a cgroup namespace of its own, to see them.
short() { sed -E 's/[0-9a-f]{64}/ID/g'; }
podman --runtime "$work/runtime" --runtime-flag "explain=$work/explain" run -d --name "$name" \
    --network none --cgroupns private --uidmap 0:300000:65536 --gidmap 0:300000:65536 \
    --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 localhost/lab-oci-busybox sleep 60 >/dev/null
pid=$(podman inspect -f '{{.State.Pid}}' "$name")
echo "podman says: pid $pid, cgroup $(podman inspect -f '{{.State.CgroupPath}}' "$name")" | short
echo "the kernel says: uid_map $(tr -s ' ' < "/proc/$pid/uid_map" | sed 's/^ //')"
echo "what minirun-oci narrated ($work/explain, the long ids shortened):"
short < "$work/explain"
podman_rm "$name"

step "The runtime by hand: a bundle, then create / state / start / state / delete"
mkdir -p "$work/bundle/rootfs"
$MINIRUN create --name "$name" busybox true >/dev/null
$MINIRUN export "$name" | tar -x -C "$work/bundle/rootfs"
$MINIRUN rm "$name" >/dev/null
$MINIRUN_OCI spec --bundle "$work/bundle"
sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"sleep", "30"/' "$work/bundle/config.json"
oci() { $MINIRUN_OCI --root "$work/state" "$@"; }
oci create --bundle "$work/bundle" lab1 > /dev/null 2>&1
echo "after create: $(oci state lab1 | grep '"status"')  (the process waits at ROOT/lab1/exec.fifo)"
oci start lab1
echo "after start:  $(oci state lab1 | grep '"status"')"
oci kill lab1 KILL
sleep 1
echo "after kill:   $(oci state lab1 | grep '"status"')"
oci delete lab1
echo "after delete: $(oci state lab1 2>&1)"
