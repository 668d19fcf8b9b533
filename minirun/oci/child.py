"""The container's process under `minirun-oci create`: from clone(2) to the exec fifo, then execve.

The same story as minirun/process.py (and the same steps, reused: namespace root, pivot_root,
bounding set, seccomp, user, capabilities, no_new_privs, signals, fds), told for a bundle:
the mounts, devices and paths come from config.json instead of docker's fixed set. It runs
in the cloned process and never returns. Until create's parent has its answer (EOF on the
sync socket) an error travels back as "error CODE MESSAGE"; after that, nobody listens but
the container's own stderr.
"""

import contextlib
import os
import resource
import socket
import stat
from dataclasses import dataclass
from typing import NoReturn

from minirun import helper, kernel, pid1, process, rootfs, sync, trace, tty
from minirun.errors import RUNTIME_ERROR, MinirunError
from minirun.kernel import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT
from minirun.oci import hooks
from minirun.oci.config import NAMESPACE_FLAGS, Config, Process
from minirun.security import capabilities

MS_SYNCHRONOUS, MS_MANDLOCK, MS_DIRSYNC, MS_NOATIME, MS_NODIRATIME = 0x10, 0x40, 0x80, 0x400, 0x800
MS_UNBINDABLE, MS_SLAVE, MS_SHARED, MS_RELATIME, MS_STRICTATIME = (
    0x20000,
    0x80000,
    0x100000,
    0x200000,
    0x1000000,
)
# mount(8)'s option words: (flags set, flags cleared). The rest is the file system's data.
FLAGS = {
    "ro": (MS_RDONLY, 0),
    "rw": (0, MS_RDONLY),
    "nosuid": (MS_NOSUID, 0),
    "suid": (0, MS_NOSUID),
    "nodev": (MS_NODEV, 0),
    "dev": (0, MS_NODEV),
    "noexec": (MS_NOEXEC, 0),
    "exec": (0, MS_NOEXEC),
    "sync": (MS_SYNCHRONOUS, 0),
    "async": (0, MS_SYNCHRONOUS),
    "dirsync": (MS_DIRSYNC, 0),
    "mand": (MS_MANDLOCK, 0),
    "nomand": (0, MS_MANDLOCK),
    "noatime": (MS_NOATIME, 0),
    "atime": (0, MS_NOATIME),
    "nodiratime": (MS_NODIRATIME, 0),
    "diratime": (0, MS_NODIRATIME),
    "relatime": (MS_RELATIME, 0),
    "norelatime": (0, MS_RELATIME),
    "strictatime": (MS_STRICTATIME, 0),
    "nostrictatime": (0, MS_STRICTATIME),
    "bind": (MS_BIND, 0),
    "rbind": (MS_BIND | MS_REC, 0),
    "remount": (MS_REMOUNT, 0),
    "defaults": (0, 0),
}
PROPAGATION = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}
IGNORED = {"tmpcopyup", "idmap", "ridmap", "copy-symlink", "notmpcopyup"}  # engines' hints for runc/crun
# The devices every container gets (config-linux.md, "Default Devices"), and its /dev links.
DEFAULT_DEVICES = (
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
)
DEV_LINKS = {
    "/dev/fd": "/proc/self/fd",
    "/dev/stdin": "/proc/self/fd/0",
    "/dev/stdout": "/proc/self/fd/1",
    "/dev/stderr": "/proc/self/fd/2",
}


@dataclass(frozen=True)
class ChildPlan:
    """Everything the child needs, decided and opened by create before clone."""

    config: Config
    seccomp_filter: bytes | None
    fifo_fd: int  # O_PATH fd of ROOT/ID/exec.fifo: reopened for writing after pivot_root
    console_fd: int  # connected --console-socket, or -1
    join_fds: dict[str, int]  # namespace type -> an open fd of the path to join
    state: dict[str, object]  # for the in-container hooks' stdin
    preserve_fds: int = 0  # --preserve-fds N: fds 3 .. 3+N-1 go to the program as they are
    fifo_path: str = ""  # ROOT/ID/exec.fifo as the host sees it (for --explain)
    host_proc: int = -1  # with process.apparmorProfile: the host's /proc (apparmor_on_exec)


