#!/usr/bin/env python3
"""Container start-up latency: minirun against runc, crun, bwrap and podman, on one busybox rootfs.

    sudo python3 bench/startup.py                 # 30 interleaved rounds, root and rootless rows
    sudo python3 bench/startup.py --runs 100      # more rounds: steadier medians
    sudo python3 bench/startup.py --profile 20    # where one `minirun run` spends its time
    sudo python3 bench/startup.py --bridge        # also the default (bridge) network, root only
    sudo python3 bench/startup.py --floor         # also what Python costs before minirun's code

Every runtime starts `/bin/true` (busybox) in new namespaces and waits for it to exit; what is
timed is the whole command, from fork+exec to exit, as a user would see it. The runs are
interleaved, one of each per round in a rotating order, so a machine that gets busier or
quieter during the benchmark affects every row alike. Medians, min and max per row, and each
median divided by runc's and crun's medians *from the same run*: only ratios from the same run
mean anything on a shared machine.

Rootless rows run as the unprivileged test user `mrtest` (created like tests/conftest.py does
if missing), with the rootless variant of each tool: minirun as that user, `runc spec
--rootless`, bwrap in a user namespace. crun refuses cgroups in "hybrid" mode (v1 controllers
plus a v2 tree with controllers, as on this kind of host): as root it runs in a private mount
namespace with a tmpfs over /sys/fs/cgroup/unified (`unshare -m`), and as the user inside an
`unshare -rm` user namespace that maps the user to 0 for the same tmpfs (so its bundle maps
container root to that 0). The wrapper's own cost is its own row.

--bridge adds rows with a network: `minirun run --rm` (its default bridge), `podman run
--rm` (its default network, netavark), and runc in a network namespace wired the way a CNI bridge
plugin wires one, each run: `ip netns add`, a veth with its peer born in that namespace, plugged
into a bridge and addressed (two `ip -batch`), `runc run` in it, `ip netns del`; the bridge and a
masquerade rule are made once beforehand, as a host that runs containers has them. All three
run in a network namespace of the benchmark's own (`nsenter --net`, on every row alike), so
nothing touches the host's interfaces or nftables. There each minirun and podman run is the
only container, so it creates the bridge and its NAT rules and deletes them again at its end.
Two more rows, "another container running", run minirun and podman in a second namespace
where one container of each (`sleep`, started before the rounds, removed after them) keeps
the bridges and the rules in place: the steady state of a host that runs containers.

The tools are Debian's packages (runc crun bubblewrap podman uidmap), installed with apt-get if
missing. Nothing is left behind: the bundles are in a temporary directory, runc/crun remove
their containers when `run` returns, and the podman image imported for the benchmark is removed.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MINIRUN = Path(os.environ.get("MINIRUN_BIN", "/opt/minirun/bin/minirun"))
# --before BIN: the same minirun rows again for another installation (the code before a change),
# interleaved with the rest, so a before/after ratio comes from one run.
TEST_USER = "mrtest"
SUBID_RANGE = "100000-165535"
PACKAGES = ("runc", "crun", "bubblewrap", "podman", "uidmap", "busybox-static")
PODMAN_IMAGE = "localhost/minirun-bench-busybox:latest"
PODMAN_FLAGS = [
    "--runtime",
    "runc",
    "--network",
    "none",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
]
CRUN_WRAP = "mount -t tmpfs tmpfs /sys/fs/cgroup/unified && exec "
BENCH_NETNS = "minirun-bench"  # the bridge rows run in this network namespace, made and deleted here
BUSY_NETNS = "minirun-bench-busy"  # ... and the rows with another container running, in this one
KEEPER = "minirun-bench-keeper"  # that other container's name (minirun's and podman's)
RUNC_NETNS = "minirun-bench-ctr"  # runc's container network namespace, made and deleted on every run
RUNC_BRIDGE, RUNC_SUBNET = "mrbench0", "10.211"


@dataclass
class Variant:
    """One row: a command line, run as root or as the test user."""

    name: str
    argv: Callable[[int], list[str]]  # the run number -> argv (runc/crun need unique names)
    rootless: bool = False
    cwd: str | None = None
    network: bool = False  # a row of --bridge: compared with podman's default network too
    times: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class User:
    uid: int
    gid: int
    home: str
    env: dict[str, str]


def sh(argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        sys.exit(f"startup.py: {' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result  # type: ignore[no-any-return]


def install_packages() -> None:
    missing = [
        p
        for p in PACKAGES
        if subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True
        ).stdout.find("ok installed")
        < 0
    ]
    if missing:
        print(f"installing {' '.join(missing)} with apt-get ...", file=sys.stderr)
        sh(["apt-get", "update", "-qq"])
        sh(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )


def test_user(cleanups: list[Callable[[], object]]) -> User:
    """The suite's unprivileged user, with a subordinate id range and a /run/user directory."""
    try:
        pw = pwd.getpwnam(TEST_USER)
    except KeyError:
        sh(["useradd", "-m", "-s", "/bin/sh", TEST_USER])
        pw = pwd.getpwnam(TEST_USER)
    for path, flag in (("/etc/subuid", "--add-subuids"), ("/etc/subgid", "--add-subgids")):
        if not any(line.startswith(f"{TEST_USER}:") for line in Path(path).read_text().splitlines()):
            sh(["usermod", flag, SUBID_RANGE, TEST_USER])
    runtime = Path(f"/run/user/{pw.pw_uid}")
    if not runtime.exists():
        runtime.mkdir(mode=0o700, parents=True)
        os.chown(runtime, pw.pw_uid, pw.pw_gid)
        cleanups.append(lambda: shutil.rmtree(runtime, ignore_errors=True))
    env = {
        "HOME": pw.pw_dir,
        "USER": TEST_USER,
        "LOGNAME": TEST_USER,
        "XDG_RUNTIME_DIR": str(runtime),
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
    }
    return User(pw.pw_uid, pw.pw_gid, pw.pw_dir, env)


