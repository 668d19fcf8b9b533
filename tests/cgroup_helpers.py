"""What the limits tests share: where a container's cgroup is, cgroup delegation to the test
user, and the rule for tests that need controllers in the unified (v2) hierarchy.

Delegation is what systemd's `Delegate=yes` does for user@UID.service: root creates a cgroup,
chowns it (and the files a delegatee must write: cgroup.procs, on v2 also cgroup.subtree_control
and cgroup.threads) to the user, and the user's processes run in a leaf below it.
 - On a systemd host (the VM tier's guest, tests/vm/guest-init.sh) that subtree exists already:
   MINIRUN_TEST_DELEGATED_CGROUP names the user@UID.service directory, and the tests start
   minirun in a leaf of it, as `systemd-run --user --scope` would.
 - Elsewhere (this hybrid host) the tests build one by hand, in every hierarchy.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import pytest
from helpers import IMAGE, Tier, read_until, wait_for, wait_running

from minirun import cgroups

# dd's one block of `bs` bytes is a malloc()ed buffer that read(2) from /dev/zero fills page by
# page: that much anonymous memory, which a --memory limit must stop. `1+0 records in` says the
# whole block was read. (Growing a shell variable from `tr` did the same 20x slower: the VM
# tier's emulated CPU spent half a minute a test on it.) HOG: the container's PID 1 itself.
ALLOCATE = ('r=$(dd if=/dev/zero of=/dev/null bs={mib}M count=1 2>&1); '
            '[ "${{r%%+*}}" = 1 ] && echo allocated $(({mib} * 1048576)); ')
HOG = "exec dd if=/dev/zero of=/dev/null bs={mib}M count=1"
# Inside a container: its cpuset.mems (v1: in the cpuset hierarchy; v2: its own file, empty
# unless set), then the nodes the kernel lets it allocate memory on.
MEMS = ('m=/sys/fs/cgroup/cpuset/cpuset.mems; [ -e $m ] || m=/sys/fs/cgroup/cpuset.mems; '
        'echo "mems [$(cat $m)]"; grep Mems_allowed_list /proc/self/status')


def pids_hierarchy() -> Path:
    """Where the pids controller is: its v1 hierarchy (/sys/fs/cgroup/pids on a hybrid host) or
    the one v2 tree (/sys/fs/cgroup). A test cgroup made there is one minirun would look at."""
    found = [h.mountpoint for h in cgroups.hierarchies()
             if "pids" in h.controllers and h.mountpoint.is_relative_to(cgroups.CGROUP_ROOT)]
    assert found, "no cgroup hierarchy with the pids controller"
    return found[0]


def container_cgroup_dirs(container_id: str) -> list[Path]:
    """Every cgroup directory named after the container, in any hierarchy (v1: one per
    controller, /sys/fs/cgroup/memory/minirun/ID; v2: /sys/fs/cgroup/minirun/ID)."""
    found = []
    for root, dirs, _ in os.walk(cgroups.CGROUP_ROOT):
        found += [Path(root, d) for d in dirs if d == container_id]
    return found


def run_and_check_joined(tier: Tier, name: str, *flags: str) -> None:
    """Start a container that prints its /proc/self/cgroup and waits, then assert_joined."""
    proc = tier.popen(["run", "--name", name, "--network", "none", *flags, IMAGE, "sh", "-c",
                       "cat /proc/self/cgroup; echo up; exec sleep 60"])
    try:
        inside = read_until(proc.stdout, "up").splitlines()
        item = wait_running(tier, name, proc)
        assert_joined(item["State"]["Pid"], item["Id"], inside)
    finally:
        tier(["rm", "-f", name], check=0)
        wait_for(lambda: proc.poll() is not None, what="minirun run to end")


def assert_joined(pid: int, container_id: str, inside: list[str]) -> None:
    """PID 1 of the container is in its cgroup in every hierarchy where minirun made one (v1: the
    directory's `tasks` lists it, the child moved itself in; v2: its `cgroup.procs`, born there or
    moved), and /proc/PID/cgroup, read here in the host's cgroup namespace, names that directory;
    and its own cgroup namespace is rooted there: `inside`, the lines of its /proc/self/cgroup,
    show "/" for those hierarchies (cgroup_namespaces(7)). A namespace made before the move would
    show the path from minirun's own cgroup to the container's instead."""
    made = container_cgroup_dirs(container_id)
    assert made, f"no cgroup directory named after {container_id}: {layout()}"
    host_view = [line.split(":", 2) for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()]
    own_view = [line.split(":", 2) for line in inside if line.count(":") >= 2]
    for directory in made:
        h = max((h for h in cgroups.hierarchies() if directory.is_relative_to(h.mountpoint)),
                key=lambda h: len(h.mountpoint.parts))
        members = "tasks" if h.version == 1 else "cgroup.procs"
        assert str(pid) in (directory / members).read_text().split(), (directory, pid)
        host = _lines_of(h, host_view)
        assert host == ["/" + str(directory.relative_to(h.mountpoint))], (directory, host_view)
        assert _lines_of(h, own_view) == ["/"], (directory, inside)
    assert os.readlink(f"/proc/{pid}/ns/cgroup") != os.readlink("/proc/self/ns/cgroup"), "its own cgroupns"


def exec_and_check_joined(tier: Tier, name: str, *flags: str, via: tuple[str, ...] = ()) -> None:
    """Start a container, then `minirun exec` into it a shell that prints its /proc/self/cgroup
    and waits (`via`: what runs minirun exec, e.g. under a seccomp filter); find that process
    from the host (in PID 1's PID namespace, its command line the one exec'd) and check it as
    assert_joined does PID 1 (every hierarchy's directory lists it, the host's /proc/PID/cgroup
    names it, its own view says "/"), and that its cgroup namespace is PID 1's itself. A
    rootless container without a cgroup of its own (nothing delegated) has only the namespace."""
    proc = tier.popen(["run", "--name", name, "--network", "none", *flags, IMAGE, "sleep", "300"])
    try:
        item = wait_running(tier, name, proc)
        pid1 = item["State"]["Pid"]
        script = "cat /proc/self/cgroup; echo up; exec sleep 1008"
        execd = replace(tier, prefix=[*via, *tier.prefix]).popen(["exec", name, "sh", "-c", script])
        try:
            inside = read_until(execd.stdout, "up").splitlines()
        except AssertionError as e:
            execd.kill()
            raise AssertionError(f"{e}; minirun exec said: {execd.communicate(timeout=30)[1]}") from None
        pid = wait_for(lambda: next(iter(_in_pid_namespace_of(pid1, b"sleep\x001008\x00")), None),
                       what="the exec'd sleep")
        assert os.readlink(f"/proc/{pid}/ns/cgroup") == os.readlink(f"/proc/{pid1}/ns/cgroup")
        if container_cgroup_dirs(item["Id"]) or not tier.rootless:
            assert_joined(pid, item["Id"], inside)
        execd.kill()
        execd.wait(timeout=30)
    finally:
        tier(["rm", "-f", name], check=0)
        wait_for(lambda: proc.poll() is not None, what="minirun run to end")


def _in_pid_namespace_of(pid1: int, cmdline: bytes) -> list[int]:
    """Host pids of the processes in PID 1's PID namespace that run `cmdline` (NUL-separated)."""
    ns = os.readlink(f"/proc/{pid1}/ns/pid")
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != pid1:
            with contextlib.suppress(OSError):
                if (os.readlink(f"/proc/{entry}/ns/pid") == ns
                        and Path(f"/proc/{entry}/cmdline").read_bytes() == cmdline):
                    found.append(int(entry))
    return found


