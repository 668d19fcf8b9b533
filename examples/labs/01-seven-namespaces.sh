#!/bin/sh
# Lab 01 — "Linux namespaces to understand containerization" (seed 001), redone with minirun.
# nginx with a published port, lsns and nsenter on it, then the seven namespaces one by one: the
# article's unshare command on the host, and the minirun container that does the same.
# Run as root: sh examples/labs/01-seven-namespaces.sh [--step]
. "$(dirname "$0")/lib.sh"
need_debian

WEB=$(container_name nginx)
step "docker run -d --name nginx -p 8080:80 nginx" "nginx in the background, its port 80 published on the host's 8080"
say "-p 8080:80: minirun forwards the host's port 8080 to port 80 in the container's network" \
    "namespace (a DNAT rule in nftables; minirun/network/). curl on the host reaches nginx."
show "$MINIRUN run -d --name $WEB -p 8080:80 $IMAGE"
nginx_ready "$WEB"
show "curl -sS --head --retry 20 --retry-connrefused --retry-delay 0 http://127.0.0.1:8080/ | head -1"

step "docker ps" "the running containers"
show "$MINIRUN ps --filter name=$WEB"
PID=$(pid_of "$WEB")

step "lsns -p 1627489" "the namespaces of nginx's master process"
say "Seven types here are the container's own (NPROCS: the master and its workers); time is" \
    "still the host's (minirun, like docker, makes no time namespace: time_namespaces(7))."
show "lsns -p $PID -o NS,TYPE,NPROCS,PID,COMMAND"

step "nsenter --target 1627489 --uts hostname" "the container's host name: its id"
show "nsenter --target $PID --uts hostname"

step "nsenter --target 1627489 --net ip addr" "the container's interfaces"
say "lo, and eth0: the container's end of a veth pair (veth(4)) whose peer is on minirun's bridge."
show "nsenter --target $PID --net ip addr"

step "nsenter -t 1627489 --net ip route" "its routing table: the default route goes to the bridge"
show "nsenter -t $PID --net ip route"

step "docker inspect b137f6af4137 | jq .[].NetworkSettings.IPAddress" "the address minirun gave it"
say "minirun inspect prints docker's JSON, so jq works the same; -f picks one field."
show "$MINIRUN inspect $WEB | jq '.[].NetworkSettings.IPAddress'"

step "unshare chroot busybox-without-pid sh" "chroot without a PID namespace: every host process shows"
say "chroot(2) only changes what / means. Once proc is mounted, ps lists every process of the host:" \
    "no PID namespace. (--mount keeps that proc mount out of the host's mount table.)"
busybox_rootfs "$SCRATCH/busybox-without-pid"  # as the next step makes one, with export
show "unshare --mount chroot $SCRATCH/busybox-without-pid sh -c 'ps aux | wc -l; mount -t proc proc /proc; ps aux | wc -l'"

ROOTFS="$SCRATCH/busybox"
step "docker export \$(docker create busybox) | tar -C busybox -xvf -" "a busybox root file system, from a container"
say "create makes a container without starting it; export writes its file system as a tar."
show "mkdir $ROOTFS && id=\$($MINIRUN create busybox true) && $MINIRUN export \$id | tar -C $ROOTFS -xf - && $MINIRUN rm \$id"
show "ls $ROOTFS"

step "unshare --pid --fork chroot busybox sh" "with a PID namespace: sh is PID 1, alone"
say "--pid --fork: sh is PID 1 of a new PID namespace; a proc mounted there shows only its processes."
show "unshare --pid --fork --mount chroot $ROOTFS sh -c 'mount -t proc proc /proc; ps aux'"
show "$MINIRUN run --rm busybox sh -c 'echo \"my pid: \$\$\"; ps aux'"

step "unshare --net ip a" "a new network namespace has only lo, and lo is down"
say "A new network namespace starts with one device, lo, DOWN (network_namespaces(7))." \
    "minirun brings lo up in every container, and on its default network adds eth0 too;" \
    "--network none leaves lo alone."
show "unshare --net ip a"
show "$MINIRUN run --rm --network none busybox ip addr"
show "$MINIRUN run --rm busybox ip addr"

step "unshare --uts hostname" "a new UTS namespace starts with a copy of the host name"
show "unshare --uts hostname"

step "unshare --uts sh" "a host name changed inside stays inside"
say "sethostname(2) changes the name of the caller's UTS namespace only (uts_namespaces(7))."
show "unshare --uts sh -c 'hostname foo; hostname'"
show "hostname"
show "$MINIRUN run --rm --hostname foo busybox hostname"

step "unshare -U" "a user namespace without a map: everybody is nobody"
say "Until /proc/PID/uid_map is written, no id maps: the kernel shows the overflow id 65534" \
    "(user_namespaces(7), /proc/sys/kernel/overflowuid)."
show "unshare -U id"

step "unshare --user --map-root-user" "root inside, mapped to the caller outside"
say "uid_map lines read: first id inside, first id outside, how many. unshare maps one id;" \
    "minirun maps 65536 of root's subordinate ids (/etc/subuid), so root inside is no one outside."
show "unshare --user --map-root-user sh -c 'id; cat /proc/self/uid_map'"
show "$MINIRUN run --rm busybox sh -c 'id; cat /proc/self/uid_map'"

step "unshare --user --map-current-user" "the caller's own id, mapped to itself"
say "The same id inside and outside; minirun's equivalent is --user with the id you want inside."
show "unshare --user --map-current-user sh -c 'id -u; cat /proc/self/uid_map'"
show "$MINIRUN run --rm --user 1000:1000 busybox id"

step "unshare --mount chroot testrootfs sh" "mounts made in a new mount namespace stay in it"
say "A bind mount made inside is in the new namespace's mount table only (mount_namespaces(7));" \
    "the host does not see it. minirun's -v does such a bind, in the container's namespace."
show "unshare --mount chroot $ROOTFS sh -c 'mount -t proc proc /proc; mkdir -p src dest; touch src/hello; mount --bind src dest; mount | grep dest; ls dest'"
show "grep -c '$ROOTFS/dest' /proc/self/mountinfo || true"
show "$MINIRUN run --rm -v $ROOTFS/src:/dest busybox ls /dest"

step "ipcmk -M 1024" "a System V shared memory segment on the host"
show "shm=\$(ipcmk -M 1024 | awk '{print \$NF}') && echo \"host segments: \$(tail -n +2 /proc/sysvipc/shm | wc -l)\""

step "unshare --ipc ipcs" "a new IPC namespace does not see it"
say "System V IPC objects belong to an IPC namespace (ipc_namespaces(7)): the segment is invisible inside."
show "unshare --ipc ipcs -m"
show "$MINIRUN run --rm busybox sh -c 'echo \"container segments: \$(tail -n +2 /proc/sysvipc/shm | wc -l)\"'"
show "ipcrm -m \$shm"

step "cgroup namespace (cgroup_namespaces(7))" "the container's cgroup is its cgroup root"
say "/proc/self/cgroup shows the path relative to the namespace's root: just /."
show "$MINIRUN run --rm busybox cat /proc/self/cgroup"
