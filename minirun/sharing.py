"""Namespaces a container shares instead of getting its own: the host's, or another container's.

    --pid=host|container:NAME     --ipc=host|container:NAME|shareable|private
    --uts=host                    --network=host|container:NAME

`host` leaves a namespace out of clone(2): the container stays in minirun's own. The kernel
then lets it do only what that namespace's owner (the host's user namespace) allows, so what
the container would normally create there is borrowed from the host instead (rootfs.py):
the host's /proc (--pid=host), /dev/shm and /dev/mqueue (--ipc=host), and no sethostname
(--uts=host). Likewise --ipc=container:NAME takes the other container's /dev/shm (donor_shm), as
docker does: POSIX shared memory is files there (shm_overview(7)), not part of the IPC namespace.

`container:NAME` joins the namespaces of another running container, *and its user namespace*,
as podman does for the containers of a pod. Every namespace belongs to the user namespace that
created it, and the kernel judges what a process may do in it by its capabilities *there*: in
a user namespace of its own, a container that joined the other's network namespace would not
even bind port 80 in it (seed 002: "bind() to 0.0.0.0:80 failed (13: Permission denied)").
In the other's user namespace, its root is that container's root, with the same id map.

How (clone below, `helper.py`): a helper process joins the other container's namespaces with one
setns(2) on a pidfd of its PID 1, user namespace first (see enter.join), then clones the
container's process with the namespaces still to create and CLONE_PARENT, so that the process
is minirun's own child, exactly as without sharing; the helper reports its pid and exits.
A monitor cannot do this itself: nobody can setns back out of a user namespace.
"""

import contextlib
import os
import signal
from pathlib import Path
from typing import NamedTuple

from minirun import helper, kernel, network, state, userns
from minirun.enter import open_target, target_pid  # PID 1, or its command (--init, rootless)
from minirun.errors import MinirunError
from minirun.spec import ContainerSpec

KINDS = {"pid": kernel.CLONE_NEWPID, "ipc": kernel.CLONE_NEWIPC, "uts": kernel.CLONE_NEWUTS,
         "net": kernel.CLONE_NEWNET}


class Donor(NamedTuple):
    """A running container whose namespaces are joined, and which ones."""

    record: state.Record
    flags: int

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def pid(self) -> int:
        return self.record.pid


class SharePlan(NamedTuple):
    new: int  # the CLONE_NEW* flags clone(2) creates (the cgroup namespace comes later, process.py)
    donors: tuple[Donor, ...] = ()  # joined, in this order; the first with its userns
    pid_host: bool = False
    ipc_host: bool = False
    uts_host: bool = False

    @property
    def joins(self) -> bool:
        return bool(self.donors)


def modes(spec: ContainerSpec) -> dict[str, str]:
    return {"pid": spec.pid, "ipc": spec.ipc, "uts": spec.uts, "net": spec.network}


def plan(spec: ContainerSpec, state_dir: Path) -> SharePlan:
    """Decide, before anything is created, which namespaces are new, the host's or joined."""
    new = kernel.CLONE_NEWNS
    joined: dict[str, int] = {}  # donor name -> flags
    for kind, mode in modes(spec).items():
        if mode.startswith("container:"):
            name = mode.split(":", 1)[1]
            joined[name] = joined.get(name, 0) | KINDS[kind]
        elif mode == "host" or (kind == "net" and not network.has_own_netns(mode)):
            continue
        else:
            new |= KINDS[kind]
    if spec.pid == "host" and spec.security.userns == "shared":
        # Every shared-range container's root is the same host uid, and kill(2) compares host
        # uids only: with the host's PID namespace it could SIGKILL the others' processes.
        raise MinirunError("--pid=host cannot be used with --userns=shared: its root could signal "
                           "every other shared-range container (use a range of its own, the default)")
    if spec.hostname and spec.uts == "host":
        raise MinirunError("--hostname cannot be used with --uts=host (the host's name is shared)")
    if not joined:
        return SharePlan(new | kernel.CLONE_NEWUSER, pid_host=spec.pid == "host", ipc_host=spec.ipc == "host",
                         uts_host=spec.uts == "host")
    if spec.security.userns == "host":
        raise MinirunError("--userns=host cannot be used with container:NAME: the container joins that "
                           "container's user namespace")
    donors = []
    for name, flags in joined.items():
        other = state.find(state_dir, name)
        if other.status != "running" or not other.pid:
            raise MinirunError(f"cannot join the namespaces of container {other.name}: it is not running")
        if flags & kernel.CLONE_NEWIPC and other.host_config.get("IpcMode") != "shareable":
            raise MinirunError(f"cannot join the IPC namespace of container {other.name}: it is private "
                               "(start it with --ipc=shareable, as in docker)")
        donors.append(Donor(other, flags))
    if spec.pid.startswith("container:") and spec.network == "slirp4netns":
        # slirp4netns, run as the user, opens the new container's /proc/PID/ns/net, which a
        # process that is not dumpable (see clone) does not allow it.
        raise MinirunError("--pid=container:NAME needs --network none, host or container:NAME when "
                           "rootless (slirp4netns cannot reach a container in a joined PID namespace)")
    users = {_namespace(target_pid(d.record), "user") for d in donors}
    if len(users) > 1:
        raise MinirunError("the containers to join are in different user namespaces: " +
                           ", ".join(d.name for d in donors))
    for donor in donors:
        if donor.record.host_config.get("UsernsMode") == "host":
            # Its user namespace maps the host's ids as they are (--userns=host): joining it would
            # give this container the host's real ids, root included (attack review of issue 11).
            raise MinirunError(f"cannot join the namespaces of container {donor.name}: it runs with "
                               "--userns=host, and a container joining it would run as the host's root")
    donors[0] = Donor(donors[0].record, donors[0].flags | kernel.CLONE_NEWUSER)
    return SharePlan(new, tuple(donors), pid_host=spec.pid == "host", ipc_host=spec.ipc == "host",
                     uts_host=spec.uts == "host")


