"""The only place minirun talks to the kernel through ctypes.

Python's os module covers fork, exec, setresuid, pipes and most of what a container needs, but
not the namespace and mount system calls. They are wrapped here, one small function each, so
that every other module reads as plain Python. Each wrapper turns a failure into an OSError
that names the system call, e.g. `OSError: [Errno 1] mount(proc on /x/proc): Operation not
permitted`, because "Operation not permitted" alone does not tell a learner which step failed.

Man pages: clone(2), unshare(2), setns(2), mount(2), umount(2), pivot_root(2),
sethostname(2), prctl(2), close_range(2), openat2(2).
"""

import ctypes
import fcntl
import os
import socket
import struct

# --- flags, from <linux/sched.h> and <sys/mount.h> ------------------------------------------

CLONE_PARENT = 0x00008000  # the child's parent is the caller's parent (exec: the CLI waits for it)
CLONE_NEWNS = 0x00020000  # mount namespace (the first namespace Linux had, hence the vague name)
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000  # hostname and NIS domain name
CLONE_NEWIPC = 0x08000000  # System V IPC and POSIX message queues
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_INTO_CGROUP = 0x200000000  # clone3(2) only: the child is born in the cgroup args.cgroup names

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_STRICTATIME = 0x1000000

MNT_DETACH = 0x2  # lazy unmount: detach now, free when the last user lets go

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_CAP_AMBIENT_RAISE = 2
PR_SET_KEEPCAPS = 8  # keep the permitted set across a change from uid 0 (capabilities(7))

# open_tree(2), mount_setattr(2), move_mount(2): the "new mount API" (Linux 5.2 / 5.12)
OPEN_TREE_CLONE = 0x1
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR_IDMAP = 0x100000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40

CLOSE_RANGE_CLOEXEC = 0x4

# openat2(2) resolve flags
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_IN_ROOT = 0x10

# System call numbers that glibc has no wrapper for (or had none until recently).
_SYSCALLS = {
    "x86_64": {"clone": 56, "clone3": 435, "pivot_root": 155, "setns": 308, "close_range": 436,
               "openat2": 437, "open_tree": 428, "move_mount": 429, "mount_setattr": 442, "seccomp": 317,
               "bpf": 321},
    "aarch64": {"clone": 220, "clone3": 435, "pivot_root": 41, "setns": 268, "close_range": 436,
                "openat2": 437, "open_tree": 428, "move_mount": 429, "mount_setattr": 442, "seccomp": 277,
                "bpf": 280},
}
_NR = _SYSCALLS.get(os.uname().machine, _SYSCALLS["x86_64"])

# CDLL releases the GIL around each call; that is what we want for ordinary system calls.
_libc = ctypes.CDLL(None, use_errno=True)
# PyDLL keeps the GIL held during the call. clone() must be called that way: see clone().
_libc_gil = ctypes.PyDLL(None, use_errno=True)


def _check(result: int, what: str) -> int:
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _path(p: str | bytes | os.PathLike[str] | None) -> bytes | None:
    return None if p is None else os.fsencode(p)


# --- processes and namespaces ---------------------------------------------------------------


def clone(flags: int) -> int:
    """Create a child process in new namespaces; returns 0 in the child, its pid in the parent.

    This is the raw clone system call used the way fork(2) uses it: no new stack is given,
    so the child continues on a copy-on-write copy of the parent's stack and returns from
    this very function, exactly like fork(). That is safe for a Python program only if:
      - the process is single-threaded (minirun never starts threads before this point),
      - the interpreter is told, as os.fork() does, via PyOS_BeforeFork / PyOS_AfterFork_*
        (they take and reset the import lock and run os.register_at_fork hooks),
      - the GIL is held across the call (PyDLL), so both processes own their GIL after it.
    SIGCHLD in the low byte makes the child report its exit to us like a forked child, so
    os.waitpid() works. Unlike unshare(2)+fork(2), one clone gives a child that is already
    PID 1 of its new PID namespace.
    """
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    pid = _libc_gil.syscall(_NR["clone"], ctypes.c_ulong(flags | 17), None, None, None, None)
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    api.PyOS_AfterFork_Parent()
    return _check(pid, f"clone({describe_namespaces(flags)})")


