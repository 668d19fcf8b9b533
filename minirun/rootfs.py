"""The container's root file system, built inside its new mount namespace, then pivot_root'd into.

Runs in the child, after the parent has mapped its ids (so it is root of its own user
namespace, which owns the new mount namespace and may mount in it). In order:

  1. make every mount private, so nothing we do propagates back to the host;
  2. overlay: the image layers read-only below, a per-container directory on top;
  3. /proc, /dev (+ pts, shm, mqueue), /sys (+ fs/cgroup), the /etc files;
  4. -v bind mounts, each target resolved *inside* the rootfs; --tmpfs mounts;
  5. docker's masked and read-only paths in /proc and /sys; --read-only makes "/" read-only;
  6. pivot_root into it and detach the old root, so no host path is reachable.

All of it lives in the container's mount namespace only. When the container's last process
exits the namespace is freed and the kernel unmounts everything, so even a SIGKILLed minirun
leaves no mount behind on the host. Man pages: mount(2), mount_namespaces(7), overlayfs
(Documentation/filesystems/overlayfs.rst), pivot_root(2), proc(5), sysfs(5), pts(4).
"""

import os
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import NamedTuple

from minirun import cgroups, kernel, trace, userns
from minirun.errors import MinirunError
from minirun.kernel import (
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_STRICTATIME,
)
from minirun.spec import BindMount

# The character devices every container gets, bound from the host's /dev (as runc does in a
# user namespace, where mknod(2) of a device is not allowed).
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_SYMLINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
                "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx", "core": "/proc/kcore"}


class RootfsPlan(NamedTuple):
    layers: tuple[str, ...]  # image layer directories, lowest first
    upper: str  # this container's writable layer
    work: str  # overlay's scratch directory, on the same file system as upper
    merged: str  # where the overlay is mounted: the future "/"
    binds: tuple[BindMount, ...] = ()
    etc_files: Mapping[str, str] = MappingProxyType({})  # container path -> host file
    own_netns: bool = True  # sysfs may only be mounted by the owner of the network namespace
    tty_gid: int | None = 5  # group of /dev/pts/*; None if gid 5 is not mapped
    cgroupns_host: bool = False  # --cgroupns=host: show the host's whole cgroup tree (read-only)
    layer_mounts: tuple[str, ...] = ()  # remapped: where idmapped layers are attached
    read_only: bool = False  # --read-only: the container's "/" cannot be written
    tmpfs: Mapping[str, str] = MappingProxyType({})  # --tmpfs: container path -> options
    mask_system_paths: bool = True  # docker's masked and read-only /proc and /sys paths
    pid_host: bool = False  # --pid=host: the host's /proc, bound (minirun/sharing.py)
    ipc_host: bool = False  # --ipc=host: the host's /dev/shm and /dev/mqueue, bound
    ipc_donor: bool = False  # --ipc=container:NAME: its /dev/shm, the last fd of "go" (sharing.donor_shm)
    # Rootful remapped: the container's directory. The remapped root may not pass STORE/containers
    # (root's, 0700): the child opens it while it is still host uid 0, the owner of that parent
    # (process.run_child), enters it as the remapped root and reaches upper/, work/, merged/, lower/N
    # and the /etc files from there (enter_bundle).
    bundle: str = ""


def open_in_root(root_fd: int, path: str, create: str | None = None) -> int:
    """Open `path` inside the rootfs as an O_PATH fd, creating it ("dir"/"file") if missing.

    The kernel resolves it with RESOLVE_IN_ROOT: symlinks and ".." in the image cannot lead
    outside. Mounting onto /proc/self/fd/N of the result then mounts on exactly what was
    checked, with no window for a swap in between (CVE-2021-30465, runc's symlink-exchange race).
    """
    path = os.path.normpath("/" + path)
    resolve = kernel.RESOLVE_IN_ROOT | kernel.RESOLVE_NO_MAGICLINKS
    try:
        return kernel.openat2(root_fd, path, os.O_PATH, resolve)
    except FileNotFoundError:
        if create is None or path == "/":
            raise
    parent, name = os.path.split(path)
    parent_fd = open_in_root(root_fd, parent, "dir")
    try:
        if create == "dir":
            os.mkdir(name, 0o755, dir_fd=parent_fd)
        else:
            os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o644,
                             dir_fd=parent_fd))
    finally:
        os.close(parent_fd)
    return kernel.openat2(root_fd, path, os.O_PATH, resolve)