def _namespace(pid: int, kind: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        raise MinirunError("a container to join has exited") from None


def id_mapping(share: SharePlan, rootless: bool) -> userns.IdMapping | None:
    """The id map of the user namespace joined (the donor's), None when the container gets its own."""
    return userns.of_process(target_pid(share.donors[0].record), rootless) if share.joins else None


def host_config(spec: ContainerSpec) -> dict[str, str]:
    """docker inspect's HostConfig fields for the modes."""
    return {"PidMode": "" if spec.pid == "private" else spec.pid, "IpcMode": spec.ipc,
            "UTSMode": "" if spec.uts == "private" else spec.uts}


def clone(share: SharePlan, cgroup_fd: int | None = None) -> tuple[int, bool]:
    """kernel.clone(share.new), in the donors' namespaces when there are any: 0 in the child,
    its pid in the parent; and whether it was born in the v2 cgroup `cgroup_fd` (which only a
    container of its own namespaces is: a joining one is cloned by a helper, below)."""
    if not share.joins:
        if cgroup_fd is not None:
            with contextlib.suppress(OSError):  # an older kernel: clone, then move the child
                return kernel.clone_into_cgroup(share.new, cgroup_fd), True
        return kernel.clone(share.new), False

    pidfds: list[int] = []
    try:
        for donor in share.donors:
            pidfds.append(open_target(donor.record))
        joins = [(pidfd, donor.flags) for donor, pidfd in zip(share.donors, pidfds, strict=True)]
        # The first join carries CLONE_NEWUSER: see enter.join
        what = f"join the namespaces of container {share.donors[0].name}"
        pid = helper.clone_joined(joins, share.new, what)
    finally:
        for fd in pidfds:
            os.close(fd)
    return pid, False


def ipc_donor(share: SharePlan) -> Donor | None:
    """The container whose IPC namespace is joined (--ipc=container:NAME), if any."""
    return next((d for d in share.donors if d.flags & kernel.CLONE_NEWIPC), None)


def donor_shm(donor: Donor) -> int:
    """A detached copy of the donor's /dev/shm mount (open_tree(2), OPEN_TREE_CLONE), for the
    child to attach as its own /dev/shm (rootfs.mount_dev): the same tmpfs, so a file one
    writes there the other reads. The mount lives in the donor's mount namespace, and open_tree
    clones only mounts of the caller's own: a helper process joins the donor's user and mount
    namespaces (one setns(2), the user namespace first: see enter.join), clones the mount there,
    and hands the fd back over a socketpair (SCM_RIGHTS, unix(7)). The clone keeps its flags
    (nosuid, nodev, noexec) and is attached only in the new container's mount namespace."""
    import socket

    pidfd = open_target(donor.record)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        helper_pid = os.fork()
        if helper_pid == 0:
            ours.close()
            try:
                kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)
                helper.not_dumpable()  # before it joins the donor's user namespace
                kernel.setns(pidfd, kernel.CLONE_NEWUSER | kernel.CLONE_NEWNS)  # "/" is now the donor's
                # The donor's root decides what /dev/shm is: no symbolic link may lead the clone
                # elsewhere (a magic link of its /proc to another process's root, say).
                root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                where = kernel.openat2(root, "/dev/shm", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC,
                                       kernel.RESOLVE_IN_ROOT | kernel.RESOLVE_NO_SYMLINKS
                                       | kernel.RESOLVE_NO_MAGICLINKS)
                clone = kernel.OPEN_TREE_CLONE | kernel.AT_RECURSIVE | kernel.AT_EMPTY_PATH
                shm = kernel.open_tree("", clone, dirfd=where)
                socket.send_fds(theirs, [b"shm"], [shm])
                code = 0
            except BaseException as e:  # one line for the user, through the parent
                with contextlib.suppress(OSError):
                    theirs.sendall(str(e).encode(errors="replace")[:4000])
                code = 125
            os._exit(code)
        theirs.close()
        try:
            data, fds, _, _ = socket.recv_fds(ours, 4096, 1)
        finally:
            os.waitpid(helper_pid, 0)
    finally:
        os.close(pidfd)
        ours.close()
        with contextlib.suppress(OSError):
            theirs.close()
    if data != b"shm" or len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise MinirunError(f"cannot share the /dev/shm of container {donor.name}: "
                           f"{data.decode(errors='replace') or 'the helper died'}")
    return fds[0]