class _CloneArgs(ctypes.Structure):
    """struct clone_args of clone3(2), up to `cgroup` (CLONE_ARGS_SIZE_VER2, 88 bytes, Linux 5.7)."""

    _fields_ = [(name, ctypes.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size", "tls",
        "set_tid", "set_tid_size", "cgroup")]


def clone_into_cgroup(flags: int, cgroup_fd: int) -> int:
    """clone() whose child is born in the cgroup v2 directory `cgroup_fd` (clone3(2),
    CLONE_INTO_CGROUP, Linux 5.7): no write to cgroup.procs afterwards, so no migration. Moving a
    process takes cgroup_threadgroup_rwsem for writing, whose first taker waits for an RCU grace
    period (~10 ms here, README "Start-up time"); being born there takes only its read side.
    Returns 0 in the child and its pid in the parent, like clone() above and with the same care
    for the interpreter; stack 0 and stack_size 0 make clone3 continue on a copy of this stack,
    as fork(2) does. Raises OSError when the kernel cannot (ENOSYS before 5.7, E2BIG, EBUSY for a
    cgroup with controllers enabled for its children, EOPNOTSUPP for a v1 directory): nothing
    was created then, and the caller may clone() and move the child instead."""
    args = _CloneArgs(flags=flags | CLONE_INTO_CGROUP, exit_signal=17, cgroup=cgroup_fd)  # SIGCHLD
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    pid = _libc_gil.syscall(_NR["clone3"], ctypes.byref(args), ctypes.c_size_t(ctypes.sizeof(args)))
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    api.PyOS_AfterFork_Parent()
    if pid == -1:
        raise OSError(err, f"clone3({describe_namespaces(flags)}, CLONE_INTO_CGROUP): {os.strerror(err)}")
    return int(pid)


def describe_namespaces(flags: int) -> str:
    names = {CLONE_NEWUSER: "user", CLONE_NEWPID: "pid", CLONE_NEWNS: "mnt", CLONE_NEWUTS: "uts",
             CLONE_NEWIPC: "ipc", CLONE_NEWNET: "net", CLONE_NEWCGROUP: "cgroup"}
    return "|".join(name for flag, name in names.items() if flags & flag) or "none"


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), f"unshare({describe_namespaces(flags)})")


def pidfd_open(pid: int) -> int:
    """A file descriptor that names process `pid` for good (pidfd_open(2), Linux 5.3): it is never
    another process's, even after the pid is reused. (os.pidfd_open, with the syscall named.)"""
    try:
        return os.pidfd_open(pid)
    except OSError as e:
        raise OSError(e.errno, f"pidfd_open({pid}): {e.strerror}") from None


def setns(fd: int, nstype: int = 0) -> None:
    """Join the namespace that `fd` (an open /proc/PID/ns/* file) refers to; or, when `fd` is a
    pidfd (os.pidfd_open), every namespace of that process named in `nstype`, in one call (Linux 5.8)."""
    _check(_libc.syscall(_NR["setns"], ctypes.c_int(fd), ctypes.c_int(nstype)),
           f"setns({describe_namespaces(nstype)})")


def prctl(option: int, arg2: int = 0) -> None:
    _check(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(0),
                       ctypes.c_ulong(0), ctypes.c_ulong(0)), f"prctl({option})")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), f"sethostname({name})")


def close_range_cloexec(first: int) -> None:
    """Mark every fd >= first close-on-exec, so nothing but 0, 1, 2 reaches the container."""
    _check(_libc.syscall(_NR["close_range"], ctypes.c_uint(first), ctypes.c_uint(0xFFFFFFFF),
                         ctypes.c_uint(CLOSE_RANGE_CLOEXEC)), "close_range")


# --- capabilities (capabilities(7), capget(2)) ----------------------------------------------