def parse_options(options: list[str]) -> tuple[int, int, str]:
    """(mount flags, propagation flags, data) of a mount's options."""
    flags = propagation = 0
    data = []
    for option in options:
        if option in FLAGS:
            on, off = FLAGS[option]
            flags = (flags | on) & ~off
        elif option in PROPAGATION:
            propagation |= PROPAGATION[option]
        elif option not in IGNORED:
            data.append(option)
    return flags, propagation, ",".join(data)


def run(plan: ChildPlan, sock: socket.socket) -> NoReturn:
    config = plan.config
    code = RUNTIME_ERROR
    try:
        kernel.prctl(kernel.PR_SET_PDEATHSIG, 9)  # until create has its answer; cleared below
        mount_fds = sync.expect(sock, "go").fds
        for fd in mount_fds:
            os.close(fd)
        # Not dumpable before it joins namespaces by path (podman's pods share them): from that
        # setns on, the other container's root could ptrace us, the host's python until execve
        # (helper.not_dumpable). Born so already when create's helper cloned it into a pod's user
        # namespace; the parent needs our /proc files no more.
        helper.not_dumpable()
        join_namespaces(plan.join_fds)
        if "user" in config.namespaces:
            process.become_namespace_root()  # setresuid(0) in the new user namespace (user_namespaces(7))
        else:
            process.guard_process()
        if config.namespaces.get("cgroup") == "":  # new, not joined
            kernel.unshare(kernel.CLONE_NEWCGROUP)  # now that the parent moved us into our cgroup
        if config.hostname is not None and "uts" in config.namespaces:
            kernel.sethostname(config.hostname)
        if config.namespaces.get("network") == "":
            kernel.set_link_up("lo")
        if "mount" not in config.namespaces:
            raise MinirunError("config.json: a mount namespace is required (linux.namespaces type mount)")
        trace.mark("oci: namespaces", "child", namespaces=config.namespaces, hostname=config.hostname)
        build_rootfs(plan)
        setup_stdio(plan)
        trace.mark("oci: stdio", "child", terminal=config.process.terminal)
        for kind, soft, hard in config.process.rlimits:
            try:
                resource.setrlimit(kind, (soft, hard))
            except (OSError, ValueError) as e:
                raise MinirunError(f"setrlimit {kind} {soft}:{hard}: {e}") from None
        with contextlib.suppress(OSError):
            os.makedirs(config.process.cwd, exist_ok=True)
        process.reset_signals()
        # Before seccomp, whose profile may not know close_range(2).
        close_inherited_fds(plan.preserve_fds)
        apparmor_on_exec(plan.host_proc, config.process.apparmor_profile)
        apply_security(config.process, plan.seccomp_filter)
        trace.mark("oci: capabilities, seccomp, user", "child", bpf=plan.seccomp_filter,
                   nnp=config.process.no_new_privileges)
        try:
            os.chdir(config.process.cwd)
        except OSError as e:
            raise MinirunError(f"process.cwd {config.process.cwd}: {e.strerror}") from None
        trace.mark("oci: cwd; the sync socket closes", "child", fifo=plan.fifo_path)
        kernel.prctl(kernel.PR_SET_PDEATHSIG, 0)  # create exits now; we are not to die with it
    except MinirunError as e:
        _report(sock, e.code, str(e))
        os._exit(e.code)
    except BaseException as e:  # one line, never a traceback
        _report(sock, code, f"container setup failed: {e}")
        os._exit(code)
    sock.close()  # EOF: create records "created" and exits; we wait at the fifo
    try:
        wait_for_start(plan.fifo_fd)
        trace.mark("oci: start opened the exec fifo", "child")
        hooks.exec_in_container("startContainer", config.hooks.get("startContainer", []), plan.state)
        trace.mark("oci: execve", "child", argv=config.process.args, preserved=plan.preserve_fds)
        pid1.execute(config.process.args, config.process.env)
    except MinirunError as e:
        code = e.code
        with contextlib.suppress(OSError):
            os.write(2, f"minirun-oci: {e}\n".encode())
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.write(2, f"minirun-oci: {e}\n".encode())
    os._exit(code)


