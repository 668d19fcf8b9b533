"""User namespace id maps: who the container's users are on the host.

A new user namespace starts with no ids mapped; its processes run as the overflow id 65534
("nobody") and can do little until the parent writes /proc/PID/uid_map and gid_map
(user_namespaces(7), "User and group ID mappings"). Each line is `INSIDE OUTSIDE COUNT`.

 - rootful (default, --userns=auto): remapped to ids of its own. Container ids 0-65535 are
   65536 host ids no other container has, cut from root's subordinate ids (minirun/idranges.py):
   root in the container is an unprivileged nobody on the host, so a process that escapes owns
   nothing there (seed 001), and nothing of another container either. --userns=shared: one range
   for every such container, 1000000-1065535 (root's first line in /etc/subuid), as docker's
   userns-remap and the labs' articles have it. Image files still look root-owned inside
   through idmapped mounts (idmapped_layers below), or, where the kernel cannot do that, because
   the container uses a copy of each layer chowned into its range (layers_mode below).
 - rootful with --userns=host: an identity map, 0-4294967294 inside = the same ids outside, so
   root in the container is root on the host (still without most capabilities), classic docker.
 - rootless: container root is the invoking user (`0 UID 1`). An unprivileged process may
   write only that one line itself, and only after writing "deny" to /proc/PID/setgroups
   (CVE-2014-8989: otherwise dropping supplementary groups could gain access a group denies).
   More ids need the setuid helpers newuidmap/newgidmap, which check /etc/subuid and
   /etc/subgid: with a range there, container ids 1.. map onto it, so `chown 1000 f` works.
"""

import os
import pwd
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, NamedTuple

from minirun import idranges, kernel, paths
from minirun.errors import MinirunError
from minirun.fsutil import on_path
from minirun.spec import BindMount, UsernsMode


class IdMap(NamedTuple):
    inside: int
    outside: int
    count: int  # type: ignore[assignment]  # hides tuple.count(), which nothing here calls

    def line(self) -> str:
        return f"{self.inside} {self.outside} {self.count}"


class IdMapping(NamedTuple):
    uids: tuple[IdMap, ...]
    gids: tuple[IdMap, ...]
    helpers: bool  # write through newuidmap/newgidmap (rootless with a subordinate range)
    idmap_layers: bool = False  # rootful remapped: the parent hands the layers over as mounts...
    shifted_layers: bool = False  # ...of chowned copies (True), or idmapped ones (False)
    per_container: bool = False  # --userns=auto: `outside` is -1 until the range is claimed (with_range)

    def maps_uid(self, uid: int) -> bool:
        return any(m.inside <= uid < m.inside + m.count for m in self.uids)

    def maps_gid(self, gid: int) -> bool:
        return any(m.inside <= gid < m.inside + m.count for m in self.gids)


def subordinate_range(path: str, user: str, uid: int) -> tuple[int, int] | None:
    """The first `user:start:count` (or `uid:start:count`) line of /etc/subuid or /etc/subgid."""
    try:
        with open(path) as f:
            for line in f:
                fields = line.strip().split(":")
                if len(fields) == 3 and fields[0] in (user, str(uid)) and int(fields[2]) > 0:
                    return int(fields[1]), int(fields[2])
    except (OSError, ValueError):
        return None
    return None


def plan(rootless: bool, userns: UsernsMode = "auto", size: int = idranges.SHARED_SIZE) -> IdMapping:
    if not rootless and userns == "host":
        identity = (IdMap(0, 0, 4294967295),)
        return IdMapping(identity, identity, helpers=False)
    if not rootless and userns == "shared":
        uids, gids = idranges.shared_range("uid"), idranges.shared_range("gid")
        return IdMapping((IdMap(0, *uids),), (IdMap(0, *gids),), helpers=False, idmap_layers=True,
                         shifted_layers=layers_mode() == "shifted")
    if not rootless:
        # The shape only: which host ids is decided with the record (runtime.create_record), and
        # -1 is what the kernel refuses in a uid_map, should this ever be written as it is.
        return IdMapping((IdMap(0, -1, size),), (IdMap(0, -1, size),), helpers=False, idmap_layers=True,
                         shifted_layers=layers_mode() == "shifted", per_container=True)
    uid, gid = os.getuid(), os.getgid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    subuid = subordinate_range("/etc/subuid", user, uid)
    subgid = subordinate_range("/etc/subgid", user, uid)
    have_helpers = bool(on_path("newuidmap") and on_path("newgidmap"))
    if subuid and subgid and have_helpers:
        return IdMapping((IdMap(0, uid, 1), IdMap(1, subuid[0], subuid[1])),
                         (IdMap(0, gid, 1), IdMap(1, subgid[0], subgid[1])), helpers=True)
    return IdMapping((IdMap(0, uid, 1),), (IdMap(0, gid, 1),), helpers=False)