def as_user(user: User) -> dict[str, object]:
    """subprocess arguments that run a command as the user: setgroups+setgid+setuid between fork
    and exec, the same thing setpriv does, without exec'ing one more program on every run."""
    return {"user": user.uid, "group": user.gid, "extra_groups": [], "env": user.env}


def oci_bundle(directory: Path, tarball: Path, rootless: bool, user: User | None) -> Path:
    """`runc spec` (or `runc spec --rootless`) around the busybox rootfs, running /bin/true."""
    directory.mkdir(mode=0o755)
    kwargs: dict[str, object] = {"cwd": directory}
    if user is not None:
        os.chown(directory, user.uid, user.gid)
        kwargs.update(as_user(user))
    (directory / "rootfs").mkdir()
    if user is not None:
        os.chown(directory / "rootfs", user.uid, user.gid)
    sh(
        ["tar", "-xf", str(tarball), "-C", "rootfs", "--no-same-owner"]
        if user
        else ["tar", "-xf", str(tarball), "-C", "rootfs"],
        **kwargs,
    )
    sh(["runc", "spec", *(["--rootless"] if rootless else [])], **kwargs)
    config = json.loads((directory / "config.json").read_text())
    config["process"]["args"] = ["/bin/true"]
    config["process"]["terminal"] = False
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    if user is not None:
        # crun's rootless row runs inside `unshare -rm`, where the user is 0: map container root to it.
        for key in ("uidMappings", "gidMappings"):
            for mapping in config["linux"][key]:
                mapping["hostID"] = 0
        (directory / "config-crun.json").write_text(json.dumps(config, indent=2))
        os.chown(directory / "config.json", user.uid, user.gid)
        os.chown(directory / "config-crun.json", user.uid, user.gid)
    return directory


def minirun_has_busybox(env: dict[str, object]) -> bool:
    out = subprocess.run([str(MINIRUN), "images", "-q", "busybox"], capture_output=True, text=True, **env)  # type: ignore[call-overload]
    return bool(out.stdout.strip())