def mount_in_root(root_fd: int, source: str | None, target: str, fstype: str | None, flags: int,
                  data: str | None = None, create: str = "dir") -> None:
    fd = open_in_root(root_fd, target, create)
    try:
        kernel.mount(source, f"/proc/self/fd/{fd}", fstype, flags, data)
    finally:
        os.close(fd)


def make_mounts_private() -> None:
    """Stop mount events from propagating to the host (mount_namespaces(7), "shared subtrees").

    A new mount namespace starts with copies of the host's mounts, and systemd makes them
    "shared": without this, mounting in the container could appear on the host.
    """
    kernel.mount(None, "/", None, MS_REC | MS_PRIVATE)


def enter_bundle(plan: RootfsPlan, bundle_fd: int) -> RootfsPlan:
    """fchdir(2) into the container's directory (open_bundle; as its owner now) and use every
    path in it relative to it. A relative lookup
    starts at the working directory, so the directories above it are never searched
    (path_resolution(7)): the container's root needs no access to STORE/containers."""
    os.fchdir(bundle_fd)
    os.close(bundle_fd)

    def inside(path: str) -> str:
        return os.path.relpath(path, plan.bundle) if path.startswith(plan.bundle + "/") else path

    return plan._replace(upper=inside(plan.upper), work=inside(plan.work), merged=inside(plan.merged),
                   layer_mounts=tuple(inside(p) for p in plan.layer_mounts),
                   etc_files={target: inside(source) for target, source in plan.etc_files.items()})


def attach_layers(plan: RootfsPlan, layer_fds: list[int]) -> tuple[str, ...]:
    """Rootful remapped: move the parent's idmapped layer copies (detached mounts, received
    with "go") onto empty directories of the bundle. In this mount namespace only, and gone
    with it. Returns the lower layer directories for overlay, lowest first."""
    if not plan.layer_mounts:
        return plan.layers
    if len(layer_fds) != len(plan.layer_mounts):
        raise MinirunError(f"expected {len(plan.layer_mounts)} idmapped layers, got {len(layer_fds)}")
    for fd, target in zip(layer_fds, plan.layer_mounts, strict=True):
        kernel.move_mount(fd, target)
        os.close(fd)
    return plan.layer_mounts


def mount_overlay(plan: RootfsPlan) -> None:
    """Overlay the container's directory on the image: writes go up, the image is never modified.

    `userxattr` is needed because the mount is made inside a user namespace: overlay then keeps
    its bookkeeping (opaque directories, redirects) in user.overlay.* xattrs, since trusted.*
    xattrs need CAP_SYS_ADMIN in the *initial* namespace (Linux 5.11+).
    """
    for path in [*plan.layers, plan.upper, plan.work]:
        if any(c in path for c in ",:"):
            raise MinirunError(f"overlay cannot use a path containing ',' or ':': {path}")
    lower = ":".join(reversed(plan.layers))  # overlay lists the uppermost lower layer first
    options = f"lowerdir={lower},upperdir={plan.upper},workdir={plan.work},userxattr"
    kernel.mount("overlay", plan.merged, "overlay", 0, options)


def locked_flags(path: str) -> int:
    """The flags of the mount `path` is on. In a user namespace, a remount must keep the
    nosuid/nodev/noexec/rdonly flags the host set (they are "locked", mount_namespaces(7)),
    or it fails with EPERM."""
    st = os.statvfs(path)
    flags = 0
    for st_flag, ms_flag in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV),
                             (os.ST_NOEXEC, MS_NOEXEC), (os.ST_RDONLY, MS_RDONLY)):
        if st.f_flag & st_flag:
            flags |= ms_flag
    return flags