def _lines_of(h: cgroups.Hierarchy, view: list[list[str]]) -> list[str]:
    """The paths of /proc/PID/cgroup's lines for hierarchy `h` (v2's is "0::PATH")."""
    return [path for number, names, path in view
            if (number == "0" if h.version == 2 else set(names.split(",")) == set(h.controllers))]


def layout() -> str:
    """This host's cgroup layout in words, for skip reasons and failures."""
    parts = []
    for h in cgroups.hierarchies():
        if h.mountpoint.is_relative_to(cgroups.CGROUP_ROOT):
            controllers = ",".join(h.controllers) or "no controllers"
            parts.append(f"v{h.version} {h.mountpoint} ({controllers})")
    return f"{cgroups.mode()}: " + "; ".join(parts)


def v2_controllers() -> set[str]:
    """The controllers the unified hierarchy has (empty on v1 and on most hybrid hosts)."""
    if cgroups.mode() != "v2":
        return set()
    return set((cgroups.CGROUP_ROOT / "cgroup.controllers").read_text().split())


def require_v2(*controllers: str) -> None:
    """A test of the v2 files themselves: it skips where the controllers are bound to v1 (the
    hybrid hosts these tests run on), naming the layout, and fails instead where the VM tier
    demands it (MINIRUN_TEST_REQUIRE_V2=1: there, a skip would hide that nothing was tested)."""
    missing = sorted(set(controllers) - v2_controllers())
    if not missing:
        return
    reason = (f"needs the {', '.join(missing)} controller in a pure cgroup v2 hierarchy; this host is "
              f"{layout()} (the VM tier runs it: pytest -m vm tests/vm)")
    if os.environ.get("MINIRUN_TEST_REQUIRE_V2") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _chown_delegated(d: Path, uid: int, gid: int) -> None:
    for path in (d, *(d / f for f in ("cgroup.procs", "tasks", "cgroup.subtree_control", "cgroup.threads")
                      if (d / f).exists())):
        os.chown(path, uid, gid)


