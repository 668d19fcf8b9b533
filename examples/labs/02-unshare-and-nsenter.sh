#!/bin/sh
# Lab 02 — "Namespaces; unshare; nsenter; sharing a namespace" (seed 002), redone with minirun.
# A "db" container runs in the background; nsenter walks into it; a "web" container joins its
# network namespace (--net=container:db) and /proc/PID/ns shows they share one.
# Run as root: sh examples/labs/02-unshare-and-nsenter.sh [--step]
. "$(dirname "$0")/lib.sh"
need_debian

step "unshare --help" "unshare(1): run a program with some namespaces unshared from the parent"
say "One flag per namespace type; it calls unshare(2) with the matching CLONE_NEW* flags, then execs."
show "unshare --help | sed -n '/^Usage/,/--mount-proc/p'"

step "unshare --fork --pid --mount-proc bash" "a shell alone in a new PID namespace"
say "The article types ps and exit in that shell; here ps runs directly. It is PID 1, and ps sees" \
    "only itself and its parent, because --mount-proc mounted a /proc for the new namespace."
show "unshare --fork --pid --mount-proc sh -c 'ps -o pid,comm'"

DB=$(container_name db)
step "ls -lha /proc/\$DBPID/ns/" "a db container, and its namespaces as files"
say "Each /proc/PID/ns/TYPE is a handle to a namespace; the number in brackets is its inode:" \
    "two processes are in the same namespace exactly when those numbers match (namespaces(7))."
show "$MINIRUN run -d --name $DB busybox sleep 300"
DBPID=$(pid_of "$DB")
show "ls -l /proc/$DBPID/ns/"

step "nsenter --help" "nsenter(1): run a program in the namespaces of another process"
show "nsenter --help | sed -n '/^Usage/,/--pid/p'"

step "nsenter --target \$DBPID --mount --uts --ipc --net --pid ps aux" "ps inside db's namespaces"
say "setns(2) into each namespace, then ps: the container's own ps (its mount namespace) sees its" \
    "PID namespace: sleep is PID 1."
show "nsenter --target $DBPID --mount --uts --ipc --net --pid ps aux"

WEB=$(container_name web)
step "docker run -d --name=web --net=container:db nginx:alpine" "web joins db's network namespace"
say "--net=container:db: web is cloned without a new network namespace and joins db's instead" \
    "(setns(2) before clone; minirun/sharing.py). Everything else is web's own."
show "$MINIRUN run -d --name=$WEB --net=container:$DB $IMAGE"
nginx_ready "$WEB"
show "WEBPID=\$($MINIRUN inspect -f '{{.State.Pid}}' $WEB)"
WEBPID=$(pid_of "$WEB")
show "echo nginx is \$WEBPID"
say "/proc/PID/cgroup: the container's own cgroup (minirun's, named after its id); on cgroup v2" \
    "one line 0::/PATH, on v1 one line per hierarchy."
show "cat /proc/\$WEBPID/cgroup"

step "ls -lha /proc/\$WEBPID/ns/ | grep net" "the same net inode for both: one namespace"
say "web's mnt, uts, ipc, pid differ from db's; net is the same inode."
show "ls -l /proc/$WEBPID/ns/ | grep net"
show "ls -l /proc/$DBPID/ns/ | grep net"