def open_host_proc(profile: str) -> int:
    """For an AppArmor profile: an O_PATH fd of the host's /proc, opened before any namespace is
    joined or made (apparmor_on_exec); -1 without one."""
    return os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) if profile else -1


def apparmor_on_exec(host_proc: int, profile: str) -> None:
    """Confine the program by `profile` from its execve on: "exec PROFILE" into this thread's
    attr/apparmor/exec (attr/exec before Linux 5.8; the kernel's apparmor.rst, "change_onexec"),
    as runc does, before the capabilities go and seccomp comes. Through the host's /proc, opened
    before the container's: a /proc of the container's making (a joined mount namespace, a
    volume over it) could be a fake where the write confines nothing (CVE-2019-16884).
    thread-self there names this thread by its pid in the host's PID namespace. A profile the
    kernel has not loaded: ENOENT, one line."""
    if not profile:
        return
    try:
        for attr in ("thread-self/attr/apparmor/exec", "thread-self/attr/exec"):
            try:
                fd = os.open(attr, os.O_WRONLY | os.O_CLOEXEC, dir_fd=host_proc)
            except FileNotFoundError:
                continue
            try:
                os.write(fd, f"exec {profile}".encode())
            except OSError as e:
                raise MinirunError(f"apparmor profile {profile!r}: {e.strerror}") from None
            finally:
                os.close(fd)
            return
        raise MinirunError(f"apparmor profile {profile!r}: this kernel has no attr/apparmor/exec")
    finally:
        os.close(host_proc)


def close_inherited_fds(preserve: int) -> None:
    """Only 0, 1, 2 and the --preserve-fds ones (3 .. 3+N-1, as create's or exec's caller
    passed them; LISTEN_FDS in process.env is the caller's business) reach the program: every
    other fd is close-on-exec (close_range(2)), so a host directory fd cannot be the program's
    working directory or a path out of its root (CVE-2024-21626)."""
    kernel.close_range_cloexec(3 + preserve)
    for fd in range(3, 3 + preserve):
        os.set_inheritable(fd, True)


def _report(sock: socket.socket, code: int, message: str) -> None:
    with contextlib.suppress(OSError):
        sync.send_error(sock, code, message)


def join_namespaces(fds: dict[str, int]) -> None:
    """setns(2) into each namespace given by path, which the kernel checks with the capabilities
    we hold in our user namespace (joined already, if it was given by path)."""
    for kind in fds:
        if kind in ("pid", "user"):
            # joined before clone: pid because it applies to children only, user so that the
            # namespaces clone made are its own (create.clone_in_user_namespace)
            continue
        try:
            kernel.setns(fds[kind], NAMESPACE_FLAGS[kind])
        except OSError as e:
            raise MinirunError(f"cannot join the {kind} namespace: {e}") from None
        os.close(fds[kind])


def build_rootfs(plan: ChildPlan) -> None:
    """The mounts of config.json on root.path, in order; devices; hooks; pivot_root; the
    masked and read-only paths; sysctls; a read-only root. mount_namespaces(7), pivot_root(2)."""
    config = plan.config
    # Nothing we mount may reach the host while we build: rslave (runc's default), rprivate if
    # asked; what linux.rootfsPropagation asks for is set on the new "/" after pivot_root, which
    # refuses a shared parent (pivot_root(2)) and cannot bind an unbindable one.
    private = config.rootfs_propagation in ("private", "rprivate")
    kernel.mount(None, "/", None, (MS_PRIVATE if private else MS_SLAVE) | MS_REC)
    kernel.mount(config.root, config.root, None, MS_BIND | MS_REC)  # pivot_root wants a mount point
    root_fd = os.open(config.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for m in config.mounts:
            mount_one(root_fd, config, m.destination, m.type, m.source, m.options)
        make_devices(root_fd, config)
        hooks.exec_in_container("createContainer", config.hooks.get("createContainer", []), plan.state)
        trace.mark("oci: mounts", "child", root=config.root, mounts=config.mounts)
    finally:
        os.close(root_fd)
    rootfs.pivot_into(config.root)
    trace.mark("pivot_root", "child")
    if config.rootfs_propagation:
        kernel.mount(None, "/", None, PROPAGATION[config.rootfs_propagation])
    for key, value in config.sysctl.items():
        try:
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(value)
        except OSError as e:
            raise MinirunError(f"sysctl {key}={value}: {e.strerror}") from None
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for path in config.masked_paths:
            rootfs.mask_path(root, path)
        for path in config.readonly_paths:
            rootfs.read_only_path(root, path)
    finally:
        os.close(root)
    if config.root_readonly:
        kernel.mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | rootfs.locked_flags("/"))
    trace.mark("oci: sysctl, masked and read-only paths", "child", masked=config.masked_paths,
               readonly=config.readonly_paths, sysctl=config.sysctl, root_readonly=config.root_readonly)


