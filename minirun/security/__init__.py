"""What a container's processes may still do once they run: capabilities, no_new_privs, seccomp.

Namespaces decide what a container can *see*; these three decide what it can *do* with what it
sees. Root inside a user namespace holds every capability *in that namespace*: enough to
`mount -o remount,rw` a read-only bind mount, unshare new namespaces, or reach kernel code
that is rarely exercised. The kernel's answers, applied in this order in the child
(minirun/process.py), just before execve(2):

  1. drop the capability bounding set, while still root (capabilities.py);
  2. seccomp, *here* unless no_new_privs is asked for: without no_new_privs, loading a filter
     needs CAP_SYS_ADMIN, which step 4 takes away (seccomp(2), crun and runc order it so too);
  3. switch to the container user;
  4. set the effective/permitted/inheritable sets, clear the ambient set;
  5. no_new_privs, if asked (`--security-opt no-new-privileges`);
  6. seccomp, here if no_new_privs is set: as late as possible, so fewer of minirun's own
     system calls need to be allowed.

A filter, once loaded, stays for the process and all its children, across execve(2).
"""

from pathlib import Path
from typing import NamedTuple

from minirun import kernel
from minirun.security import capabilities, seccomp


class SecurityPlan(NamedTuple):
    capabilities: frozenset[str]  # e.g. {"CAP_CHOWN", ...}: what the container's root keeps
    seccomp_filter: bytes | None  # the compiled profile (BPF); None = unconfined
    no_new_privileges: bool = False


def plan(caps: frozenset[str], seccomp_profile: str | None, no_new_privileges: bool,
         store: Path) -> SecurityPlan:
    """In the parent, before clone: compile the seccomp profile (or take it from the cache)."""
    bpf = None if seccomp_profile is None else seccomp.compiled(seccomp_profile, caps, store / "seccomp")
    return SecurityPlan(caps, bpf, no_new_privileges)


def before_user_switch(plan: SecurityPlan) -> None:
    """Steps 1-2: what must happen while the child is still root with every capability."""
    capabilities.drop_bounding(plan.capabilities)
    if plan.seccomp_filter is not None and not plan.no_new_privileges:
        kernel.seccomp_set_filter(plan.seccomp_filter)


def after_user_switch(plan: SecurityPlan, uid: int) -> None:
    """Steps 4-6, as the container user."""
    capabilities.apply(plan.capabilities, uid)
    if plan.no_new_privileges:
        # A setuid-root binary or file capabilities can no longer raise privileges on execve
        # (prctl(2), PR_SET_NO_NEW_PRIVS); it is inherited by every child and never unset.
        kernel.prctl(kernel.PR_SET_NO_NEW_PRIVS, 1)
        if plan.seccomp_filter is not None:
            kernel.seccomp_set_filter(plan.seccomp_filter)
