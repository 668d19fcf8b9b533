#!/bin/sh
# Lab 04 — "Troubleshooting containers" (seed 004), redone with minirun: export -> chroot vs
# pivot_root, ping and file capabilities, mount propagation, nginx inspected from the host
# (findmnt, nsenter, exec), debug containers in its namespaces, seccomp, and PID 1's signals.
# Run as root: sh examples/labs/04-troubleshooting-containers.sh [--step]
. "$(dirname "$0")/lib.sh"
need_debian
ROOTFS="$SCRATCH/rootfs"

BUSY=$(container_name busyback)
step "docker run -it --name busyback alpine:latest true" "a container that ran and exited"
show "$MINIRUN run --name $BUSY busybox true"
show "$MINIRUN ps -a --filter name=$BUSY --format '{{.Names}} {{.Status}}'"

step "docker container export busybuck | gzip > busybuck.tar.gz" "its file system as a tarball, unpacked"
say "export works on a stopped container: the image's layers plus what the container changed."
show "$MINIRUN container export $BUSY | gzip > $SCRATCH/busybuck.tar.gz"
show "mkdir -p $ROOTFS && tar -xzf $SCRATCH/busybuck.tar.gz --directory $ROOTFS && ls $ROOTFS"

step "chroot rootfs /bin/sh" "chroot: another /, nothing else"
say "chroot(2) changes the root directory of one process and nothing else: no new namespaces." \
    "Once proc is mounted, ps lists all the host's processes, which root in there may kill." \
    "(unshare --mount only keeps that proc mount out of the host's table.)"
show "unshare --mount chroot $ROOTFS /bin/sh -c 'ps -ef | wc -l; mount -t proc proc /proc; ps -ef | wc -l'"

step "ping and capabilities (the article's myping)" "ping works for a user through a file capability"
say "/usr/bin/ping carries cap_net_raw=ep (getcap(8)): exec gives it CAP_NET_RAW, nothing else," \
    "no setuid (capabilities(7)). A copy loses the xattr, and the user's raw socket is refused:" \
    "unless, like Debian's ping, it falls back to an unprivileged ICMP socket (net.ipv4.ping_group_range)."
show "$MINIRUN run --rm --network none --user 1000 $IMAGE sh -c 'getcap /usr/bin/ping; ping -c1 -W5 127.0.0.1 | grep received; cp /usr/bin/ping /tmp/myping; getcap /tmp/myping; echo copied: no capability'"
say "Without CAP_NET_RAW in the container's bounding set the kernel will not grant the file" \
    "capability, and refuses to exec a program that would run without it: 126."
show_failing "$MINIRUN run --rm --network none --user 1000 --cap-drop NET_RAW $IMAGE ping -c1 -W5 127.0.0.1"

step "unshare -m --propagation unchanged sh" "mount propagation: shared mounts send new mounts back to the host"
say "With --propagation unchanged the copy of a shared mount stays a peer of the host's: a mount" \
    "made under it inside appears on the host too (shared subtrees, mount_namespaces(7))." \
    "unshare's default (private) and minirun's containers (rootfs.make_mounts_private) stop that."
mkdir -p "$SCRATCH/mntX"
show "mount -t tmpfs lab-mntX $SCRATCH/mntX && mount --make-shared $SCRATCH/mntX && mkdir $SCRATCH/mntX/a"
show "unshare -m --propagation unchanged sh -c 'mount -t tmpfs lab-a $SCRATCH/mntX/a'"
show "grep -c 'lab-a' /proc/self/mountinfo"
show "umount $SCRATCH/mntX/a; unshare -m sh -c 'mount -t tmpfs lab-a $SCRATCH/mntX/a'; grep -c 'lab-a' /proc/self/mountinfo || true"
show "umount $SCRATCH/mntX"
show "$MINIRUN run --rm busybox sh -c 'grep -c shared: /proc/self/mountinfo || true'"

step "unshare -Urfpm --mount-proc" "pivot_root by hand: the old root detached, the host gone"
say "pivot_root(2) moves the old root to a directory under the new one; umount -l detaches it, and" \
    "no path leads back to the host (chroot can be escaped, a detached old root cannot be walked)." \
    "minirun does it with pivot_root(\".\", \".\") and umount2(\".\", MNT_DETACH) (rootfs.py)."
show "unshare -Urfpm --mount-proc sh -c 'mount --rbind $ROOTFS $ROOTFS && cd $ROOTFS && mkdir -p .oldroot && pivot_root . .oldroot && PATH=/bin && mount -t proc proc /proc && umount -l /.oldroot && cat /proc/self/mounts && echo \"old root: \$(ls /.oldroot)(empty)\"'"

WS=$(container_name webserver)
step "docker run --name webserver -d nginx" "the web server"
show "$MINIRUN run --name $WS -d $IMAGE"
nginx_ready "$WS"