def mount_one(
    root_fd: int, config: Config, destination: str, fstype: str, source: str, options: list[str]
) -> None:
    flags, propagation, data = parse_options(options)
    bind = bool(flags & MS_BIND) or fstype in ("bind", "rbind")
    if bind:
        if fstype == "rbind":
            flags |= MS_REC
        host = source if source.startswith("/") else os.path.join(config.bundle, source)
        create = "dir" if os.path.isdir(host) else "file"
        rootfs.mount_in_root(root_fd, host, destination, None, MS_BIND | (flags & MS_REC), create=create)
        rest = flags & ~(MS_BIND | MS_REC | MS_REMOUNT)
        if rest:  # a bind takes its flags only from a second call (mount(2), "Creating a bind mount")
            rootfs.mount_in_root(
                root_fd, None, destination, None, MS_BIND | MS_REMOUNT | rest | rootfs.locked_flags(host)
            )
    elif fstype == "cgroup":
        # The hierarchies as our cgroup namespace shows them (read-only), in the host's layout;
        # without a cgroup namespace, only our own cgroup of each. Like runc, only at the usual place.
        if destination == "/sys/fs/cgroup":
            rootfs.mount_cgroupfs(root_fd, own_only="cgroup" not in config.namespaces)
    else:
        rootfs.mount_in_root(root_fd, source or fstype, destination, fstype or None, flags, data or None)
    if propagation:
        rootfs.mount_in_root(root_fd, None, destination, None, propagation)


def make_devices(root_fd: int, config: Config) -> None:
    """linux.devices and the default ones: mknod(2) when we may (no user namespace), else a bind
    of the host's node (a user namespace may not create devices); then the /dev links."""
    wanted = {d.path: d for d in config.devices}
    defaults = [(path, major, minor) for path, major, minor in DEFAULT_DEVICES if path not in wanted]
    in_userns = "user" in config.namespaces
    kinds = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
    items = [(d.path, d.type, d.major, d.minor, d.mode, d.uid, d.gid) for d in config.devices]
    items += [(path, "c", major, minor, 0o666, 0, 0) for path, major, minor in defaults]
    for path, kind, major, minor, mode, uid, gid in items:
        parent, name = os.path.split(os.path.normpath(path))
        dir_fd = rootfs.open_in_root(root_fd, parent, "dir")
        try:
            where = f"/proc/self/fd/{dir_fd}/{name}"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(where)
            if in_userns and kind != "p":
                open(where, "w").close()
                kernel.mount(path, where, None, MS_BIND)
                continue
            os.mknod(
                where, (mode if mode is not None else 0o666) & 0o7777 | kinds[kind], os.makedev(major, minor)
            )
            os.chmod(where, (mode if mode is not None else 0o666) & 0o7777)
            os.chown(where, uid or 0, gid or 0)
        finally:
            os.close(dir_fd)
    dev = rootfs.open_in_root(root_fd, "/dev", "dir")
    try:
        for link, target in DEV_LINKS.items():
            with contextlib.suppress(FileExistsError):
                os.symlink(target, f"/proc/self/fd/{dev}/{os.path.basename(link)}")
        if os.path.isdir(f"/proc/self/fd/{dev}/pts"):
            ptmx = f"/proc/self/fd/{dev}/ptmx"
            if not os.path.lexists(ptmx):
                os.symlink("pts/ptmx", ptmx)
    finally:
        os.close(dev)


