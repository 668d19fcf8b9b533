"""The test harness: tiers, the test user, the busybox image, podman, and the leak check.

Tiers (see README, "Tests"):
  unit      no privilege, no containers            pytest tests/unit
  root      real containers as root                pytest -m root tests
  rootless  real containers as the user `mrtest`   pytest -m rootless tests
The whole suite (`pytest tests`, what .ci/run does) runs as root: the rootless tier needs root
only to create its test user and to start minirun as that user through setpriv(1).

Fixtures for tests:
  root_minirun / rootless_minirun   a Tier (tests/helpers.py): call it with minirun's arguments
  minirun                           parametrized over both tiers (ids "root", "rootless")
  names                             names() makes a container name unique to the test; on
                                    teardown every container whose name has the test's prefix
                                    is removed (`run` without --name gets such a name too)
  busybox_tar                       the offline busybox image as a tarball
  podman                            a callable running `podman run` the way it works on this host

At the end of the session ../shared/tools/leakcheck must find nothing (processes in other PID
namespaces, mounts, cgroups, records ... that belong to minirun): the session fails if it does.
"""

from __future__ import annotations

import compileall
import contextlib
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import (
    IMAGE,
    PODMAN_IMAGE,
    PODMAN_RUN,
    REPO,
    TEST_USER,
    Tier,
    build_static,
    open_dir,
    process_exists,
    subid_range,
)

SUBID_RANGE = "100000-165535"  # used only if the user has no range yet
LEAKCHECK = REPO.parent / "shared" / "tools" / "leakcheck"
IMAGE_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def run(argv: list[str], timeout: float = 120, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a host command for the harness; any failure is an error with its output."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {result.returncode}\n{result.stdout}{result.stderr}")
    return result  # type: ignore[no-any-return]


# --- the session: cleanups that must run after the leak check, and the leak check ----------------


class Session:
    def __init__(self) -> None:
        self.tiers: list[Tier] = []
        self.finally_: list[Callable[[], None]] = []  # run after the leak check, last first
        self.before_check: list[Callable[[], None]] = []  # run before it (the test netns), last first


def ancestors() -> set[int]:
    """This process's ancestors: the shell or CI step that started pytest is not a leak, even
    if its command line says /opt/minirun/bin/python (leakcheck only exempts its own parent)."""
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            break
    return pids


def leakcheck() -> tuple[int, list[str]]:
    result = subprocess.run([str(LEAKCHECK), "--quiet"], capture_output=True, text=True, timeout=120)
    mine = ancestors()
    lines = [line for line in result.stdout.splitlines()
             if not (m := re.match(r"process (\d+) ", line)) or int(m.group(1)) not in mine]
    return result.returncode, lines + result.stderr.splitlines()


def sweep_stale_test_netns() -> list[str]:
    """Delete the network namespaces an earlier session of this suite created and could not
    delete because it was killed (a machine restart, a CI timeout): they are the suite's own
    (`mrt-net-*`, see test_netns), not something minirun left, and no `rm`/`prune` of minirun's
    could remove them. Returns what it swept, which the session prints."""
    swept = []
    with contextlib.suppress(FileNotFoundError):
        for name in sorted(os.listdir("/run/netns")):
            owner = name.split("-")[2] if name.count("-") == 3 else ""  # mrt-net-PID-HEX (test_netns)
            if name.startswith("mrt-net-") and not (owner.isdigit() and process_exists(int(owner))):
                subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)
                swept.append(name)
    return swept