_LINUX_CAPABILITY_VERSION_3 = 0x20080522  # 64-bit sets, as two 32-bit halves


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set this thread's capability sets (bit N = capability number N)."""
    header, data = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0), (_CapData * 2)()
    for i in (0, 1):
        data[i].effective = (effective >> (32 * i)) & 0xFFFFFFFF
        data[i].permitted = (permitted >> (32 * i)) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> (32 * i)) & 0xFFFFFFFF
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def drop_bounding(cap: int) -> None:
    """Remove one capability from the bounding set: no execve can ever give it back."""
    prctl(PR_CAPBSET_DROP, cap)


def clear_ambient() -> None:
    _check(_libc.prctl(ctypes.c_int(PR_CAP_AMBIENT), ctypes.c_ulong(PR_CAP_AMBIENT_CLEAR_ALL),
                       ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)), "prctl(PR_CAP_AMBIENT)")


def raise_ambient(cap: int) -> None:
    """Add one capability to the ambient set (it must be permitted and inheritable already)."""
    _check(_libc.prctl(ctypes.c_int(PR_CAP_AMBIENT), ctypes.c_ulong(PR_CAP_AMBIENT_RAISE),
                       ctypes.c_ulong(cap), ctypes.c_ulong(0), ctypes.c_ulong(0)),
           "prctl(PR_CAP_AMBIENT_RAISE)")


# --- seccomp (seccomp(2)) ----------------------------------------------------------------------

SECCOMP_SET_MODE_FILTER = 1


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def seccomp_set_filter(bpf: bytes) -> None:
    """Install a compiled classic-BPF filter (struct sock_filter[], 8 bytes per instruction).

    The caller needs no_new_privs set, or CAP_SYS_ADMIN in its user namespace: otherwise a
    filter could fool a setuid program it then execs (seccomp(2), EACCES).
    """
    prog = _SockFprog(len(bpf) // 8, bpf)
    _check(_libc.syscall(_NR["seccomp"], ctypes.c_uint(SECCOMP_SET_MODE_FILTER), ctypes.c_uint(0),
                         ctypes.byref(prog)), "seccomp(SECCOMP_SET_MODE_FILTER)")


# bpf(2): a cgroup device program (BPF_PROG_TYPE_CGROUP_DEVICE), what cgroup v2 has instead of
# v1's devices.allow/devices.deny files (Documentation/admin-guide/cgroup-v2.rst, "Device controller").
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6  # the attach type
BPF_F_ALLOW_MULTI = 2  # programs of the cgroups above keep running too: all of them must allow


class _BpfProgLoad(ctypes.Structure):  # the BPF_PROG_LOAD part of union bpf_attr
    _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32), ("insns", ctypes.c_uint64),
                ("license", ctypes.c_uint64), ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32),
                ("prog_flags", ctypes.c_uint32)]


class _BpfProgAttach(ctypes.Structure):  # the BPF_PROG_ATTACH part of union bpf_attr
    _fields_ = [("target_fd", ctypes.c_uint32), ("attach_bpf_fd", ctypes.c_uint32),
                ("attach_type", ctypes.c_uint32), ("attach_flags", ctypes.c_uint32)]


def bpf_load_device_program(insns: bytes) -> int:
    """Load an eBPF program (struct bpf_insn[], 8 bytes each) of type CGROUP_DEVICE; returns its fd.
    If the verifier refuses it, the load is repeated with its log on, and the log's end (the
    reason) comes back in the error. (With the log on, a log that does not fit is ENOSPC.)"""
    code, license_ = ctypes.create_string_buffer(insns, len(insns)), ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(1 << 20)
    for log_level in (0, 1):
        attr = _BpfProgLoad(BPF_PROG_TYPE_CGROUP_DEVICE, len(insns) // 8, ctypes.addressof(code),
                            ctypes.addressof(license_), log_level, len(log) if log_level else 0,
                            ctypes.addressof(log) if log_level else 0, 0, 0)
        fd = _libc.syscall(_NR["bpf"], ctypes.c_int(BPF_PROG_LOAD), ctypes.byref(attr), ctypes.sizeof(attr))
        if fd != -1:
            return int(fd)
        err = ctypes.get_errno()
    verifier = log.value.decode(errors="replace").strip().splitlines()[-3:]
    raise OSError(err, f"bpf(BPF_PROG_LOAD): {os.strerror(err)}: {'; '.join(verifier)}")


