"""Try, for real, what `minirun run` will ask of the kernel: each probe in a throwaway child.

`minirun doctor` could read sysctls and guess, but whether a user namespace may mount an overlay
on the store's file system, whether that file system takes idmapped mounts, or whether a seccomp
filter loads depends on the kernel version, its configuration, LSMs (AppArmor on Ubuntu) and the
file system, all at once. So each probe does the real thing in a child process made with fork(2),
which then exits: nothing it created (namespaces, mounts, a filter) outlives it, and a probe
that crashes or is refused cannot hurt `doctor` itself. The child reports one line through a
pipe: empty means it worked, anything else is the error, with the system call that failed.
"""

import os
import select
import signal
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from minirun import kernel

PROBE_TIMEOUT = 60.0  # seconds; no probe needs more than a few milliseconds


def in_child(probe: Callable[[], None], timeout: float = PROBE_TIMEOUT) -> str:
    """Run `probe` in a forked child; "" if it returned, else its error (one line).

    Also what tarball.py uses to set file capabilities inside a user namespace of the user's own.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then _exit without running any of the parent's cleanup
        os.close(read_end)
        message = ""
        try:
            probe()
        except BaseException as e:  # whatever went wrong is the answer
            message = str(e) or type(e).__name__
        try:
            os.write(write_end, message.encode(errors="replace")[:4000])
        finally:
            os._exit(0)
    os.close(write_end)
    answer = b""
    try:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0 and select.select([read_end], [], [], left)[0]:
            chunk = os.read(read_end, 4096)
            if not chunk:  # EOF: the child has exited (or is about to)
                break
            answer += chunk
        else:
            os.kill(pid, signal.SIGKILL)  # stuck (a mount that hangs, say): that is the answer
            answer = f"no answer in {timeout:g} s".encode()
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and not answer:
        return f"the probe was killed by signal {os.WTERMSIG(status)}"
    return answer.decode(errors="replace").strip()


def enter_own_userns() -> None:
    """unshare(CLONE_NEWUSER|CLONE_NEWNS) and map ourselves to root, as `unshare -Urm` does.

    One line mapping our own euid is what any process may write to its own uid_map; for the
    gid_map, setgroups(2) must be denied first (user_namespaces(7), "Interaction with system
    calls that change process UIDs or GIDs", since Linux 3.19).
    """
    uid, gid = os.geteuid(), os.getegid()
    kernel.unshare(kernel.CLONE_NEWUSER | kernel.CLONE_NEWNS)
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
    Path("/proc/self/gid_map").write_text(f"0 {gid} 1")


def overlay_in_userns(directory: Path) -> str:
    """Can a user namespace mount overlayfs with its upper layer in `directory`?

    What every container does (rootfs.py): overlay may be mounted inside a user namespace since
    Linux 5.11, and with `userxattr` its own xattrs are user.overlay.* (which the upper file
    system must support: tmpfs only since 6.6).
    """
    # Named like an import's staging directory (images/store.py): if doctor is killed before it
    # removes it, the next import sees that its process is gone and removes it.
    with tempfile.TemporaryDirectory(prefix=f"import-{os.getpid()}-doctor-", dir=directory) as tmp:
        def probe() -> None:
            enter_own_userns()
            kernel.mount(None, "/", None, kernel.MS_REC | kernel.MS_PRIVATE)
            for name in ("lower", "upper", "work", "merged"):
                os.mkdir(f"{tmp}/{name}")
            Path(tmp, "lower", "file").write_text("lower\n")
            kernel.mount("overlay", f"{tmp}/merged", "overlay", 0,
                         f"lowerdir={tmp}/lower,upperdir={tmp}/upper,workdir={tmp}/work,userxattr")
            Path(tmp, "merged", "file").write_text("upper\n")  # a copy-up: upper and work in use
            os.unlink(f"{tmp}/merged/file")  # a whiteout (a 0/0 device, as a user since 5.8)

        return in_child(probe)


def idmapped_mount(directory: Path) -> str:
    """Can `directory`'s file system be idmapped (mount_setattr(2), MOUNT_ATTR_IDMAP)?

    What a rootful container does with each image layer (userns.idmapped_layers): needs root
    (CAP_SYS_ADMIN in the initial user namespace), Linux 5.12, and a file system that supports
    it (ext4, xfs, btrfs, tmpfs since 6.3, ...). The user namespace comes from a child that
    unshares one and waits; we map it as a rootful container is mapped, then let it go.
    """
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(done_w)
        try:
            kernel.unshare(kernel.CLONE_NEWUSER)
            os.write(ready_w, b"y")
            os.read(done_r, 1)  # until the parent has what it needs (or is gone: EOF)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"y":
            return "unshare(CLONE_NEWUSER) failed"
        Path(f"/proc/{pid}/uid_map").write_text("0 1000000 65536")
        Path(f"/proc/{pid}/gid_map").write_text("0 1000000 65536")
        userns = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        return str(e)
    finally:
        os.close(ready_r)
        os.close(done_w)
        os.waitpid(pid, 0)
    try:
        tree = kernel.open_tree(str(directory), kernel.OPEN_TREE_CLONE)
        try:
            kernel.mount_setattr(tree, kernel.MOUNT_ATTR_IDMAP, userns, recursive=False)
        finally:
            os.close(tree)  # a detached mount: gone when its last fd closes
    except OSError as e:
        return str(e)
    finally:
        os.close(userns)
    return ""


# Classic BPF (seccomp(2), "Filters"): load the system call number, and return EPERM for
# getppid, ALLOW for everything else. Offsets and codes from <linux/filter.h> and <linux/seccomp.h>.
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_RET_K = 0x20, 0x15, 0x06
_SECCOMP_RET_ALLOW, _SECCOMP_RET_ERRNO = 0x7FFF0000, 0x00050000
_GETPPID = {"x86_64": 110, "aarch64": 173}.get(os.uname().machine, 110)


def seccomp_filter() -> str:
    """Does a seccomp filter load and act? (Every container gets one unless seccomp=unconfined.)"""
    def probe() -> None:
        program = b"".join(struct.pack("=HBBI", *insn) for insn in (
            (_BPF_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
            (_BPF_JEQ_K, 0, 1, _GETPPID),
            (_BPF_RET_K, 0, 0, _SECCOMP_RET_ERRNO | 1),  # EPERM
            (_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW)))
        kernel.prctl(kernel.PR_SET_NO_NEW_PRIVS, 1)
        kernel.seccomp_set_filter(program)
        # getppid(2) "always succeeds", so glibc passes the raw result on: -EPERM is -1.
        if os.getppid() != -1:
            raise RuntimeError("a filter loaded but did not act (getppid was not refused)")

    return in_child(probe)


def user_namespace() -> str:
    """Can this user create a user namespace and map itself into it?"""
    return in_child(enter_own_userns)
