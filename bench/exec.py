#!/usr/bin/env python3
"""`exec` latency: `minirun exec NAME true` against `podman exec` and `runc exec`, as root.

    sudo python3 bench/exec.py              # 30 interleaved rounds
    sudo python3 bench/exec.py --runs 100
    sudo python3 bench/exec.py --before ../old-checkout   # also the same row for another checkout
    sudo python3 bench/exec.py --gap 0.7   # a pause before each command: the cgroup lock goes cold

One long-running busybox container each (minirun's, and podman's with runc, which `runc exec`
then also enters), both with --network none; what is timed is the whole command, from fork+exec
to exit, as a user would see it. Rounds are interleaved so that load changes hit every row.
Everything started is removed at the end (containers, the podman image).

Back to back, the rows keep the kernel's cgroup_threadgroup_rwsem warm for each other: every
write of a pid to a cgroup.procs (runc exec's, podman's) takes it, and only the first taker after
a quiet spell waits for an RCU grace period (README "Start-up time"). A user typing one exec
meets it cold; --gap SECONDS sleeps (untimed) before each command so that each row does too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PODMAN_IMAGE = "localhost/minirun-exec-bench"


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--gap", type=float, default=0.0, metavar="SECONDS",
                        help="sleep this long before each timed command (the cgroup lock goes cold)")
    parser.add_argument("--before", metavar="CHECKOUT", help="also `minirun exec` from this other checkout")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (sudo)")
    python = "/opt/minirun/bin/python" if os.path.exists("/opt/minirun/bin/python") else sys.executable
    minirun = [python, "-m", "minirun"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    os.environ.update(env)
    name = f"exec-bench-{os.getpid()}"
    tmp = Path(tempfile.mkdtemp(prefix="minirun-exec-bench-"))
    before = os.path.abspath(args.before) if args.before else ""
    # Every command runs in here, not in a checkout: `python -m` puts the working directory first
    # on sys.path, ahead of PYTHONPATH, so started from this checkout --before's row ran this code.
    os.chdir(tmp)
    monitor = subprocess.Popen([*minirun, "run", "--rm", "--name", name, "--network", "none", "busybox",
                                "sleep", "3600"], stdin=subprocess.DEVNULL)
    podman_id = image_id = ""
    try:
        for _ in range(100):
            if subprocess.run([*minirun, "exec", name, "true"], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        rows: dict[str, list[str]] = {"minirun exec": [*minirun, "exec", name, "true"]}
        if before:  # the other checkout's code, through env (PYTHONPATH is this one's otherwise)
            rows["minirun exec [before]"] = ["env", f"PYTHONPATH={before}", *minirun,
                                             "exec", name, "true"]
        if shutil.which("podman") and shutil.which("runc"):
            subprocess.run([str(REPO / "rootfs-images" / "busybox" / "build.sh"), str(tmp / "busybox.tar")],
                           check=True, capture_output=True)
            image_id = subprocess.run(
                ["podman", "import", "-q", "--change", 'CMD=["sh"]', str(tmp / "busybox.tar"), PODMAN_IMAGE],
                check=True, capture_output=True, text=True).stdout.strip()
            podman_id = subprocess.run(
                ["podman", "--runtime", "runc", "run", "-d", "--network", "none",
                 "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", PODMAN_IMAGE,
                 "sleep", "3600"],
                check=True, capture_output=True, text=True).stdout.strip()
            rows["podman exec (runc)"] = ["podman", "--runtime", "runc", "exec", podman_id, "true"]
            rows["runc exec"] = ["runc", "--root", "/run/runc", "exec", podman_id, "true"]
        times: dict[str, list[float]] = {row: [] for row in rows}
        order = list(rows)
        for i in range(args.runs):
            for row in order[i % len(order):] + order[:i % len(order)]:
                time.sleep(args.gap)
                times[row].append(timed(rows[row]))
        reference = statistics.median(times.get("runc exec", times["minirun exec"]))
        title = f"median of {args.runs} interleaved runs"
        print(f"{title:40} {'ms':>7} {'min':>7} {'max':>7} {'/runc':>6}")
        for row, values in times.items():
            median = statistics.median(values)
            print(f"{row:40} {median:7.1f} {min(values):7.1f} {max(values):7.1f} {median / reference:6.2f}")
    finally:
        subprocess.run([*minirun, "rm", "-f", name], capture_output=True)
        monitor.wait(timeout=60)
        if podman_id:
            subprocess.run(["podman", "rm", "-f", "-t", "0", podman_id], capture_output=True)
        subprocess.run(["podman", "rmi", "-f", PODMAN_IMAGE], capture_output=True)
        if image_id:  # by its id too: the name alone has left it behind, untagged
            subprocess.run(["podman", "rmi", "-f", image_id], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