def bind_volumes(root_fd: int, binds: Sequence[BindMount], fds: list[int] | None = None) -> None:
    """-v mounts. Rootful remapped, the container's root may not even reach a host path (host
    root's 0700 directories are closed to it): the parent cloned each source already, read-only
    if asked (userns.detached_binds), and here the clones are only attached."""
    if fds:
        for bind, fd in zip(binds, fds, strict=True):
            kind = "dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file"
            target = open_in_root(root_fd, bind.target, kind)
            try:
                kernel.move_mount(fd, to_fd=target)
            finally:
                os.close(target)
                os.close(fd)
        return
    for bind in binds:
        kind = "dir" if os.path.isdir(bind.source) else "file"
        mount_in_root(root_fd, bind.source, bind.target, None, MS_BIND | MS_REC, create=kind)
        if userns.bind_attributes(bind):
            # A bind mount takes the source's flags; ro, nosuid, nodev are set afterwards, on every
            # mount below it (mount_setattr(2) with AT_RECURSIVE), through a fresh fd: one opened
            # before the bind refers to what is now underneath it.
            target = open_in_root(root_fd, bind.target)
            try:
                kernel.mount_setattr(target, userns.bind_attributes(bind))
            finally:
                os.close(target)


def mount_proc(root_fd: int, pid_host: bool = False) -> None:
    """A proc for the new PID namespace, so `ps` sees only the container's processes.

    It must be mounted before pivot_root: in a user namespace the kernel allows a new proc only
    while a fully visible proc is already mounted in this mount namespace (the host's, still
    here until the old root is detached). See "mnt_already_visible" in fs/namespace.c.
    --pid=host: a proc of the host's PID namespace needs CAP_SYS_ADMIN over its owner, the
    host's user namespace: bind the host's /proc instead (as rootless podman does).
    """
    if pid_host:
        mount_in_root(root_fd, "/proc", "/proc", None, MS_BIND | MS_REC)
        return
    mount_in_root(root_fd, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def mount_dev(root_fd: int, tty_gid: int | None, ipc_host: bool = False, shm_fd: int = -1) -> None:
    """A small /dev of our own instead of the host's: a tmpfs with only the safe devices.
    `shm_fd`: --ipc=container:NAME, the other container's /dev/shm (a detached mount)."""
    mount_in_root(root_fd, "tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k")
    fd = open_in_root(root_fd, "/dev")
    dev = f"/proc/self/fd/{fd}"
    try:
        for name in DEVICES:
            open(f"{dev}/{name}", "w").close()
            kernel.mount(f"/dev/{name}", f"{dev}/{name}", None, MS_BIND)
        for name, target in DEV_SYMLINKS.items():
            os.symlink(target, f"{dev}/{name}")
        for name in ("pts", "shm", "mqueue"):
            os.mkdir(f"{dev}/{name}", 0o755)
        # newinstance: a private set of pseudo-terminals, not the host's /dev/pts (pts(4)).
        pts_options = "newinstance,ptmxmode=0666,mode=0620"
        if tty_gid is not None:
            pts_options += f",gid={tty_gid}"
        kernel.mount("devpts", f"{dev}/pts", "devpts", MS_NOSUID | MS_NOEXEC, pts_options)
        if ipc_host:  # the host's IPC namespace: its shared memory and queues, where mounted
            for name in ("shm", "mqueue"):
                if os.path.ismount(f"/dev/{name}"):
                    kernel.mount(f"/dev/{name}", f"{dev}/{name}", None, MS_BIND | MS_REC)
            return
        if shm_fd >= 0:
            kernel.move_mount(shm_fd, f"{dev}/shm")
            os.close(shm_fd)
        else:
            kernel.mount("shm", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                         "mode=1777,size=65536k")
        # POSIX message queues of the container's own IPC namespace (mq_overview(7)).
        kernel.mount("mqueue", f"{dev}/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    finally:
        os.close(fd)


def mount_sys(root_fd: int, own_netns: bool, cgroupns_host: bool = False) -> None:
    """/sys read-only, and in it the container's view of its cgroups.

    sysfs shows the network devices of the mounter's network namespace, so the kernel allows a
    new sysfs only to the owner of that namespace. With --network host we are not: bind the
    host's /sys instead (read-only), as rootless podman does.
    """
    ro = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    if own_netns:
        mount_in_root(root_fd, "sysfs", "/sys", "sysfs", ro)
    else:
        mount_in_root(root_fd, "/sys", "/sys", None, MS_BIND | MS_REC)
        # Read-only takes a second call, on a fresh fd: one opened before the bind sees underneath it.
        mount_in_root(root_fd, None, "/sys", None, MS_BIND | MS_REMOUNT | ro)
        # The host's cgroup mounts came along (locked in a user namespace: they cannot be
        # unmounted). Cover them with an empty tmpfs: on a pure v2 host the container's own
        # cgroup2 mount would otherwise land on the same superblock at the same mountpoint,
        # which mount(2) refuses (EBUSY).
        mount_in_root(root_fd, "tmpfs", "/sys/fs/cgroup", "tmpfs", ro, "mode=755")
    if cgroupns_host:
        bind_host_cgroupfs(root_fd)
    else:
        mount_cgroupfs(root_fd)


def mount_cgroupfs(root_fd: int, own_only: bool = False) -> None:
    """Mount the cgroup hierarchies as the container's cgroup namespace sees them.

    Mounted from inside the new cgroup namespace, each hierarchy's root is the container's own
    cgroup (cgroup_namespaces(7)), so `ls /sys/fs/cgroup` shows the container, not the host.
    A v2-only host gets one cgroup2 mount; v1 and hybrid hosts a tmpfs with one directory per
    hierarchy, like the host's layout.

    `own_only` (minirun-oci, a bundle without a cgroup namespace of its own: podman's default on
    v1 and hybrid hosts): cgroupfs would show the host's whole tree there, and in a user
    namespace, which does not own the host's cgroup namespace, mount(2) refuses it (EPERM). So
    each place gets this process's own cgroup of that hierarchy (the parent moved it there
    before "go"), bound read-only, as runc does.
    """
    ro = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    host = [h for h in cgroups.hierarchies() if h.mountpoint.is_relative_to(cgroups.CGROUP_ROOT)]
    if [h.version for h in host] == [2] and not own_only:
        mount_in_root(root_fd, "cgroup", "/sys/fs/cgroup", "cgroup2", ro)
        return
    if [h.version for h in host] == [2]:  # its own cgroup2 directory is /sys/fs/cgroup
        fs = open_in_root(root_fd, "/sys/fs", "dir")
        try:
            os.makedirs(f"/proc/self/fd/{fs}/cgroup", exist_ok=True)
            attach_hierarchy(host[0], f"/proc/self/fd/{fs}/cgroup", own_only)
        finally:
            os.close(fs)
        return
    mount_in_root(root_fd, "tmpfs", "/sys/fs/cgroup", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755")
    fd = open_in_root(root_fd, "/sys/fs/cgroup")
    base = f"/proc/self/fd/{fd}"
    try:
        for h in host:
            target = f"{base}/{h.mountpoint.relative_to(cgroups.CGROUP_ROOT)}"
            os.makedirs(target, exist_ok=True)
            attach_hierarchy(h, target, own_only)
        kernel.mount(None, base, None, MS_REMOUNT | ro, "mode=755")
    finally:
        os.close(fd)


def attach_hierarchy(h: cgroups.Hierarchy, target: str, own_only: bool) -> None:
    """One hierarchy at `target` (a path, looked up again by each call), read-only."""
    ro = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    if own_only:
        own = str(h.mountpoint / cgroups.own_cgroup(h).lstrip("/"))
        kernel.mount(own, target, None, MS_BIND | MS_REC)
        kernel.mount(None, target, None, MS_BIND | MS_REMOUNT | ro | locked_flags(own))
    elif h.version == 2:
        kernel.mount("cgroup2", target, "cgroup2", ro)
    else:
        kernel.mount("cgroup", target, "cgroup", ro, ",".join(h.controllers))


def bind_host_cgroupfs(root_fd: int) -> None:
    """--cgroupns=host: the container shares the host's cgroup namespace, which belongs to the
    host's user namespace, so it may not mount cgroupfs itself (EPERM). Bind the host's
    /sys/fs/cgroup with everything mounted below it instead, then make each of those mounts
    read-only: a recursive bind copies the mounts, and a remount changes only the one named."""
    mount_in_root(root_fd, str(cgroups.CGROUP_ROOT), "/sys/fs/cgroup", None, MS_BIND | MS_REC)
    fd = open_in_root(root_fd, "/sys/fs/cgroup")
    base = f"/proc/self/fd/{fd}"
    try:
        below = [h.mountpoint for h in cgroups.hierarchies()
                 if h.mountpoint.is_relative_to(cgroups.CGROUP_ROOT)]
        for host_path in [cgroups.CGROUP_ROOT, *below]:
            target = f"{base}/{host_path.relative_to(cgroups.CGROUP_ROOT)}".rstrip("/.")
            kernel.mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags(str(host_path)))
    finally:
        os.close(fd)


def bind_etc_files(root_fd: int, etc_files: Mapping[str, str]) -> None:
    """/etc/hostname, /etc/hosts, /etc/resolv.conf: written by minirun, bound over the image's."""
    for target, source in etc_files.items():
        mount_in_root(root_fd, source, target, None, MS_BIND, create="file")


def pivot_into(new_root: str) -> None:
    """Make `new_root` the root of this mount namespace and drop every path to the old one.

    pivot_root(".", ".") stacks the old root on top of the new one at "/"; the lazy unmount
    then detaches it. Unlike chroot(2), no reference to the host's tree is left to climb back
    to (pivot_root(2), NOTES, and runc's libcontainer/rootfs_linux.go).
    """
    os.chdir(new_root)
    kernel.pivot_root(".", ".")
    kernel.umount2(".", MNT_DETACH)
    os.chdir("/")


def mount_tmpfs(root_fd: int, tmpfs: Mapping[str, str]) -> None:
    """--tmpfs PATH[:OPTIONS]: docker's defaults are nosuid, nodev, noexec and mode 1777; the
    words ro/rw/exec/suid/dev change the flags, the rest (size=64m, mode=...) goes to tmpfs."""
    words = {"ro": (MS_RDONLY, 0), "rw": (0, MS_RDONLY), "noexec": (MS_NOEXEC, 0), "exec": (0, MS_NOEXEC),
             "nosuid": (MS_NOSUID, 0), "suid": (0, MS_NOSUID), "nodev": (MS_NODEV, 0), "dev": (0, MS_NODEV)}
    for target, options in tmpfs.items():
        flags, data = MS_NOSUID | MS_NODEV | MS_NOEXEC, ["mode=1777"]
        for option in filter(None, options.split(",")):
            if option in words:
                flags = (flags | words[option][0]) & ~words[option][1]
            else:
                mode_given = option.startswith("mode=")
                data = [d for d in data if not (mode_given and d.startswith("mode="))] + [option]
        mount_in_root(root_fd, "tmpfs", target, "tmpfs", flags, ",".join(data))


# Docker's masked and read-only paths (seed 000's findmnt output): kernel interfaces that show
# the host (kcore is the host's memory, keys its keyrings, timer_list its timers) or change it
# (sysrq-trigger reboots it, /proc/sys/kernel/* tunes it), which namespaces do not cover.
MASKED = ("/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
          "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
          "/sys/devices/virtual/powercap")
READ_ONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


def mask_paths(root_fd: int) -> None:
    for path in MASKED:
        mask_path(root_fd, path)


def read_only_paths(root_fd: int) -> None:
    for path in READ_ONLY:
        read_only_path(root_fd, path)


def mask_path(root_fd: int, path: str) -> None:
    """Hide a path: /dev/null bound over a file, an empty read-only tmpfs over a directory.
    A path this kernel (or image) does not have is skipped. minirun-oci's maskedPaths too."""
    try:
        fd = open_in_root(root_fd, path)
    except FileNotFoundError:
        return
    try:
        target = f"/proc/self/fd/{fd}"
        if os.path.isdir(target):
            kernel.mount("tmpfs", target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0")
        else:
            kernel.mount("/dev/null", target, None, MS_BIND)
    finally:
        os.close(fd)


def read_only_path(root_fd: int, path: str) -> None:
    """Bind a path onto itself, then remount that bind read-only, keeping the flags of the mount
    it is on (proc's nosuid/nodev/noexec, locked in a user namespace): reading /proc/sys works,
    writing it fails with EROFS. minirun-oci's readonlyPaths too."""
    try:
        fd = open_in_root(root_fd, path)
    except FileNotFoundError:
        return
    try:
        kernel.mount(f"/proc/self/fd/{fd}", f"/proc/self/fd/{fd}", None, MS_BIND | MS_REC)
    finally:
        os.close(fd)
    fd = open_in_root(root_fd, path)  # a fresh fd: one opened before the bind sees underneath it
    try:
        target = f"/proc/self/fd/{fd}"
        kernel.mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags(target))
    finally:
        os.close(fd)


def open_bundle(plan: RootfsPlan) -> int:
    """An O_PATH fd of the container's directory, opened in the child's own mount namespace (a
    working directory in another namespace's mount could not take mounts, move_mount(2) EINVAL)
    and before it becomes the remapped root: host uid 0 may search root's 0700 parent by its owner
    bits, without a capability. O_PATH checks no permission on the directory itself (open(2))."""
    return os.open(plan.bundle, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) if plan.bundle else -1


def build(plan: RootfsPlan, fds: list[int] | None = None, bundle_fd: int = -1) -> None:
    """All of the above, in order. Afterwards "/" is the container's root.

    `fds`, rootful remapped only: the idmapped image layers, then one clone per -v source;
    then, with --ipc=container:NAME, the other container's /dev/shm."""
    fds = list(fds or [])
    shm_fd = fds.pop() if plan.ipc_donor and fds else -1
    bundle = plan.bundle  # the paths below become relative to it (enter_bundle)
    if bundle_fd >= 0:
        plan = enter_bundle(plan, bundle_fd)
    layer_fds, bind_fds = fds[:len(plan.layer_mounts)], fds[len(plan.layer_mounts):]
    make_mounts_private()
    lower = attach_layers(plan, layer_fds)
    mount_overlay(plan._replace(layers=lower))
    trace.mark("overlay", "child", merged=os.path.join(bundle, plan.merged), bundle=bundle)
    root_fd = os.open(plan.merged, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        mount_proc(root_fd, plan.pid_host)
        mount_dev(root_fd, plan.tty_gid, plan.ipc_host, shm_fd)
        mount_sys(root_fd, plan.own_netns, plan.cgroupns_host)
        bind_etc_files(root_fd, plan.etc_files)
        # The user's -v mounts come last so that they may cover any of the above, as in docker.
        bind_volumes(root_fd, plan.binds, bind_fds)
        mount_tmpfs(root_fd, plan.tmpfs)
        if plan.mask_system_paths:
            mask_paths(root_fd)
            read_only_paths(root_fd)
        if plan.read_only:
            # Only the overlay mount itself (root_fd still refers to it): /dev, /proc, the
            # tmpfs and volumes keep their own flags.
            kernel.mount(None, f"/proc/self/fd/{root_fd}", None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    finally:
        os.close(root_fd)
    trace.mark("mounts", "child", merged=os.path.join(bundle, plan.merged))
    pivot_into(plan.merged)
    trace.mark("pivot_root", "child")
