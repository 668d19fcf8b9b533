#!/usr/bin/env python3
"""stdio throughput of `minirun run` (no -t): what a pipeline through a container costs.

    sudo python3 bench/throughput.py              # 3 rounds of each case, medians
    sudo python3 bench/throughput.py --runs 5

Cases, as root, `--network none`, the busybox image:
  out   minirun run --rm busybox yes | head -c 100M          (container -> caller's stdout)
  in    head -c 200M /dev/zero | minirun run --rm -i busybox cat > /dev/null
        (caller's stdin -> container -> caller's stdout)
Each is also run with `--log-driver none` where minirun knows that flag, since docker's
json-file log writes one JSON object per line (`yes` prints 2-byte lines: the log is ~35
times the data). MINIRUN_BIN picks the minirun to run (default: the installed one; PYTHONPATH
picks its code).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

MINIRUN = os.environ.get("MINIRUN_BIN", "/opt/minirun/bin/minirun")


def timed(shell: str) -> float:
    start = time.monotonic()
    subprocess.run(["sh", "-c", shell], check=True, stdin=subprocess.DEVNULL)
    return time.monotonic() - start


def knows_log_driver() -> bool:
    help_text = subprocess.run([MINIRUN, "run", "--help"], capture_output=True, text=True).stdout
    return "--log-driver" in help_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    variants = [("", "default")] + ([("--log-driver none ", "log none")] if knows_log_driver() else [])
    for flags, label in variants:
        out = f"{MINIRUN} run --rm --network none {flags}busybox yes | head -c 100M | wc -c > /dev/null"
        inp = (f"head -c 200M /dev/zero | {MINIRUN} run --rm -i --network none {flags}busybox cat "
               "| wc -c > /dev/null")
        for name, shell, mb in (("out: yes | head -c 100M", out, 100), ("in: 200 MB -i cat", inp, 200)):
            times = [timed(shell) for _ in range(args.runs)]
            median = statistics.median(times)
            print(f"{name:26} [{label:8}] median {median:6.2f} s  ({mb / median:7.1f} MB/s)  "
                  f"min {min(times):.2f} max {max(times):.2f}", flush=True)


if __name__ == "__main__":
    main()