def bpf_attach_device_program(prog_fd: int, cgroup_fd: int) -> None:
    """Attach a loaded device program to a cgroup (v2 directory fd); the cgroup keeps it."""
    attr = _BpfProgAttach(cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)
    _check(_libc.syscall(_NR["bpf"], ctypes.c_int(BPF_PROG_ATTACH), ctypes.byref(attr), ctypes.sizeof(attr)),
           "bpf(BPF_PROG_ATTACH)")


# --- mounts -----------------------------------------------------------------------------------


def mount(source: str | None, target: str | os.PathLike[str], fstype: str | None = None,
          flags: int = 0, data: str | None = None) -> None:
    result = _libc.mount(_path(source), _path(target), _path(fstype), ctypes.c_ulong(flags),
                         None if data is None else data.encode())
    _check(result, f"mount({fstype or source or 'flags'} on {os.fsdecode(target)})")


def umount2(target: str | os.PathLike[str], flags: int = 0) -> None:
    _check(_libc.umount2(_path(target), ctypes.c_int(flags)), f"umount2({os.fsdecode(target)})")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(_NR["pivot_root"], _path(new_root), _path(put_old)),
           f"pivot_root({new_root}, {put_old})")


def open_tree(path: str, flags: int, dirfd: int = -100) -> int:
    """A file descriptor for a mount; with OPEN_TREE_CLONE, a private *detached* copy of it
    (a bind mount not attached anywhere yet), which mount_setattr(2) can then change.
    (dirfd and AT_EMPTY_PATH with path "": the mount of an fd found by openat2.)"""
    fd = _libc.syscall(_NR["open_tree"], ctypes.c_int(dirfd), _path(path),
                       ctypes.c_uint(flags | os.O_CLOEXEC))
    return _check(fd, f"open_tree({path})")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def mount_setattr(fd: int, attr_set: int, userns_fd: int = 0, recursive: bool = True) -> None:
    """Change the mount `fd` refers to; MOUNT_ATTR_IDMAP with a user namespace fd makes it an
    idmapped mount: file owners are shown (and written) through that namespace's id map."""
    attr = _MountAttr(attr_set, 0, 0, userns_fd)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    _check(_libc.syscall(_NR["mount_setattr"], ctypes.c_int(fd), b"", ctypes.c_uint(flags),
                         ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))), "mount_setattr")


def move_mount(from_fd: int, to_path: str | os.PathLike[str] = "", to_fd: int | None = None) -> None:
    """Attach the detached mount `from_fd` (from open_tree) at `to_path`, or on the file or
    directory that the O_PATH descriptor `to_fd` refers to."""
    flags = MOVE_MOUNT_F_EMPTY_PATH | (MOVE_MOUNT_T_EMPTY_PATH if to_fd is not None else 0)
    to_dir = -100 if to_fd is None else to_fd  # -100: AT_FDCWD
    _check(_libc.syscall(_NR["move_mount"], ctypes.c_int(from_fd), b"", ctypes.c_int(to_dir),
                         _path(to_path), ctypes.c_uint(flags)),
           f"move_mount(to {os.fsdecode(to_path) or f'fd {to_fd}'})")


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """open a path with the kernel doing the symlink-safe resolution (openat2(2)).

    RESOLVE_IN_ROOT resolves `path` as if `dirfd` were the root directory: "..", absolute
    symlinks and "/" all stay inside it. That is how a path inside a container rootfs must be
    resolved from the host, or a symlink planted in an image redirects a mount (CVE-2021-30465).
    """
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    fd = _libc.syscall(_NR["openat2"], ctypes.c_int(dirfd), _path(path), ctypes.byref(how),
                       ctypes.c_size_t(ctypes.sizeof(how)))
    return _check(fd, f"openat2({path})")


# --- network ----------------------------------------------------------------------------------

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def set_link_up(ifname: str) -> None:
    """Bring an interface up with the SIOCSIFFLAGS ioctl (netdevice(7)).

    A new network namespace has only `lo`, and it starts down. This is what `ip link set lo up`
    does, without loading a netlink library on a path that needs nothing else.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH22x", ifname.encode(), 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH22x", ifname.encode(), flags | IFF_UP))