def with_range(mapping: IdMapping, id_range: list[int]) -> IdMapping:
    """The mapping of a container of its own range (the record's `id_range`: uid, gid, count)."""
    if not mapping.per_container:
        return mapping
    if len(id_range) != 3:  # a record from before per-container ranges: it used the shared one
        uid, count = idranges.shared_range("uid")
        id_range = [uid, idranges.shared_range("gid")[0], count]
    uid, gid, count = id_range
    return mapping._replace(uids=(IdMap(0, uid, count),), gids=(IdMap(0, gid, count),))


def range_of(mapping: IdMapping) -> list[int]:
    """The record's `id_range` of a remapped rootful mapping (uid, gid, count); [] otherwise."""
    if not mapping.idmap_layers or len(mapping.uids) != 1 or mapping.uids[0].outside < 0:
        return []
    return [mapping.uids[0].outside, mapping.gids[0].outside, mapping.uids[0].count]


# --- how a remapped root sees the image's files ---------------------------------------------------
#
# What each way needs from the kernel (README, "Kernel requirements"):
#  - idmapped mounts (mount_setattr(2), MOUNT_ATTR_IDMAP): Linux 5.12, per file system: ext4,
#    xfs, vfat 5.12; btrfs 5.15; tmpfs only 6.3. overlayfs accepts idmapped lower layers only
#    since 5.19. Nothing is copied.
#  - shifted copies: any kernel. Each layer is copied once per id range with its owners moved
#    into the range (images/store.shifted_layer), as docker's userns-remap does; costs disk.
LayersMode = Literal["idmapped", "shifted"]
LAYERS_ENV = "MINIRUN_LAYERS"  # idmapped | shifted | auto (unset): force one way, for tests too


def layers_mode() -> LayersMode:
    """idmapped where this kernel can idmap the store's file system and stack overlay on it,
    else shifted copies; MINIRUN_LAYERS forces either."""
    forced = os.environ.get(LAYERS_ENV, "auto")
    if forced in ("idmapped", "shifted"):
        return forced  # type: ignore[return-value]
    if forced != "auto":
        raise MinirunError(f"invalid {LAYERS_ENV}={forced!r}: expected idmapped, shifted or auto")
    kernel_version = _kernel_version()
    if kernel_version < (5, 19):
        return "shifted"
    if kernel_version < (6, 3) and _fs_type(paths.store_dir()) == "tmpfs":
        return "shifted"
    return "idmapped"


def _kernel_version() -> tuple[int, int]:
    release = os.uname().release  # "6.1.0-57-amd64"
    parts = release.split("-")[0].split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