def variants(work: Path, tarball: Path, user: User | None, podman: bool) -> list[Variant]:
    root_bundle = oci_bundle(work / "bundle", tarball, rootless=False, user=None)
    bundle = str(root_bundle)
    rows = [
        Variant(
            "minirun run --rm --network none",
            lambda i: [str(MINIRUN), "run", "--rm", "--network", "none", "busybox", "true"],
        ),
        Variant(
            "runc run",
            lambda i: ["runc", "--root", str(work / "runc"), "run", "--bundle", bundle, f"bench-runc-{i}"],
        ),
        Variant(
            "crun run (in unshare -m)",
            lambda i: [
                "unshare",
                "-m",
                "sh",
                "-c",
                CRUN_WRAP + f"crun --root {work}/crun run --bundle {bundle} bench-crun-{i}",
            ],
        ),
        Variant(
            "  (crun's unshare -m wrapper alone)", lambda i: ["unshare", "-m", "sh", "-c", CRUN_WRAP + "true"]
        ),
        Variant(
            "bwrap --unshare-all",
            lambda i: [
                "bwrap",
                "--unshare-all",
                "--bind",
                f"{bundle}/rootfs",
                "/",
                "--proc",
                "/proc",
                "--dev",
                "/dev",
                "/bin/true",
            ],
        ),
        Variant(
            "unshare -Urfpimnu --mount-proc (floor)",
            lambda i: ["unshare", "-Urfpimnu", "--mount-proc", "true"],
        ),
    ]
    if podman:
        rows.append(
            Variant(
                "podman run --rm --network none",
                lambda i: ["podman", "run", "--rm", *PODMAN_FLAGS, PODMAN_IMAGE, "/bin/true"],
            )
        )
    if user is not None:
        rl = oci_bundle(work / "rootless", tarball, rootless=True, user=user)
        runtime = user.env["XDG_RUNTIME_DIR"]
        rows += [
            Variant("rootless minirun run --rm --network none", rows[0].argv, rootless=True),
            Variant(
                "rootless runc run",
                lambda i: [
                    "runc",
                    "--root",
                    f"{runtime}/bench-runc",
                    "run",
                    "--bundle",
                    str(rl),
                    f"bench-runc-{i}",
                ],
                rootless=True,
            ),
            Variant(
                "rootless crun run (in unshare -rm)",
                lambda i: [
                    "unshare",
                    "-rm",
                    "sh",
                    "-c",
                    CRUN_WRAP + f"crun --root {runtime}/bench-crun run --bundle {rl} "
                    f"--config {rl}/config-crun.json bench-crun-{i}",
                ],
                rootless=True,
            ),
            Variant(
                "  (crun's unshare -rm wrapper alone)",
                lambda i: ["unshare", "-rm", "sh", "-c", CRUN_WRAP + "true"],
                rootless=True,
            ),
            Variant("rootless bwrap --unshare-all", rows[4].argv, rootless=True),
            Variant(
                "rootless unshare -rfpimnu --mount-proc (floor)",
                lambda i: ["unshare", "-rfpimnu", "--mount-proc", "true"],
                rootless=True,
            ),
        ]
    return rows