@pytest.fixture(scope="session", autouse=True)
def session() -> Iterator[Session]:
    assert LEAKCHECK.exists(), f"{LEAKCHECK} is missing"
    # Byte-code for the checkout the root tier runs (PYTHONPATH=REPO), once: with
    # PYTHONDONTWRITEBYTECODE set (as on these machines) every `python -m minirun` would compile
    # every module again, about 45 ms a call here and five times that in the VM tier's guest.
    # A stale .pyc is never used (its source's mtime is recorded in it, PEP 552).
    with contextlib.suppress(OSError):
        compileall.compile_dir(REPO / "minirun", quiet=1)
    if os.geteuid() == 0 and os.environ.get("MINIRUN_TEST_CONCURRENT") != "1":
        # Only when this is the one suite on the machine: concurrent suites own live ones.
        for name in sweep_stale_test_netns():
            print(f"\nswept network namespace {name}, left by an interrupted earlier test session")
    _, before = leakcheck() if os.geteuid() == 0 else (0, [])
    s = Session()
    yield s
    try:
        for tier in s.tiers:
            tier.kill_processes()
    finally:
        for cleanup in reversed(s.before_check):
            with contextlib.suppress(Exception):
                cleanup()
    code, leftovers = leakcheck()
    for cleanup in reversed(s.finally_):
        with contextlib.suppress(Exception):
            cleanup()
    if os.environ.get("MINIRUN_TEST_CONCURRENT") == "1":
        # Developers running several suites side by side on one machine see each other's
        # containers; CI never sets this, so there the check always runs.
        return
    if code != 0 and leftovers:
        report = "\n".join(leftovers)
        if before:
            report += "\n(already there when the session started:\n" + "\n".join(before) + ")"
        pytest.fail(f"leakcheck found leftovers at the end of the session:\n{report}", pytrace=False)


# --- the busybox image ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def busybox_tar(session: Session) -> Path:
    """rootfs-images/busybox/build.sh output, in a directory the test user can read."""
    tmp = Path(tempfile.mkdtemp(prefix="minirun-test-image-"))
    session.finally_.append(lambda: shutil.rmtree(tmp, ignore_errors=True))
    tmp.chmod(0o755)
    tar = tmp / "busybox.tar"
    run([str(REPO / "rootfs-images" / "busybox" / "build.sh"), str(tar)])
    tar.chmod(0o644)
    return tar


def ensure_image(tier: Tier, tar: Path) -> None:
    """Import busybox into the tier's store unless it is already there (as install.sh does)."""
    rows = [line.split()[:2] for line in tier(["images"], check=0).stdout.splitlines()[1:]]
    if [IMAGE, "latest"] in rows:
        return
    tier(["import", str(tar), IMAGE], check=0, timeout=120)


# --- the test network namespace ------------------------------------------------------------------


@pytest.fixture(scope="session")
def test_netns(session: Session) -> str:
    """A network namespace of the session's own, in which both tiers run minirun (nsenter --net,
    which changes nothing else: `ip netns exec` would also remount /sys and hide the cgroups).
    The bridge, the veths, the nft table and the published ports of every root container live
    there, never in the host's namespace; deleting it at the end takes them all away."""
    require_root()
    name = f"mrt-net-{os.getpid()}-{secrets.token_hex(3)}"  # the pid: a live session's is never swept
    run(["ip", "netns", "add", name])
    session.before_check.append(lambda: run(["ip", "netns", "delete", name]))
    run(["ip", "-n", name, "link", "set", "lo", "up"])
    return name


def in_netns(netns: str) -> list[str]:
    nsenter = shutil.which("nsenter")
    assert nsenter, "nsenter (util-linux) is needed to run minirun in the test network namespace"
    return [nsenter, f"--net=/run/netns/{netns}"]


# --- the root tier -------------------------------------------------------------------------------


DEBIAN_RECIPE = REPO / "rootfs-images" / "debian" / "build.sh"


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the root and rootless tiers run as root (sudo /opt/minirun/bin/python -m pytest ...)",
                    pytrace=False)


@pytest.fixture(scope="session")
def root_tier(session: Session, busybox_tar: Path, test_netns: str) -> Tier:
    require_root()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIRUN_")}
    env["PYTHONPATH"] = str(REPO)
    tier = Tier("root", [*in_netns(test_netns), sys.executable, "-m", "minirun"], env, 0, 0,
                Path("/var/lib/minirun"), Path("/run/minirun"), netns=test_netns)
    session.tiers.append(tier)
    ensure_image(tier, busybox_tar)
    return tier