@contextlib.contextmanager
def _made_by_hand(uid: int, gid: int) -> Iterator[list[Path]]:
    """TOP/session in every writable hierarchy, TOP chowned to the user: the leaves to enter."""
    tops = [h.mountpoint / f"minirun-delegated-{secrets.token_hex(3)}" for h in cgroups.hierarchies()
            if h.mountpoint.is_relative_to(cgroups.CGROUP_ROOT) and "name=systemd" not in h.controllers]
    made: list[Path] = []
    try:
        for top in tops:
            top.mkdir()
            made.append(top)
            leaf = top / "session"
            leaf.mkdir()
            for d in (top, leaf):
                for name in ("cpuset.cpus", "cpuset.mems"):  # v1 cpuset: empty until set (cpuset(7))
                    if (d / name).exists() and not (d / "cgroup.controllers").exists():
                        (d / name).write_text((d.parent / name).read_text())
                _chown_delegated(d, uid, gid)  # systemd chowns the whole subtree, leaves included
        yield [top / "session" for top in tops]
    finally:
        for top in reversed(made):
            for d in (top / "session", top / cgroups.PARENT, top):
                with contextlib.suppress(FileNotFoundError):
                    d.rmdir()


@contextlib.contextmanager
def _under_systemds(service: Path, uid: int, gid: int) -> Iterator[list[Path]]:
    """A scope in app.slice of the user's delegated user@UID.service, made by the user (as its
    systemd --user would), so the user owns it."""
    slice_ = service / "app.slice"
    scope = slice_ / f"run-minirun-test-{secrets.token_hex(3)}.scope"
    made_slice = not slice_.exists()
    for d in ([slice_] if made_slice else []) + [scope]:
        d.mkdir()
        _chown_delegated(d, uid, gid)
    try:
        yield [scope]
    finally:
        for d in (scope, *([slice_] if made_slice else []), service / cgroups.PARENT):
            with contextlib.suppress(FileNotFoundError, OSError):
                d.rmdir()


@contextlib.contextmanager
def delegated_tier(rootless: Tier) -> Iterator[Tier]:
    """The rootless tier, started from a leaf of a cgroup delegated to the test user."""
    given = os.environ.get("MINIRUN_TEST_DELEGATED_CGROUP")
    with (_under_systemds(Path(given), rootless.uid, rootless.gid) if given
          else _made_by_hand(rootless.uid, rootless.gid)) as leaves:
        # Root moves the shell into the leaves, then it execs setpriv -> minirun as the user.
        procs = " ".join(str(leaf / "cgroup.procs") for leaf in leaves)
        enter = f'for f in {procs}; do echo $$ > $f; done; exec "$@"'
        yield replace(rootless, prefix=["sh", "-c", enter, "sh", *rootless.prefix],
                      processes=rootless.processes)


