#!/usr/bin/env python3
"""Density: many detached containers at once, and what their monitors cost.

    sudo python3 bench/density.py              # 100 `run -d busybox sleep`, minirun and podman
    sudo python3 bench/density.py -n 20 --no-podman

Starts N detached `sleep 3600` containers (--network none) one after the other, as fast as
they come, then measures:
  - start time per container (wall time of each `run -d` until it returned: command exec'd);
  - the monitors' memory: PSS summed over every monitor process (/proc/PID/smaps_rollup),
    i.e. what they cost together, each shared page counted once; and per monitor;
  - the time to stop all N at once (`stop -t 1`: sleep as PID 1 ignores SIGTERM, so each one
    is SIGKILLed after 1 s, in parallel) and to remove them.
podman's side (`podman run -d`, runc, its monitor is conmon) is measured the same way where
podman runs. MINIRUN_BIN picks the minirun to run (default: the installed one).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

MINIRUN = os.environ.get("MINIRUN_BIN", "/opt/minirun/bin/minirun")
PODMAN = ["podman", "--runtime", "runc"]
PODMAN_RUN = [*PODMAN, "run", "--pull", "never", "--network", "none", "--ulimit", "nofile=1024:1024",
              "--ulimit", "nproc=1024:1024"]
PODMAN_IMAGE = "localhost/minirun-density-busybox"


def pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def measure(label: str, n: int, run: list[str], pid_of: list[str], stop: list[str], rm: list[str]) -> None:
    names = [f"density-{os.getpid()}-{i}" for i in range(n)]
    starts = []
    try:
        for name in names:
            begin = time.monotonic()
            subprocess.run([*run, "--name", name, *IMAGE_ARGS[label]], check=True, capture_output=True)
            starts.append(time.monotonic() - begin)
        time.sleep(2)  # let every monitor settle
        monitors = []
        for name in names:
            pid = int(subprocess.run([*pid_of, name], check=True, capture_output=True, text=True).stdout)
            monitors.append(parent_of(pid))
        pss = [pss_kib(m) for m in monitors]
        begin = time.monotonic()
        subprocess.run([*stop, *names], check=True, capture_output=True, timeout=600)
        stopped = time.monotonic() - begin
    finally:
        begin = time.monotonic()
        subprocess.run([*rm, *names], capture_output=True, timeout=600, check=False)
        removed = time.monotonic() - begin
    ms = [s * 1000 for s in starts]
    mib = [k / 1024 for k in pss]
    print(f"{label:8} {n} containers: start median {statistics.median(ms):.0f} ms (min {min(ms):.0f}, "
          f"max {max(ms):.0f}), total {sum(starts):.1f} s; monitors' PSS total {sum(mib):.1f} MiB, per "
          f"monitor median {statistics.median(mib):.2f} MiB (max {max(mib):.2f}); stop all (-t 1) "
          f"{stopped:.1f} s; rm all {removed:.1f} s", flush=True)


IMAGE_ARGS = {"minirun": ["--network", "none", "busybox", "sleep", "3600"],
              "podman": [PODMAN_IMAGE, "sleep", "3600"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("--no-podman", action="store_true")
    args = parser.parse_args()
    measure("minirun", args.n, [MINIRUN, "run", "-d"], [MINIRUN, "inspect", "-f", "{{.State.Pid}}"],
            [MINIRUN, "stop", "-t", "1"], [MINIRUN, "rm", "-f"])
    if args.no_podman:
        return
    tar = "/tmp/density-busybox.tar"
    subprocess.run(["rootfs-images/busybox/build.sh", tar], check=True, capture_output=True,
                   cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run(["podman", "import", "--change", 'CMD=["sh"]', tar, PODMAN_IMAGE], check=True,
                   capture_output=True)
    try:
        measure("podman", args.n, [*PODMAN_RUN, "-d"], ["podman", "inspect", "-f", "{{.State.Pid}}"],
                [*PODMAN, "stop", "-t", "1"], [*PODMAN, "rm", "-f"])
    finally:
        subprocess.run(["podman", "rmi", "-f", PODMAN_IMAGE], capture_output=True, check=False)
        os.unlink(tar)


if __name__ == "__main__":
    main()