def bridge_rows(
    work: Path, root_bundle: Path, podman: bool, cleanups: list[Callable[[], object]]
) -> list[Variant]:
    """The default network of each, in a network namespace of the benchmark's own."""
    sh(["ip", "netns", "add", BENCH_NETNS])
    cleanups.append(lambda: subprocess.run(["ip", "netns", "del", BENCH_NETNS], capture_output=True))
    inside = ["nsenter", f"--net=/run/netns/{BENCH_NETNS}"]
    sh([*inside, "ip", "link", "set", "lo", "up"])
    # runc's bridge and NAT, once (a host that runs containers has them already).
    sh([*inside, "ip", "link", "add", RUNC_BRIDGE, "type", "bridge"])
    sh([*inside, "ip", "addr", "add", f"{RUNC_SUBNET}.0.1/16", "dev", RUNC_BRIDGE])
    sh([*inside, "ip", "link", "set", RUNC_BRIDGE, "up"])
    sh([*inside, "nft", "-f", "-"], input=(
        "add table ip mrbench\n"
        "add chain ip mrbench postrouting { type nat hook postrouting priority srcnat; policy accept; }\n"
        f"add rule ip mrbench postrouting ip saddr {RUNC_SUBNET}.0.0/16 "
        f'oifname != "{RUNC_BRIDGE}" masquerade\n'))
    bundle = work / "bundle-net"
    shutil.copytree(root_bundle, bundle, symlinks=True)
    config = json.loads((bundle / "config.json").read_text())
    for ns in config["linux"]["namespaces"]:
        if ns["type"] == "network":
            ns["path"] = f"/run/netns/{RUNC_NETNS}"
    (bundle / "config.json").write_text(json.dumps(config, indent=2))
    wire = (f"ip netns add {RUNC_NETNS} && printf '%s\\n' "
            f"'link add veth-bench type veth peer name eth0 netns {RUNC_NETNS}' "
            f"'link set veth-bench master {RUNC_BRIDGE} up' | ip -batch - && printf '%s\\n' "
            f"'addr add {RUNC_SUBNET}.0.2/16 dev eth0' 'link set eth0 up' 'link set lo up' "
            f"'route add default via {RUNC_SUBNET}.0.1' | ip -n {RUNC_NETNS} -batch - && ")
    rows = [
        Variant(
            "minirun run --rm (bridge)",
            lambda i: [*inside, str(MINIRUN), "run", "--rm", "busybox", "true"],
            network=True,
        ),
        Variant(
            "runc run + veth in a netns (ip)",
            lambda i: [*inside, "sh", "-c", wire + f"runc --root {work}/runc run --bundle {bundle} "
                       f"bench-net-{i}; code=$?; ip netns del {RUNC_NETNS}; exit $code"],
            network=True,
        ),
    ]
    flags = [f for f in PODMAN_FLAGS if f not in ("--network", "none")]
    if podman:
        rows.append(Variant("podman run --rm (its default network)",
                            lambda i: [*inside, "podman", "run", "--rm", *flags, PODMAN_IMAGE, "/bin/true"],
                            network=True))
    # The steady state: in a second namespace, one container of each keeps its bridge and rules.
    sh(["ip", "netns", "add", BUSY_NETNS])
    cleanups.append(lambda: subprocess.run(["ip", "netns", "del", BUSY_NETNS], capture_output=True))
    busy = ["nsenter", f"--net=/run/netns/{BUSY_NETNS}"]
    sh([*busy, "ip", "link", "set", "lo", "up"])
    # removed inside the namespace: that is where their bridges and rules are
    cleanups.append(lambda: subprocess.run([*busy, str(MINIRUN), "rm", "-f", KEEPER], capture_output=True))
    sh([*busy, str(MINIRUN), "run", "-d", "--name", KEEPER, "busybox", "sleep", "86400"])
    rows.append(Variant("minirun run --rm (bridge, another container running)",
                        lambda i: [*busy, str(MINIRUN), "run", "--rm", "busybox", "true"], network=True))
    if podman:
        cleanups.append(lambda: subprocess.run([*busy, "podman", "rm", "-f", "-t", "0", KEEPER],
                                               capture_output=True))
        sh([*busy, "podman", "run", "-d", "--name", KEEPER, *flags, PODMAN_IMAGE, "sleep", "86400"])
        rows.append(Variant("podman run --rm (its network, another container running)",
                            lambda i: [*busy, "podman", "run", "--rm", *flags, PODMAN_IMAGE, "/bin/true"],
                            network=True))
    return rows


MINIRUN_ROWS = ("minirun run", "rootless minirun run")


def before_row(row: Variant, program: str) -> Variant:
    """The same row with another minirun program in place of MINIRUN."""
    def argv(i: int) -> list[str]:
        return [program if a == str(MINIRUN) else a for a in row.argv(i)]

    return Variant(f"{row.name} [before]", argv, rootless=row.rootless, network=row.network)