def _fs_type(path: Path) -> str:
    """The file system type of the mount holding `path` (the longest mount point above it)."""
    best, fstype = "", ""
    target = str(path.resolve()) if path.exists() else str(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mountpoint = fields[4]
            if (target == mountpoint or target.startswith(mountpoint.rstrip("/") + "/")) \
                    and len(mountpoint) >= len(best):
                best, fstype = mountpoint, fields[fields.index("-") + 1]
    return fstype


def layer_dirs(layers: list[Path], mapping: IdMapping, store: Path) -> list[Path]:
    """The lower directories a container stacks: the image's own, or their shifted copies."""
    if not mapping.shifted_layers:
        return layers
    from minirun.images import store as image_store

    uid, gid, count = mapping.uids[0].outside, mapping.gids[0].outside, mapping.uids[0].count
    return [image_store.shifted_layer(store, layer, uid, gid, count) for layer in layers]


def shown_layers(mapping: IdMapping) -> str:
    """For `inspect` (HostConfig.LayersMode): how the container's root sees the image's files."""
    if not mapping.idmap_layers:
        return "as is"  # --userns=host or rootless: the ids on disk are the container's
    return "shifted copies" if mapping.shifted_layers else "idmapped"


def idmapped_layers(pid: int, layers: Sequence[str], idmap: bool = True) -> list[int]:
    """Detached copies of the image layers that show file owners through the container's map.

    The layers on disk are owned by host root (uid 0), which a remapped namespace does not map:
    inside, every file would belong to "nobody" (65534) and root could not even chown its own
    /etc. An idmapped mount (mount_setattr(2), MOUNT_ATTR_IDMAP) translates owners through the
    user namespace of `pid` instead: host 0 shows as 0 inside, and a file the container creates
    as its root lands on disk as host uid 1000000. Nothing is copied or chowned, so one layer
    serves any number of containers and ranges; overlay accepts idmapped lower layers since
    Linux 5.19. Only the parent may do this: it needs CAP_SYS_ADMIN in the initial namespace.
    The child attaches them with move_mount(2) inside its own mount namespace (rootfs.py).
    idmap=False (shifted copies, whose owners are right on disk): plain detached clones.
    """
    userns_fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    fds: list[int] = []
    try:
        for layer in layers:
            fds.append(kernel.open_tree(layer, kernel.OPEN_TREE_CLONE | kernel.AT_RECURSIVE))
            if idmap:
                kernel.mount_setattr(fds[-1], kernel.MOUNT_ATTR_IDMAP, userns_fd)
    except OSError as e:
        for fd in fds:
            os.close(fd)
        raise MinirunError(f"cannot make idmapped mounts of the image layers ({e}); "
                           "use --userns=host (needs Linux 5.19+ and a file system supporting them)") from e
    finally:
        os.close(userns_fd)
    return fds


def bind_attributes(bind: BindMount) -> int:
    """The mount_setattr(2) flags of a -v mount: ro, and nosuid/nodev unless suid/dev were asked."""
    wanted = ((bind.readonly, kernel.MOUNT_ATTR_RDONLY), (bind.nosuid, kernel.MOUNT_ATTR_NOSUID),
              (bind.nodev, kernel.MOUNT_ATTR_NODEV), (bind.noexec, kernel.MOUNT_ATTR_NOEXEC))
    return sum(flag for on, flag in wanted if on)


def detached_binds(binds: Sequence[BindMount]) -> list[int]:
    """A detached clone of each -v source (open_tree(2)), with its flags (read-only for `:ro`,
    nosuid and nodev by default) set on every mount below it (mount_setattr(2)). Done by the parent
    because a remapped root may not be able to look the path up at all; the child attaches the
    clones (rootfs.bind_volumes). What the container may then do with the files is still decided
    by their owners: host root's files are "nobody" to a remapped root (see README, "Security")."""
    fds: list[int] = []
    try:
        for bind in binds:
            fds.append(kernel.open_tree(bind.source, kernel.OPEN_TREE_CLONE | kernel.AT_RECURSIVE))
            if bind_attributes(bind):
                kernel.mount_setattr(fds[-1], bind_attributes(bind))
    except OSError as e:
        for fd in fds:
            os.close(fd)
        raise MinirunError(f"cannot prepare volume: {e}") from e
    return fds


def give_bundle_to_root(bundle: Path, mapping: IdMapping) -> None:
    """The container's own directory belongs to its root (the first host id of its range), mode
    0700: overlay writes into upper/ as that user, and no one else but host root may enter. The
    shared parent stays root's alone, 0700 (container.make_bundle): the child enters its own
    directory through an fd (rootfs.enter_bundle), never through the parent's path."""
    uid, gid = mapping.uids[0].outside, mapping.gids[0].outside
    os.chown(bundle, uid, gid)
    for entry in bundle.iterdir():
        os.chown(entry, uid, gid, follow_symlinks=False)
        if entry.name == "lower":
            for layer_dir in entry.iterdir():
                os.chown(layer_dir, uid, gid)


def check_kernel_allows(rootless: bool) -> None:
    """Fail early, with the fix, where the host forbids unprivileged user namespaces."""
    if not rootless:
        return
    checks = [
        ("/proc/sys/user/max_user_namespaces", "0",
         "user namespaces are disabled (user.max_user_namespaces = 0); "
         "fix: sysctl -w user.max_user_namespaces=15000"),
        ("/proc/sys/kernel/unprivileged_userns_clone", "0",
         "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0); "
         "fix: sysctl -w kernel.unprivileged_userns_clone=1"),
        # Ubuntu 23.10+: AppArmor lets only profiled programs create user namespaces.
        ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1",
         "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns"
         " = 1); fix: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or add an AppArmor "
         "profile allowing `userns` for minirun's python"),
    ]
    for path, bad, message in checks:
        try:
            if Path(path).read_text().strip() == bad:
                raise MinirunError(message)
        except OSError:
            continue


