"""Which network a container gets, and the two moments the parent wires it up and takes it down.

A new network namespace (clone(2) with CLONE_NEWNET) holds nothing but a loopback interface.
What else the container gets is its network mode:

  bridge          root's default: a veth pair to the minirun0 bridge, an address leased from
                  its subnet, NAT out and `-p` in with nftables       (network/bridge.py, nat.py)
  slirp4netns     the rootless default: a tap device served by a user-mode network stack
                                                                        (network/slirp.py)
  none            only lo (and the rootless default when slirp4netns is not installed)
  host            no network namespace of its own: the host's interfaces
  container:NAME  the network namespace of another running container (its lo, its eth0),
                  joined with that container's user namespace (minirun/sharing.py)

The parent wires the network in sync step 2 (minirun/sync.py), after the id maps and before
"go": the child's namespace exists, its pid is known, and the command has not started yet.
Everything a mode needs (netlink.py's socket, the nft and slirp4netns programs) is loaded only by
the modes that need it: `--network none` costs nothing.
"""

import _thread
import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from minirun import state
from minirun.errors import MinirunError
from minirun.fsutil import on_path
from minirun.spec import ContainerSpec, PortMapping


class NetworkPlan(NamedTuple):
    mode: str  # bridge | slirp4netns | none | host | container:NAME
    ports: tuple[PortMapping, ...] = ()
    join_bundle: str = ""  # container:NAME: its directory, for its /etc/hosts and /etc/resolv.conf


def choose(spec: ContainerSpec, rootless: bool, state_dir: Path) -> NetworkPlan:
    """Resolve the default and check the mode against the user and the host; no side effects."""
    mode = spec.network
    if mode == "default":
        mode = "bridge" if not rootless else ("slirp4netns" if on_path("slirp4netns") else "none")
    if mode == "bridge":
        if rootless:
            raise MinirunError("--network bridge needs root (it creates host interfaces); rootless "
                               "containers use --network slirp4netns")
        from minirun.network import leases  # bridge only: --network none does not load it

        leases.configured_network()  # a bad MINIRUN_SUBNET fails now, before anything exists
    if mode == "slirp4netns":
        from minirun.network import slirp
        slirp.find_binary()
    if spec.ports and mode not in ("bridge", "slirp4netns"):
        raise MinirunError(f"-p/--publish needs a bridge or slirp4netns network, not --network {mode}")
    if mode.startswith("container:"):
        if spec.dns or spec.add_hosts:
            # The other container's /etc/resolv.conf and /etc/hosts are shared as they are
            # (docker refuses the same combination: "conflicting options").
            raise MinirunError("--dns and --add-host cannot be used with --network container:NAME")
        return join_plan(mode, rootless, state_dir)
    return NetworkPlan(mode, spec.ports)


def join_plan(mode: str, rootless: bool, state_dir: Path) -> NetworkPlan:
    """container:NAME: the container is born in the other's network namespace, and in its user
    namespace, which owns that network namespace (minirun/sharing.py): so it may bind port 80
    there, and an unprivileged user may join a container of its own."""
    other = state.find(state_dir, mode.split(":", 1)[1])
    if other.status != "running" or not other.pid:
        raise MinirunError(f"cannot join the network of container {other.name}: it is not running")
    return NetworkPlan(mode, join_bundle=other.bundle)


def has_own_netns(mode: str) -> bool:
    """Does clone(2) create a network namespace (which the container then owns)?"""
    return mode != "host" and not mode.startswith("container:")


def connect(plan: NetworkPlan, container_id: str, pid: int, state_dir: Path) -> dict[str, Any]:
    """Sync step 2: wire the network into the child's namespace. Returns NetworkSettings."""
    if plan.mode == "bridge":
        from minirun.network import bridge  # leases, nft, netlink: only now
        settings = bridge.connect(container_id, pid, state_dir, list(plan.ports))
    elif plan.mode == "slirp4netns":
        from minirun.network import slirp
        settings = slirp.connect(container_id, pid, state_dir, list(plan.ports))
    else:
        settings = {"Mode": plan.mode}
    return {**settings, "Ports": ports_json(plan.ports)}


def disconnect(state_dir: Path, container_id: str, settings: dict[str, Any]) -> None:
    """Take down what connect set up. Idempotent: the monitor calls it when the container
    ends, `rm` and `prune` again for containers whose monitor died."""
    if settings.get("Mode") == "bridge":
        from minirun.network import bridge
        bridge.disconnect(container_id, state_dir, settings)
    elif settings.get("Mode") == "slirp4netns":
        from minirun.network import slirp
        slirp.disconnect(settings, slirp.socket_path(state_dir, container_id))


@contextlib.contextmanager
def disconnecting(state_dir: Path, container_id: str, settings: dict[str, Any]) -> Iterator[None]:
    """disconnect, sent from a second thread while the caller's block runs (`--rm` removes the
    container's files meanwhile). A bridge's deletions mostly wait in the kernel for RCU grace
    periods (the last container's bridge and table: ~50 ms), a wait the files need not queue
    behind. The interpreter's own `_thread` (always loaded), a lock and a list, not `threading`:
    that is one more import (~1 ms) on every `run --rm`, `--network none` too, and no start loads
    it (tests/root/test_import_budget.py). Signal handlers still run in the main thread only (the
    signal module's documentation)."""
    if settings.get("Mode") == "bridge":
        from minirun.network import bridge  # noqa: F401  imported here, not by the thread
    done = _thread.allocate_lock()
    done.acquire()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            disconnect(state_dir, container_id, settings)
        except BaseException as e:  # handed to the main thread below
            failed.append(e)
        finally:
            done.release()

    try:
        _thread.start_new_thread(run, ())
    except RuntimeError:  # no thread to be had (minirun's own cgroup at its pids.max): in this one
        run()
    try:
        yield
    finally:
        done.acquire()  # the thread has finished
    if failed:
        raise failed[0]


def sweep() -> None:
    """prune (root): address leases whose container's monitor died, in this network namespace
    (with their DNAT rules, bridge.sweep) and in the books of namespaces minirun ran in before."""
    from minirun.network import leases

    leases.sweep_other_namespaces()
    if leases.this_netns_book(leases.BOOKS, leases.configured_network()).exists():
        from minirun.network import bridge  # pyroute2: only when there is a book here

        bridge.sweep()


def ports_json(ports: Sequence[PortMapping]) -> dict[str, list[dict[str, str]]]:
    """docker inspect's NetworkSettings.Ports: {"80/tcp": [{"HostIp": ..., "HostPort": ...}]}."""
    result: dict[str, list[dict[str, str]]] = {}
    for p in ports:
        result.setdefault(f"{p.container_port}/{p.proto}", []).append(
            {"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)})
    return result

