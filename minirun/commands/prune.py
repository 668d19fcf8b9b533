"""`minirun prune`: remove every stopped container, and clean up after dead monitors, killed
starts, imports and rmis: everything minirun owns that nothing names any more."""

import argparse
import sys

from minirun import container, paths, state
from minirun.errors import MinirunError


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("prune", help="remove all stopped containers")
    p.add_argument("-f", "--force", action="store_true", help="accepted for docker compatibility")


def run(args: argparse.Namespace) -> int:
    state_dir = paths.state_dir()
    with state.exclusive(state_dir):
        for record in state.all_records(state_dir):
            # "created" with a live monitor is a container still starting: not ours to remove.
            # (A monitor that died is already reported as "exited" by state.all_records.)
            if record.status == "exited" or (record.status == "created" and not record.monitor_alive()):
                container.remove(state_dir, record)
                print(record.id)
        # What no record names: left by a SIGKILL at the wrong moment, or a broken record.
        for container_id in container.sweep(state_dir, paths.store_dir()):
            print(container_id)
    # Not under the records' lock: these have locks of their own (images.lock, the lease books').
    from minirun import network
    from minirun.images import store

    store.sweep_abandoned(paths.store_dir())
    if not paths.is_rootless():  # leases are root's (bridges); rootless has slirp4netns, nothing shared
        try:
            network.sweep()
        except (OSError, MinirunError) as e:  # the next `run` on the bridge reclaims them as well
            print(f"minirun: warning: cannot sweep the address leases: {e}", file=sys.stderr)
    return 0