step "lsns" "its namespaces, next to the host's"
say "nginx's master and workers (NPROCS) in namespaces of their own: mnt, uts, ipc, pid, net," \
    "cgroup, and minirun's user namespace."
show "lsns -o NS,TYPE,NPROCS,PID,COMMAND | grep 'nginx: master'"

step "docker inspect -f '{{.State.Pid}}' webserver" "its PID 1 on the host"
show "$MINIRUN inspect -f '{{.State.Pid}}' $WS"
PID=$(pid_of "$WS")

step "findmnt -N 5426" "its mounts"
show "findmnt -N $PID -o TARGET,FSTYPE | head -8"

step "nsenter --target 5426 --mount ls /" "its root file system"
show "nsenter --target $PID --mount ls /"

step "docker exec webserver touch new_test_file" "exec a command in it; see the file from the host"
say "exec joins PID 1's namespaces with setns(2) on its pidfd, and its cgroup, then runs touch." \
    "/proc/PID/root is the container's / seen from the host (proc(5))."
show "$MINIRUN exec $WS touch new_test_file"
show "ls /proc/$PID/root | grep new_test"

step "nsenter --target 5426 -m -p ps -ef" "ps inside: the container's own ps"
say "The article's nginx image had no ps; this image has procps, so it works."
show "nsenter --target $PID -m -p ps -ef"

step "nsenter --target 5426 -m -p apt-get install procps" "installing a tool: here it is already there"
say "apt-get would need the network; the lab's image was built with procps (rootfs-images/debian)."
show "nsenter --target $PID -m -p dpkg-query -W procps"

step "docker run -it --name debug-server-2 --pid=container:webserver --network=container:webserver raesene/alpine-containertools /bin/bash" \
     "a debug container in its PID and network namespaces"
show "$MINIRUN run --rm --pid=container:$WS --network=container:$WS $IMAGE sh -c 'ps -f; ss -tln'"

step "docker exec webserver ip addr" "exec of a program the image lacks: 127"
say "busybox has ip; a name the image lacks gives docker's 127, 'executable file not found'."
show_failing "$MINIRUN exec $WS no-such-tool"
show "$MINIRUN exec $WS ip -br addr"

step "nsenter --target 5426 --net ip addr show" "the host's ip in its network namespace"
show "nsenter --target $PID --net ip addr show"

step "unshare --net=/proc/\$WEB_SERVER_PID/ns/net /bin/bash" "join a namespace by its file: nsenter, not unshare"
say "unshare --net=FILE makes a new namespace and bind-mounts it on FILE; to join an existing one," \
    "nsenter --net=FILE does setns(2) on that file."
show "nsenter --net=/proc/$PID/ns/net ip -br addr"

step "--security-opt seccomp=unconfined" "seccomp: unshare is refused in a container, unless unconfined"
say "minirun's default seccomp profile (docker's) refuses unshare(2) without CAP_SYS_ADMIN" \
    "(seccomp(2): the filter answers EPERM). seccomp=unconfined loads no filter."
show_failing "$MINIRUN run --rm busybox unshare -U true"
show "$MINIRUN run --rm --security-opt seccomp=unconfined busybox unshare -U true && echo allowed"

SLEEPY=$(container_name pid1)
step "docker kill" "PID 1 ignores signals it has no handler for"
say "The kernel does not deliver to a namespace's init a signal it has no handler for (except" \
    "from an ancestor namespace: SIGKILL, SIGSTOP) (pid_namespaces(7)). sleep as PID 1 ignores" \
    "SIGTERM: stop waits its timeout, then kills (137). --init puts a PID 1 that forwards it."
show "$MINIRUN run -d --name $SLEEPY busybox sleep 300"
show "$MINIRUN kill -s TERM $SLEEPY && sleep 1 && $MINIRUN inspect -f '{{.State.Status}}' $SLEEPY"
show "$MINIRUN kill $SLEEPY >/dev/null && $MINIRUN wait $SLEEPY"
say "The same from inside: sh as PID 1 survives its own SIGTERM; as PID 2 under --init it dies (143)."
show "$MINIRUN run --rm busybox sh -c 'kill -TERM \$\$; sleep 1; echo PID \$\$: still here'"
show_failing "$MINIRUN run --rm --init busybox sh -c 'kill -TERM \$\$; sleep 1; echo PID \$\$: still here'"

step "unshare --pid --mount-proc /bin/bash" "without --fork: the first child is PID 1, and when it exits..."
say "unshare(CLONE_NEWPID) puts the caller's next child in the new namespace as PID 1; without" \
    "--fork, the shell's first child is PID 1 and dies at once, and no process can be created" \
    "there any more: fork fails with ENOMEM (pid_namespaces(7))."
show_failing "unshare --pid --mount-proc sh -c '/bin/true; /bin/true' 2>&1"
