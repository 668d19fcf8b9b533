#!/bin/sh
# Lab 00 — "Isolation & namespaces" (seed 000), redone with minirun: lsns, a background nginx,
# its mounts (findmnt -N), nsenter, a debug container in its PID and network namespaces, the
# cgroup and UTS namespaces. Run as root: sh examples/labs/00-isolation-and-namespaces.sh [--step]
. "$(dirname "$0")/lib.sh"
need_debian

step "lsns" "the namespaces of the host, before any container"
say "Every process is in one namespace of each type; NPROCS counts the processes in it." \
    "Most of the host's processes share one set: the namespaces PID 1 was born in (namespaces(7))."
show "lsns -t pid -t net -t mnt | head -5"

WEB=$(container_name web)
step "docker run -d nginx:1.23.1" "minirun run -d: nginx in the background, in new namespaces"
say "-d prints the id and returns; a monitor process waits for the container (minirun/monitor.py)." \
    "Then lsns again: new mnt, uts, ipc, pid, net, cgroup and user namespaces appear; NPROCS counts" \
    "nginx's master and its workers (one per CPU). minirun also makes a user namespace (root inside is an" \
    "unprivileged id outside, user_namespaces(7)), which docker does only with userns-remap."
show "$MINIRUN run -d --name $WEB $IMAGE"
nginx_ready "$WEB"
PID=$(pid_of "$WEB")
show "lsns -p $PID -o NS,TYPE,NPROCS,PID,COMMAND | grep -v ' 1 /'"

step "docker inspect -f '{{.State.Pid}}' objective_fermat" "the container's PID 1, as the host numbers it"
say "The container's PID 1 has another number in the host's PID namespace (pid_namespaces(7))." \
    "/proc/PID/mountinfo lists the mounts of its mount namespace: the root is an overlay whose" \
    "lowerdir is the image's layers (read-only) and upperdir the container's own changes." \
    "The paths are relative: minirun mounted it from inside the container's own directory" \
    "(a 0700 directory that only the container's root may enter), which inspect names."
show "$MINIRUN inspect -f '{{.State.Pid}}' $WEB"
show "grep ' / / ' /proc/$PID/mountinfo | tr ',' '\n' | grep -E '^(lowerdir|upperdir|workdir)='"
show "$MINIRUN inspect -f '{{.GraphDriver.Data.UpperDir}}' $WEB"

step "findmnt -N 27685" "the container's mount table, as a tree"
say "findmnt -N PID reads /proc/PID/mountinfo (findmnt(8)): / is the overlay; /proc, /dev and /sys" \
    "are the container's own; some /proc files are covered or read-only (masked paths, as docker's)."
show "findmnt -N $PID -o TARGET,SOURCE,FSTYPE"

step "nsenter --target 27685 --mount ls /" "walk into the container's mount namespace with the host's nsenter"
say "nsenter(1) calls setns(2) on /proc/PID/ns/mnt, then runs ls: it lists the container's /."
show "nsenter --target $PID --mount ls /"

BOX=$(container_name busybox1)
step "docker run --name busybox1 -d busybox top" "a named busybox container running top"
show "$MINIRUN run --name $BOX -d busybox top"

step "docker inspect -f '{{.State.Pid}}' busybox1" "its PID on the host"
show "$MINIRUN inspect -f '{{.State.Pid}}' $BOX"
BOXPID=$(pid_of "$BOX")

step "nsenter --target 2565 -m -p ps -ef" "ps inside the container's mount and PID namespaces"
say "-m gives ps the container's /proc (mounted by minirun for that PID namespace), -p puts ps in the" \
    "PID namespace: top is PID 1 and ps is the only other process. The user column shows the host's" \
    "view of the container's root: nsenter did not enter the user namespace."
show "nsenter --target $BOXPID -m -p ps -ef"

step "unshare --pid --fork --mount-proc /bin/bash" "the same with the host's unshare: a new PID namespace"
say "--fork: the first child becomes PID 1 (the caller of unshare(2) itself stays outside);" \
    "--mount-proc: a new /proc for the new namespace, else ps would read the host's (unshare(1))." \
    "minirun does the same for every container: clone(CLONE_NEWPID) and a fresh /proc."
