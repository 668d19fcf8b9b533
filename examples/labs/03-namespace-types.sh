#!/bin/sh
# Lab 03 — "7 (8) namespace types; lsns, nsenter" (seed 003), redone with minirun. Works as root
# and as an unprivileged user (the article's -U/-r steps are rootless): where the article's
# command needs root, an unprivileged learner gets the same with a user namespace (-Ur) first.
# Run: sh examples/labs/03-namespace-types.sh [--step]
. "$(dirname "$0")/lib.sh"
if [ "$(id -u)" = 0 ]; then AS_ROOT=""; else AS_ROOT="-Ur"; fi  # unprivileged: be root in a user namespace first

step "unshare -m /bin/bash" "a tmpfs mounted in a new mount namespace"
say "The new namespace starts with a copy of the host's mounts; unshare makes them private," \
    "so the tmpfs on /mnt shows in this namespace's mountinfo with no shared: tag, and never on" \
    "the host (mount_namespaces(7)). minirun's --tmpfs does this inside a container."
show "unshare $AS_ROOT -m sh -c 'mount -t tmpfs tmpfs /mnt; grep \" /mnt \" /proc/self/mountinfo'"
show "grep -c ' /mnt .* tmpfs tmpfs ' /proc/self/mountinfo || true"
show "$MINIRUN run --rm --tmpfs /mnt busybox sh -c 'grep \" /mnt \" /proc/self/mountinfo'"

step "unshare -mipf /bin/bash" "new PID and IPC namespaces, but the host's /proc"
say "\$\$ is 1: the shell is PID 1 of the new PID namespace. But ps reads /proc, still the host's" \
    "proc mount (a proc mount shows the PID namespace of whoever mounted it: pid_namespaces(7))."
show "unshare $AS_ROOT -mipf sh -c 'echo \$\$; ps -e | wc -l'"

step "unshare --mount-proc -mipf /bin/bash" "the same with a /proc of its own"
say "--mount-proc mounts a new proc in the new mount namespace: ps now sees 2 processes (sh, ps)."
show "unshare $AS_ROOT --mount-proc -mipf sh -c 'echo \$\$; ps -e'"
show "$MINIRUN run --rm busybox sh -c 'echo \$\$; ps'"

step "unshare -unUr /bin/bash" "a user, UTS and network namespace, made without root"
say "-U first: in its own user namespace an unprivileged process has every capability, over the" \
    "namespaces that user namespace owns, so it may make the others (user_namespaces(7))." \
    "The new network namespace has only lo, down: no way out yet."
unshare -unUr sleep 60 &
SANDBOX=$!
sleep 0.5
show "nsenter --preserve-credentials -U -n -t $SANDBOX ip -br addr"

step "slirp4netns -c 5039 tap0" "slirp4netns: a network for an unprivileged namespace"
say "slirp4netns(1) opens /dev/net/tun inside the namespace, makes tap0, and forwards its packets" \
    "through ordinary sockets of the user outside: 10.0.2.100/24, gateway 10.0.2.2, DNS 10.0.2.3." \
    "minirun uses the same for rootless containers (--network slirp4netns, their default)."
slirp4netns --configure --mtu=65520 --disable-host-loopback "$SANDBOX" tap0 >"$SCRATCH/slirp.log" 2>&1 &
SLIRP=$!
for _ in $(seq 50); do grep -q "Starting slirp" "$SCRATCH/slirp.log" 2>/dev/null && break; sleep 0.1; done
show "nsenter --preserve-credentials -U -n -t $SANDBOX ip -br addr"
kill "$SLIRP" "$SANDBOX" 2>/dev/null || true
wait "$SLIRP" "$SANDBOX" 2>/dev/null || true
show "$MINIRUN run --rm --network slirp4netns busybox ip addr"

step "unshare -Ur /bin/bash" "root in a user namespace: uid 0 inside is your uid outside"
say "uid_map '0 UID 1': id 0 inside is UID outside. Files the namespace cannot map show as nobody" \
    "(65534); a file created inside is owned by UID on the host."
show "unshare -Ur sh -c 'id -u; cat /proc/self/uid_map; date > $SCRATCH/test; ls -ln $SCRATCH/test | cut -d\" \" -f3'"
show "ls -ln $SCRATCH/test | cut -d' ' -f3"
say "minirun rootless maps 65536 ids: 0 to you, 1-65535 to your /etc/subuid range (newuidmap(1))."
show "$MINIRUN run --rm busybox cat /proc/self/uid_map"

step "unshare -mipfunUr /bin/bash" "all together: a container by hand"
say "Every namespace at once, as an unprivileged user: proc, a host name, ... what minirun run does" \
    "(plus the root file system, cgroups, capabilities and seccomp)."
show "unshare -mipfunUr sh -c 'mount -t proc proc /proc; hostname sandbox; hostname; echo \$\$; ps -e | wc -l'"

SLEEPER=$(container_name sleeper)
step "lsns --type net" "the network namespaces: the host's and the container's"
say "lsns shows the namespaces the caller may see; NSFS is the bind mount that names one (ip netns)."
show "$MINIRUN run -d --name $SLEEPER busybox sleep 300"
PID=$(pid_of "$SLEEPER")
show "lsns --type net -o NS,TYPE,NPROCS,PID,COMMAND | grep -E ' $PID |COMMAND'"

step "nsenter --target 1548 --net ip a s" "the container's network from the host's ip"
say "As root, -n is enough. Rootless, the container's network namespace belongs to its user" \
    "namespace: join that first (-U, keeping your own ids with --preserve-credentials)."
if [ "$(id -u)" = 0 ]; then
    show "nsenter --target $PID --net ip a s"
else
    show "nsenter --preserve-credentials -U --target $PID --net ip a s"
fi