def python_floor_rows() -> list[Variant]:
    """--floor: what a runtime written in Python pays before any code of its own runs, with the
    interpreter minirun runs on: its start without `site` (`python -S -c pass`), and the same
    importing every standard-library module a `minirun run --rm --network none` loads (listed
    once from `python -X importtime`, so the row follows the code). No container is started."""
    python = str(MINIRUN.parent / "python3")
    run = [str(MINIRUN), "run", "--rm", "--network", "none", "busybox", "true"]
    lines = sh([python, "-X", "importtime", *run]).stderr.splitlines()
    names = {line.rpartition("|")[2].strip() for line in lines if line.startswith("import time:")}
    site = ("site", "_sitebuiltins", "sitecustomize", "_distutils_hack", "apport_python_hook")  # (-S: none)
    stdlib = sorted(n for n in names if " " not in n and not n.startswith(("minirun", *site)))
    script = f"for m in {stdlib!r}:\n try: __import__(m)\n except ImportError: pass"
    return [
        Variant("python -S -c pass (the interpreter)", lambda i: [python, "-S", "-c", "pass"]),
        Variant(f"python -S, {len(stdlib)} stdlib modules of run", lambda i: [python, "-S", "-c", script]),
    ]


def run_once(variant: Variant, number: int, user: User | None) -> float:
    kwargs: dict[str, object] = {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.PIPE,
    }
    if variant.rootless and user is not None:
        kwargs.update(as_user(user))
        kwargs["cwd"] = user.home
    start = time.perf_counter()
    result = subprocess.run(variant.argv(number), **kwargs)  # type: ignore[call-overload]
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"startup.py: {variant.name}: exit {result.returncode}: {result.stderr.decode().strip()}")
    return elapsed


