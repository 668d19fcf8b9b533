#!/bin/sh
# Lab 02 — "Isolation & namespaces" and "nsenter" (seeds 000 and 002), redone with minirun.
# A container runs in the background; from the host we find its PID with `minirun inspect -f`
# and walk into its namespaces with the real nsenter(1). Run as root.
set -eu
MINIRUN=${MINIRUN:-minirun}
NAME=lab02-$$
step() { printf '\n== %s\n' "$*"; }
cleanup() { $MINIRUN rm -f "$NAME" >/dev/null 2>&1 || true; }
trap cleanup EXIT

# minirun has no -d yet: the monitor (`minirun run`) simply runs in the background.
$MINIRUN run --name "$NAME" --hostname webserver busybox sleep 300 &
for _ in $(seq 100); do
    [ "$($MINIRUN inspect -f '{{.State.Status}}' "$NAME" 2>/dev/null)" = running ] && break
    sleep 0.05
done

step "docker inspect -f '{{.State.Pid}}' busybox1"
PID=$($MINIRUN inspect -f '{{.State.Pid}}' "$NAME")
echo "$PID"

step "lsns -p \$PID: the container's namespaces, next to the host's"
lsns -p "$PID" -o NS,TYPE,NPROCS,PID,COMMAND

step "ls -l /proc/\$PID/ns/ vs /proc/self/ns/: different inode numbers, different namespaces"
for ns in mnt uts ipc pid net user cgroup; do
    echo "$ns: host $(readlink /proc/self/ns/$ns)  container $(readlink /proc/$PID/ns/$ns)"
done

step "nsenter --target \$PID --uts hostname"
nsenter --target "$PID" --uts hostname

step "nsenter --target \$PID -m -p ps -ef: the container's processes, with the container's ps"
nsenter --target "$PID" -m -p ps -ef

step "nsenter --target \$PID -n ip addr: the container's network"
nsenter --target "$PID" -n ip addr

step "nsenter --target \$PID --mount ls /: the container's root file system"
nsenter --target "$PID" --mount ls /