def write_maps(pid: int, mapping: IdMapping) -> None:
    """Map ids for the child `pid`, which waits (blocked on the sync socket) until this is done."""
    if mapping.helpers:
        # The two helpers are independent: start both, then wait for both (each one is the exec
        # of a setuid program, which costs milliseconds; side by side they cost one).
        running = {}
        for helper, maps in (("newuidmap", mapping.uids), ("newgidmap", mapping.gids)):
            args = [helper, str(pid)] + [str(n) for m in maps for n in (m.inside, m.outside, m.count)]
            running[helper] = _spawn(args)
        failures = []
        for helper, (child, errors) in running.items():
            with os.fdopen(errors, "rb") as f:
                error = f.read().decode(errors="replace")
            code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
            if code != 0:
                failures.append(f"{helper} failed: {error.strip() or code}")
        if failures:
            raise MinirunError("; ".join(failures))
        return
    with open(f"/proc/{pid}/uid_map", "w") as f:
        f.write("\n".join(m.line() for m in mapping.uids))
    if os.geteuid() != 0:
        with open(f"/proc/{pid}/setgroups", "w") as f:
            f.write("deny")
    with open(f"/proc/{pid}/gid_map", "w") as f:
        f.write("\n".join(m.line() for m in mapping.gids))


def _spawn(argv: list[str]) -> tuple[int, int]:
    """Start `argv` (its program found on $PATH) with stdout on /dev/null and stderr on a pipe:
    its pid and the pipe's read end. posix_spawn(3), not subprocess: importing subprocess (and
    threading with it) would cost every rootless start ~2 ms. Our own descriptors are all
    close-on-exec (Python's default, pidfds, the sync socket), so the helper gets only 0, 1, 2
    and what minirun itself inherited, as when the user runs it from the shell."""
    errors, errors_w = os.pipe2(os.O_CLOEXEC)
    try:
        child = os.posix_spawnp(argv[0], argv, os.environ, file_actions=[
            (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
            (os.POSIX_SPAWN_DUP2, errors_w, 2),  # dup2 clears close-on-exec on the copy
        ])
    except BaseException:
        os.close(errors)
        raise
    finally:
        os.close(errors_w)
    return child, errors


def of_process(pid: int, rootless: bool) -> IdMapping:
    """The id map of `pid`'s user namespace, for a container that joins it (minirun/sharing.py):
    the maps are already written, so nothing is to be done with them but to know them."""
    def read(kind: str) -> list[IdMap]:
        try:
            with open(f"/proc/{pid}/{kind}_map") as f:
                return [IdMap(*map(int, line.split())) for line in f if line.strip()]
        except (OSError, ValueError, TypeError):
            raise MinirunError("the container to join has exited") from None

    uids, gids = read("uid"), read("gid")
    identity = uids == [IdMap(0, 0, 4294967295)]
    return IdMapping(tuple(uids), tuple(gids), helpers=False, idmap_layers=not rootless and not identity)