def delegated_base() -> list[Path]:
    """Where delegated containers' cgroups go: the PARENT directories under the delegated tops."""
    given = os.environ.get("MINIRUN_TEST_DELEGATED_CGROUP")
    if given:
        return [Path(given) / cgroups.PARENT]
    return [p / cgroups.PARENT for h in cgroups.hierarchies()
            for p in h.mountpoint.glob("minirun-delegated-*")]


# --- a frozen cgroup parent ------------------------------------------------------------------------

FREEZERS = {"v1 freezer": "freezer.state", "v2": "cgroup.freeze"}  # (what a kind is frozen with)
# The kinds this host has: v2's cgroup.freeze (Linux 5.2) on every host, a v1 freezer hierarchy on
# hybrid ones (so a pure v2 host runs one case, not a skipped one).
FREEZER_KINDS = ["v1 freezer", "v2"] if any(
    h.version == 1 and "freezer" in h.controllers for h in cgroups.hierarchies()) else ["v2"]


def freezer_top(tops: list[Path], kind: str) -> Path:
    """The one of `tops` (a directory per hierarchy) in the hierarchy that freezes with `kind`;
    a skip where this host has no such hierarchy (v1 freezer: not on a pure v2 host)."""
    for h in cgroups.hierarchies():
        if h.version == 2 if kind == "v2" else "freezer" in h.controllers:
            found = [t for t in tops if t.is_relative_to(h.mountpoint)]
            if found:
                return found[0]
    pytest.skip(f"no {kind} cgroup here to freeze ({layout()})")


class FrozenParent(NamedTuple):
    parent: str  # for MINIRUN_CGROUP_PARENT: "OUTER/inner"
    freezer: Path  # OUTER's freezer file in the hierarchy of the kind
    kind: str

    def thaw(self) -> None:
        with contextlib.suppress(OSError):
            self.freezer.write_text("THAWED" if self.kind == "v1 freezer" else "0")


@contextlib.contextmanager
def frozen_parent(tops: list[Path], kind: str, owner: tuple[int, int] = (0, 0)) -> Iterator[FrozenParent]:
    """OUTER/inner below each of `tops`, OUTER frozen in the hierarchy of `kind`: inner, whose
    own directory was never frozen, is the cgroup parent to try (so the kernel's *effective*
    state is what tells it). Thawed and removed after, with whatever a container left below."""
    outer = f"minirun-frozen-{secrets.token_hex(3)}"
    made: list[Path] = []
    frozen = FrozenParent(f"{outer}/inner", freezer_top(tops, kind) / outer / FREEZERS[kind], kind)
    try:
        for top in tops:
            for d in (top / outer, top / outer / "inner"):
                d.mkdir()
                made.append(d)
                for name in ("cpuset.cpus", "cpuset.mems"):  # v1 cpuset: empty until set (cpuset(7))
                    if (d / name).exists() and not (d / "cgroup.controllers").exists():
                        (d / name).write_text((d.parent / name).read_text())
                _chown_delegated(d, *owner)
        frozen.freezer.write_text("FROZEN" if kind == "v1 freezer" else "1")
        yield frozen
    finally:
        frozen.thaw()
        for d in reversed(made):
            with contextlib.suppress(OSError):
                for child in (p for p in d.iterdir() if p.is_dir()) if d.name == "inner" else ():
                    child.rmdir()
            with contextlib.suppress(OSError):
                d.rmdir()


def with_env(tier: Tier, **variables: str) -> Tier:
    """The tier with more environment for minirun: the rootless one starts it with `env -i`, so
    they go onto its command line."""
    if not tier.rootless:
        return replace(tier, env={**tier.env, **variables})
    at = tier.prefix.index("-i") + 1
    return replace(tier, prefix=[*tier.prefix[:at], *(f"{k}={v}" for k, v in variables.items()),
                                 *tier.prefix[at:]])