def setup_stdio(plan: ChildPlan) -> None:
    """A new session. With process.terminal, a pty from the container's devpts: /dev/console is
    its slave, and its master goes to whoever listens on --console-socket (SCM_RIGHTS, unix(7)),
    conmon under podman. Without, the stdio create inherited stays the container's."""
    os.setsid()
    if not plan.config.process.terminal:
        return
    if plan.console_fd < 0:
        raise MinirunError("process.terminal needs --console-socket")
    slave = pty_to_console_socket(plan.console_fd)
    with contextlib.suppress(OSError):
        if not os.path.exists("/dev/console"):
            open("/dev/console", "w").close()
        kernel.mount(os.ttyname(slave), "/dev/console", None, MS_BIND)
    tty.make_controlling_terminal(slave)


def pty_to_console_socket(console_fd: int) -> int:
    """A pty from the container's devpts; its master goes to --console-socket (SCM_RIGHTS),
    which is closed after. Returns the slave (create's process and exec's)."""
    master, slave = tty.open_pty_in_container()
    console = socket.socket(fileno=console_fd)
    try:
        sync.send(console, "pty", fds=[master])
    except OSError as e:  # EPIPE/ECONNRESET: the listener closed its end before reading it
        raise MinirunError(f"--console-socket: cannot send the terminal: {e.strerror}") from None
    finally:
        console.close()
        os.close(master)
    return slave


def apply_security(proc: Process, seccomp_filter: bytes | None) -> None:
    """The order of minirun/security/__init__.py, with the spec's five capability sets."""
    caps = proc.capabilities
    if caps is not None:
        capabilities.drop_bounding(caps.bounding)
    if seccomp_filter is not None and not proc.no_new_privileges:
        kernel.seccomp_set_filter(seccomp_filter)
    kernel.prctl(kernel.PR_SET_KEEPCAPS, 1)  # a non-root user keeps its permitted set (capabilities(7))
    try:
        os.setgroups(proc.additional_gids)
    except PermissionError:
        if proc.additional_gids:
            raise
    try:
        os.setresgid(proc.gid, proc.gid, proc.gid)
        os.setresuid(proc.uid, proc.uid, proc.uid)
    except OSError as e:
        raise MinirunError(f"cannot switch to uid {proc.uid} gid {proc.gid}: {e.strerror}") from None
    process.guard_process()  # a change of ids cleared the death signal and dumpable flag
    kernel.prctl(kernel.PR_SET_KEEPCAPS, 0)
    if caps is not None:
        kernel.capset(
            capabilities.mask(caps.effective),
            capabilities.mask(caps.permitted),
            capabilities.mask(caps.inheritable),
        )
        kernel.clear_ambient()
        for name in sorted(caps.ambient):
            with contextlib.suppress(OSError):  # as runc: an ambient capability not permitted is skipped
                kernel.raise_ambient(capabilities.NUMBERS[name])
    if proc.umask is not None:
        os.umask(proc.umask)
    if proc.no_new_privileges:
        kernel.prctl(kernel.PR_SET_NO_NEW_PRIVS, 1)
        if seccomp_filter is not None:
            kernel.seccomp_set_filter(seccomp_filter)


def wait_for_start(fifo_fd: int) -> None:
    """Block until `start` opens the fifo for reading (fifo(7): opening a fifo for writing
    waits for a reader), then tell it we are going. Reopened through /proc/self/fd: the path
    on the host is out of sight since pivot_root. The write end stays open, close-on-exec:
    its closing by a successful execve(2) is `start`'s EOF, "the program runs" (poststart's
    moment), as the sync socket's is create's."""
    fd = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    os.write(fd, b"0")
    os.close(fifo_fd)