show "unshare --pid --fork --mount-proc ps -ef"
show "$MINIRUN run --rm busybox ps -ef"

WS=$(container_name webserver)
step "docker run -d --name webserver nginx" "the web server the next steps debug"
show "$MINIRUN run -d --name $WS $IMAGE"
nginx_ready "$WS"
WSPID=$(pid_of "$WS")

step "docker run -it --name debug --pid=container:webserver raesene/alpine-containertools /bin/bash" \
     "a debug container in the web server's PID namespace"
say "--pid=container:NAME: the new container is cloned into that PID namespace (setns(2) on its" \
    "/proc/PID/ns/pid before clone), so ps sees nginx's master as PID 1 and its workers." \
    "(With -it you would get a shell; here ps runs directly.)"
show "$MINIRUN run --rm --pid=container:$WS $IMAGE ps -ef"

step "docker inspect -f '{{.State.Pid}}' webserver" "the web server's PID"
show "$MINIRUN inspect -f '{{.State.Pid}}' $WS"

step "nsenter --target 2758 -n ip addr" "the container's network, with the host's ip"
say "Only -n: the mount namespace is still the host's, so this is the host's ip program looking at" \
    "the container's network namespace (network_namespaces(7)): lo, and eth0, one end of a veth pair" \
    "whose other end is on minirun's bridge. It works even if the image has no ip at all."
show "nsenter --target $WSPID -n ip addr"

step "docker run -it --name=debug-network --network=container:webserver raesene/alpine-containertools /bin/bash" \
     "a debug container in the web server's network namespace"
say "--network=container:NAME shares the network namespace: the same interfaces and the same sockets," \
    "so ss (netstat's successor) shows nginx listening on port 80, in the other container."
show "$MINIRUN run --rm --network=container:$WS $IMAGE ss -tln"

step "docker run ubuntu:22.04 ls -R /sys/fs/cgroup | wc -l" "a private cgroup namespace sees only its own cgroup"
say "In a new cgroup namespace the container's cgroup is the root (cgroup_namespaces(7)):" \
    "/sys/fs/cgroup shows the container's own cgroup only, a few entries, and /proc/self/cgroup" \
    "shows every path as /. (On a cgroup v1 host minirun mounts no v1 hierarchy: /sys/fs/cgroup" \
    "is empty, and /proc/self/cgroup is what shows the namespace.)"
show "$MINIRUN run --rm $IMAGE sh -c 'ls -R /sys/fs/cgroup | wc -l; cat /proc/self/cgroup'"

step "docker run --cgroupns=host ubuntu:22.04 ls -R /sys/fs/cgroup | wc -l" "the host's cgroup namespace sees the whole tree"
say "--cgroupns=host keeps the host's cgroup namespace: the whole tree, every service's cgroup: far" \
    "more; and /proc/self/cgroup shows the container's real place in the host's tree."
show "$MINIRUN run --rm --cgroupns=host $IMAGE sh -c 'ls -R /sys/fs/cgroup | wc -l; cat /proc/self/cgroup'"

step "docker run --cgroupns=host ubuntu:22.04 ls /sys/fs/cgroup/system.slice/" "what leaks: the host's services"
say "The names of the host's services and other containers' cgroups: information a private" \
    "cgroup namespace hides. (On a host without systemd, the top of the tree shows the same.)"
show "$MINIRUN run --rm --cgroupns=host $IMAGE sh -c 'ls /sys/fs/cgroup/system.slice/ 2>/dev/null || ls /sys/fs/cgroup/' | head"

step "docker run -it ubuntu:22.04 /bin/bash" "a UTS namespace: the container's host name is its id"
say "A new UTS namespace has its own host name (uts_namespaces(7)); minirun sets the container's id" \
    "(12 characters), as docker does; the host's name is unchanged."
show "$MINIRUN run --rm $IMAGE hostname"
show "hostname"

step "docker run --uts=host -it ubuntu:22.04 /bin/bash" "--uts=host: the host's host name"
say "No new UTS namespace: the container sees (and, with CAP_SYS_ADMIN, could change) the host's name."
show "$MINIRUN run --rm --uts=host $IMAGE hostname"