def benchmark(rows: list[Variant], runs: int, user: User | None) -> None:
    for number in range(runs + 1):  # round 0 warms the page cache and is not counted
        shift = number % len(rows)
        for variant in rows[shift:] + rows[:shift]:
            elapsed = run_once(variant, number, user)
            if number > 0:
                variant.times.append(elapsed)
        print(f"\rround {number}/{runs}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)


def report(rows: list[Variant]) -> None:
    def median(name: str) -> float | None:
        row = next((r for r in rows if r.name == name), None)
        return statistics.median(row.times) if row and row.times else None

    bridge = median("podman run --rm (its default network)")
    busy = median("podman run --rm (its network, another container running)")

    width = max(len(row.name) for row in rows)
    print(f"{'':{width}} {'median':>8} {'min':>8} {'max':>8} {'/runc':>6} {'/crun':>6}")
    for row in rows:
        prefix = "rootless " if row.rootless else ""
        runc = median(prefix + "runc run")
        crun = median(prefix + ("crun run (in unshare -rm)" if row.rootless else "crun run (in unshare -m)"))
        med = statistics.median(row.times)
        ratios = [f"{med / ref:6.2f}" if ref else f"{'-':>6}" for ref in (runc, crun)]
        print(
            f"{row.name:{width}} {med * 1000:6.1f}ms {min(row.times) * 1000:6.1f}ms "
            f"{max(row.times) * 1000:6.1f}ms {ratios[0]} {ratios[1]}"
            + (f"  /podman bridge {med / bridge:4.2f}" if bridge and row.network else "")
            + (f"  /podman busy {med / busy:4.2f}" if busy and row.network and "running" in row.name else "")
        )


def profile(runs: int, user: User | None) -> None:
    """Run `minirun run` with MINIRUN_TRACE_TIMING=1 and print the median of every phase."""
    durations: dict[tuple[str, str], list[float]] = {}
    order: list[tuple[str, str]] = []
    users = [None] + ([user] if user else [])
    for who in users:
        durations.clear()
        order.clear()
        totals: list[float] = []
        for _ in range(runs + 1):
            kwargs: dict[str, object] = {"capture_output": True, "text": True}
            env = dict(who.env) if who else dict(os.environ)
            if who:
                kwargs.update(as_user(who))
            env["MINIRUN_TRACE_TIMING"] = "1"
            env["MINIRUN_TRACE_T0"] = repr(time.clock_gettime(time.CLOCK_MONOTONIC))
            kwargs["env"] = env
            result = subprocess.run(
                [str(MINIRUN), "run", "--rm", "--network", "none", "busybox", "true"], **kwargs
            )  # type: ignore[call-overload]
            end = time.clock_gettime(time.CLOCK_MONOTONIC)
            # "minirun trace:   31.2 ms   +2.1 ms  parent  cgroup"
            marks = [
                line.split(None, 7)
                for line in result.stderr.splitlines()
                if line.startswith("minirun trace:")
            ]
            if not durations and not totals:  # the first run warms the caches
                totals.append(0.0)
                continue
            for m in marks:
                key = (m[6], m[7])
                if key not in durations:
                    durations[key] = []
                    order.append(key)
                durations[key].append(float(m[4].lstrip("+")))
            totals.append((end - float(env["MINIRUN_TRACE_T0"])) * 1000)
        print(
            f"\nphases of `minirun run --rm --network none busybox true` "
            f"({'as ' + TEST_USER if who else 'as root'}), median of {runs} runs:"
        )
        for key in order:
            print(f"  {statistics.median(durations[key]):7.1f} ms  {key[0]:6}  {key[1]}")
        print(
            f"  {statistics.median(totals[1:]):7.1f} ms  total, fork+exec to exit, as the benchmark sees it"
        )
        print("  (child phases run while the parent waits in 'exec': the parent's lines add up to the total)")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=30, help="interleaved rounds (default 30)")
    parser.add_argument(
        "--profile", type=int, metavar="N", help="instead: the per-phase profile, median of N"
    )
    parser.add_argument("--no-rootless", action="store_true", help="only the root rows")
    parser.add_argument("--no-podman", action="store_true", help="without the podman row (it is slow)")
    parser.add_argument("--bridge", action="store_true", help="also the rows with a network (root)")
    parser.add_argument("--before", metavar="BIN", help="also the minirun rows of this other minirun program")
    parser.add_argument("--floor", action="store_true", help="also the Python floor rows (no container)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("startup.py: run as root (it installs packages, and runs the rootless rows as mrtest)")
    install_packages()
    cleanups: list[Callable[[], object]] = []
    user = None if args.no_rootless else test_user(cleanups)
    work = Path(tempfile.mkdtemp(prefix="minirun-bench-"))
    cleanups.append(lambda: shutil.rmtree(work, ignore_errors=True))
    try:
        work.chmod(0o755)
        tarball = work / "busybox.tar"
        sh([str(REPO / "rootfs-images" / "busybox" / "build.sh"), str(tarball)])
        tarball.chmod(0o644)
        if not minirun_has_busybox({}):
            sh([str(MINIRUN), "import", str(tarball), "busybox"])
        if user is not None and not minirun_has_busybox(as_user(user)):
            sh([str(MINIRUN), "import", str(tarball), "busybox"], **as_user(user), cwd=user.home)
        if args.profile:
            profile(args.profile, user)
            return 0
        podman = not args.no_podman
        if podman:
            sh(["podman", "import", str(tarball), PODMAN_IMAGE])
            cleanups.append(
                lambda: subprocess.run(["podman", "rmi", "-f", PODMAN_IMAGE], capture_output=True)
            )
        if user is not None:  # the rootless runc/crun keep their (empty by then) state here
            for tool in ("bench-runc", "bench-crun"):
                state = Path(user.env["XDG_RUNTIME_DIR"], tool)
                cleanups.append(partial(shutil.rmtree, state, ignore_errors=True))
        rows = variants(work, tarball, user, podman)
        if args.bridge:
            rows += bridge_rows(work, work / "bundle", podman, cleanups)
        if args.before:
            rows += [before_row(row, args.before) for row in rows if row.name.startswith(MINIRUN_ROWS)]
        if args.floor:
            rows += python_floor_rows()
        benchmark(rows, args.runs, user)
        cpus = os.cpu_count()
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        print(
            f"\n{time.strftime('%Y-%m-%d')}, {os.uname().release}, {cpus} CPUs, {mem:.0f} GiB, "
            f"{args.runs} interleaved rounds; load average {os.getloadavg()[0]:.2f}"
        )
        report(rows)
    finally:
        for cleanup in reversed(cleanups):
            cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
