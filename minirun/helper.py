"""The forked helper: a short-lived copy of minirun that joins namespaces minirun itself must stay
out of, clones the process that is to live there, reports its pid, and exits.

Four places need one: a container that joins another's namespaces (`sharing.py`), `exec`
(`enter.py`), and minirun-oci's `create` into a pod's user namespace and its `exec`
(`oci/create.py`, `oci/exec.py`). Why a helper and not minirun itself:
 - setns(2) into a user or PID namespace cannot be undone, and minirun (the monitor) must stay
   in the host's, to wait for the container, write its record and clean up;
 - a PID namespace applies only to the children of the process that joined it
   (pid_namespaces(7)), so something must clone after the setns;
 - the helper clones with CLONE_PARENT, so the new process is minirun's child (minirun waits
   for it and gets its exit code) while the helper, once it has reported, simply exits.

The helper writes the pid (or one line saying why it failed) on a report pipe; `answer`
reads it back. Every helper is made not dumpable before its first setns (`not_dumpable`).
"""

import contextlib
import os
import signal
from collections.abc import Sequence

from minirun import kernel
from minirun.errors import MinirunError


def not_dumpable() -> None:
    """PR_SET_DUMPABLE 0 (prctl(2)), called before the first setns(2) and again after it.

    From its setns on, a helper is the host's python (with minirun's fds, host root's rootful)
    inside the container's user namespace, where the container's root has CAP_SYS_PTRACE; a
    container that sees the helper (a joined PID namespace, --pid=host) could seize it and,
    through it, open anything as the host's root (/proc/PID/root, /proc/PID/fd/N). ptrace(2),
    "Ptrace access mode checking": a process that is not dumpable needs CAP_SYS_PTRACE in the
    user namespace its memory was created in, the host's. CVE-2019-5736 (runc's /proc/self/exe)
    came through the same door. A change of credentials resets the flag to fs.suid_dumpable
    (commit_creds in kernel/cred.c), hence "again after it"; the child it clones inherits it
    and keeps it until its own execve.
    """
    kernel.prctl(kernel.PR_SET_DUMPABLE, 0)


def clone_joined(joins: Sequence[tuple[int, int]], flags: int, what: str) -> int:
    """clone(flags) from a helper that first joins each (namespace or pid fd, CLONE_NEW* flags)
    of `joins` in order (the user namespace first: see enter.join). 0 in the new process, its pid
    in minirun; a failure raises MinirunError("cannot {what}: why"). The fds of `joins` stay open
    in both: the caller closes them."""
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    helper = os.fork()
    if helper == 0:
        os.close(report_r)
        try:
            kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)
            not_dumpable()
            for fd, namespaces in joins:
                kernel.setns(fd, namespaces)
            not_dumpable()
            pid = kernel.clone(flags | kernel.CLONE_PARENT)
            if pid == 0:
                os.close(report_w)
                return 0
            os.write(report_w, str(pid).encode())
            code = 0
        except BaseException as e:  # one line for the user, through minirun
            with contextlib.suppress(OSError):
                os.write(report_w, str(e).encode(errors="replace")[:4000])
            code = 125
        os._exit(code)
    os.close(report_w)
    said = answer(report_r, helper)
    if not said.isdigit():
        raise MinirunError(f"cannot {what}: {said or 'the helper died'}")
    return int(said)


def answer(report: int, helper: int) -> str:
    """What a helper wrote on its report pipe before it exited: the pid of the process it cloned,
    or why it failed. Close the pipe, reap the helper."""
    try:
        return os.read(report, 4096).decode(errors="replace")
    finally:
        os.close(report)
        os.waitpid(helper, 0)