# --- the rootless tier ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def test_user(session: Session) -> pwd.struct_passwd:
    """The unprivileged user `mrtest`, with a subordinate id range and a /run/user directory.
    Idempotent; the user stays (as a CI image's users do), the /run/user dir goes if we made it."""
    require_root()
    try:
        pw = pwd.getpwnam(TEST_USER)
    except KeyError:
        run(["useradd", "-m", "-s", "/bin/sh", TEST_USER])
        pw = pwd.getpwnam(TEST_USER)
    if subid_range("/etc/subuid", TEST_USER) is None:
        run(["usermod", "--add-subuids", SUBID_RANGE, TEST_USER])
    if subid_range("/etc/subgid", TEST_USER) is None:
        run(["usermod", "--add-subgids", SUBID_RANGE, TEST_USER])
    runtime = Path(f"/run/user/{pw.pw_uid}")
    if not runtime.exists():
        # What pam_systemd/logind does at login: a private run-time directory for the user.
        runtime.parent.mkdir(mode=0o755, exist_ok=True)
        runtime.mkdir(mode=0o700)
        os.chown(runtime, pw.pw_uid, pw.pw_gid)
        session.finally_.append(lambda: shutil.rmtree(runtime, ignore_errors=True))
    return pw


@pytest.fixture(scope="session")
def rootless_tier(session: Session, test_user: pwd.struct_passwd, busybox_tar: Path, test_netns: str) -> Tier:
    # The user cannot read /root, maybe not the checkout either: run a world-readable copy.
    code = Path(tempfile.mkdtemp(prefix="minirun-test-code-"))
    session.finally_.append(lambda: shutil.rmtree(code, ignore_errors=True))
    code.chmod(0o755)
    shutil.copytree(REPO / "minirun", code / "minirun", ignore=shutil.ignore_patterns("__pycache__"))
    # Byte-code once, here: the user may not write it, and compiling on every start costs (a lot
    # in the VM tier's emulated guest).
    compileall.compile_dir(code / "minirun", quiet=1)
    for root, dirs, files in os.walk(code):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    python = "/opt/minirun/bin/python" if os.path.exists("/opt/minirun/bin/python") else "/usr/bin/python3"
    uid, gid, home = test_user.pw_uid, test_user.pw_gid, test_user.pw_dir
    runtime = f"/run/user/{uid}"
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to run minirun as the test user"
    prefix = [*in_netns(test_netns), setpriv, f"--reuid={uid}", f"--regid={gid}", "--init-groups",
              "env", "-i", f"HOME={home}", f"USER={TEST_USER}", f"LOGNAME={TEST_USER}",
              "PATH=/usr/local/bin:/usr/bin:/bin", f"XDG_RUNTIME_DIR={runtime}", f"PYTHONPATH={code}",
              "PYTHONDONTWRITEBYTECODE=1", "TERM=xterm", python, "-m", "minirun"]
    tier = Tier("rootless", prefix, {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, uid, gid,
                Path(home) / ".local" / "share" / "minirun", Path(runtime) / "minirun", netns=test_netns)
    session.tiers.append(tier)
    ensure_image(tier, busybox_tar)
    return tier


# --- per-test fixtures ---------------------------------------------------------------------------


class Names:
    """names() -> a fresh container name carrying the test's prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.count = 0

    def __call__(self) -> str:
        self.count += 1
        return f"{self.prefix}{self.count}"


@pytest.fixture
def names(request: pytest.FixtureRequest) -> Names:
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name).strip("-")[:32]
    return Names(f"mrt-{slug}-{secrets.token_hex(3)}-")


def tier_for_test(tier: Tier, names: Names) -> Iterator[Tier]:
    """Lend the tier to one test. Afterwards: kill what it started, remove every container
    with the test's prefix, and fail the test if there was one (a test cleans up after itself)."""
    tier.auto_name = names
    try:
        yield tier
    finally:
        tier.auto_name = None
        tier.kill_processes()
        left = tier.remove_prefixed(names.prefix)
    assert not left, f"the test left containers behind (removed now): {left}"


@pytest.fixture
def root_minirun(root_tier: Tier, names: Names) -> Iterator[Tier]:
    yield from tier_for_test(root_tier, names)


@pytest.fixture
def rootless_minirun(rootless_tier: Tier, names: Names) -> Iterator[Tier]:
    yield from tier_for_test(rootless_tier, names)


@pytest.fixture(params=[pytest.param("root", marks=pytest.mark.root, id="root"),
                        pytest.param("rootless", marks=pytest.mark.rootless, id="rootless")])
def minirun(request: pytest.FixtureRequest) -> Tier:
    tier: Tier = request.getfixturevalue(f"{request.param}_minirun")
    return tier


# --- podman, to compare exit codes with ----------------------------------------------------------


@pytest.fixture(scope="session")
def podman(session: Session, busybox_tar: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """podman(args) runs `podman run <flags that work here> args`, with {image} in args replaced
    by the busybox image imported into podman. The image is removed at the end of the session;
    containers never outlive their run (--rm)."""
    require_root()
    assert shutil.which("podman"), "podman is needed to compare exit codes: ./install.sh --dev installs it"
    # A tarball has no image config: give it the PATH and CMD the minirun import gives it.
    run(["podman", "import", "--change", f"ENV={IMAGE_PATH}", "--change", 'CMD=["sh"]',
         str(busybox_tar), PODMAN_IMAGE])
    session.finally_.append(lambda: subprocess.run(["podman", "rmi", "-f", PODMAN_IMAGE],
                                                   capture_output=True, timeout=120, check=False))

    def podman_run(args: list[str], timeout: float = 120,
                   **kwargs: object) -> subprocess.CompletedProcess[str]:
        argv = [*PODMAN_RUN, *(PODMAN_IMAGE if a == "{image}" else a for a in args)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,  # type: ignore[call-overload, no-any-return]
                              stdin=subprocess.DEVNULL, **kwargs)

    sanity = podman_run(["--rm", "{image}", "true"])
    assert sanity.returncode == 0, f"podman does not run containers here:\n{sanity.stderr}"
    return podman_run


@pytest.fixture(scope="session")
def debian_tar() -> Path:
    """The labs' Debian image as a tarball (rootfs-images/debian/build.sh), readable by the test user."""
    # The first run on a machine builds it (about a minute, from the apt mirror); later ones
    # find it in /var/cache/minirun/rootfs-images.
    built = subprocess.run([str(DEBIAN_RECIPE), "--tar"], capture_output=True, text=True, timeout=1200,
                           check=False)
    assert built.returncode == 0, built.stderr
    tar = Path(built.stdout.strip().splitlines()[-1])
    assert tar.is_file() and tar.stat().st_mode & 0o004, "readable by the rootless test user"
    again = subprocess.run([str(DEBIAN_RECIPE), "--tar"], capture_output=True, text=True, timeout=60,
                           check=True)
    assert again.stdout.strip() == str(tar) and "mmdebstrap" not in again.stderr.lower(), "cached"
    return tar


@pytest.fixture(scope="session")
def escape_probe_dir() -> Iterator[Path]:
    """tests/escape_probe.c built statically, in a directory the test user can read (for -v)."""
    with open_dir("minirun-probe-") as path:
        build_static("escape_probe.c", path)
        yield path


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A host directory any user may enter (0755), for -v tests; removed afterwards."""
    with open_dir("minirun-test-vol-") as path:
        yield path


# --- tests of one cgroup version's files: where they run -----------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked `cgroup2("memory", ...)` reads and writes the v2 files of those controllers;
    one marked `cgroup1("devices")` those of a v1 hierarchy. Where the host has no such files
    (v2 tests on the hybrid hosts the suite is developed on, v1 tests on a pure v2 host) there is
    nothing for the test to test: it is deselected, and the session's summary says so, rather
    than skipped. The VM tier's pure v2 guest runs the v2 tests (tests/vm): there
    MINIRUN_TEST_REQUIRE_V2=1 keeps every v2 test selected, so a missing controller fails
    (cgroup_helpers.require_v2) instead of vanishing."""
    from cgroup_helpers import layout, v2_controllers

    from minirun import cgroups

    v2 = set() if os.environ.get("MINIRUN_TEST_REQUIRE_V2") == "1" else None
    have_v2 = v2_controllers()
    have_v1 = {c for h in cgroups.hierarchies() if h.version == 1 for c in h.controllers}

    def left_out(item: pytest.Item) -> bool:
        if (mark := item.get_closest_marker("cgroup2")) and v2 is None and not set(mark.args) <= have_v2:
            return True
        return bool((mark := item.get_closest_marker("cgroup1")) and not set(mark.args) <= have_v1)

    out = [item for item in items if left_out(item)]
    if out:
        config.hook.pytest_deselected(items=out)
        items[:] = [item for item in items if item not in out]
        config.stash[_CGROUP_LEFT_OUT] = (len(out), layout())
    select_shard(config, items)


_CGROUP_LEFT_OUT = pytest.StashKey[tuple[int, str]]()
_SHARD = pytest.StashKey[str]()
_ALWAYS = pytest.StashKey[set[int]]()
TIME_BOX_REACHED = "time box reached"  # tests/vm/test_guest.py looks for these words (its own copy)


def shard_of(nodeid: str, count: int) -> int:
    """The shard a test belongs to: a stable hash of its id (crc32, not hash(): the same in
    every process and on every machine), so each test is in exactly one of `count` shards."""
    return zlib.crc32(nodeid.encode()) % count


def select_shard(config: pytest.Config, items: list[pytest.Item]) -> None:
    """MINIRUN_TEST_SHARD=K/N keeps the tests of shard K (0 <= K < N), every test marked
    `cgroup2`, and every test in the files of MINIRUN_TEST_SHARD_KEEP (space-separated paths);
    the rest are deselected, and the
    summary says so. The VM tier uses it to run, within CI's time under emulation, every test of
    what differs on a pure v2 host plus one rotating Nth of the rest (tests/vm/test_guest.py)."""
    spec = os.environ.get("MINIRUN_TEST_SHARD", "")
    if not spec:
        return
    k, n = (int(part) for part in spec.split("/"))
    assert 0 <= k < n, f"MINIRUN_TEST_SHARD={spec}: want K/N with 0 <= K < N"
    keep = tuple(os.environ.get("MINIRUN_TEST_SHARD_KEEP", "").split())
    always = [item for item in items
              if item.nodeid.split("::")[0] in keep or item.get_closest_marker("cgroup2")]
    always_ids = {id(item) for item in always}
    shard = [item for item in items if id(item) not in always_ids and shard_of(item.nodeid, n) == k]
    # MINIRUN_TEST_SHARD_ROTATE=R starts the shard R tests further on (wrapping around), so that
    # when a time box cuts a shard short, its next turn (R+1) cuts elsewhere: no test is always last.
    if shard and (rotate := int(os.environ.get("MINIRUN_TEST_SHARD_ROTATE", "0") or 0)):
        start = rotate * 7919 % len(shard)  # a prime stride: successive turns start far apart
        shard = shard[start:] + shard[:start]
    kept = always + shard  # what always runs first: a time box (below) may cut the shard short
    kept_ids = {id(item) for item in kept}
    out = [item for item in items if id(item) not in kept_ids]
    config.hook.pytest_deselected(items=out)
    items[:] = kept
    config.stash[_ALWAYS] = always_ids
    config.stash[_SHARD] = (f"shard {k} of {n}: {len(kept)} tests kept (every test of {len(keep)} "
                            f"files and every cgroup2 test, and 1/{n} of the rest), {len(out)} deselected")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[object]:
    """MINIRUN_TEST_TIME_BOX=SECONDS (with a shard): once that much time has passed since the
    session started, the session stops before the next test of the shard: every test that must
    run has run first (select_shard), and the rest of the shard waits for its next turn. pytest
    exits 2 ("Interrupted: time box reached"), which the VM tier accepts; everything that ran is
    reported as usual, and the session's teardown and leak check still run."""
    result = yield
    box = os.environ.get("MINIRUN_TEST_TIME_BOX", "")
    always = item.config.stash.get(_ALWAYS, None)
    if box and always is not None and nextitem is not None and id(nextitem) not in always:
        elapsed = time.monotonic() - _SESSION_START
        if elapsed > float(box):
            left = len(item.session.items) - item.session.items.index(nextitem)
            item.session.shouldstop = (f"{TIME_BOX_REACHED} after {elapsed:.0f}s: {left} tests of the "
                                       "shard left for its next turn")
    return result


_SESSION_START = time.monotonic()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if (shard := config.stash.get(_SHARD, None)) is not None:
        terminalreporter.write_line(shard)
    if (left := config.stash.get(_CGROUP_LEFT_OUT, None)) is not None:
        terminalreporter.write_line(
            f"cgroups: {left[0]} tests of files this host's cgroups do not have deselected; this host is "
            f"{left[1]}; the VM tier runs the v2 ones (pytest -m vm tests/vm)")
