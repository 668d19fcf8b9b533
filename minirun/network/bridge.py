"""The bridge network (root): a virtual switch on the host, one veth cable per container.

    host network namespace                       container network namespace
    ----------------------------------------     --------------------------------
    minirun0 (bridge, 10.209.0.1/16)
       └── veth1a2b3c4d  <== veth pair ==>      eth0 10.209.0.2/16
                                                 default via 10.209.0.1

A veth pair is two interfaces joined like the ends of a cable (veth(4)). One end is created on
the host and plugged into the bridge; the other is born in the container's network namespace
(named by the pid of its PID 1) as eth0, and given the leased address and a default route
through the bridge. When the container's network namespace dies, the kernel deletes the end
inside it, and with it the pair.

All of this is netlink (rtnetlink(7)): the same messages `ip link add ... type veth` sends,
written with the standard library's socket in netlink.py (pyroute2, used before, cost 90-150 ms
to import; README, "Why these dependencies").
"""

import contextlib
import os
from pathlib import Path
from typing import Any

from minirun import trace
from minirun.network import leases, nat, netlink
from minirun.network.leases import Network
from minirun.spec import PortMapping


def veth_names(container_id: str) -> tuple[str, str]:
    """(host end, container end): interface names are <= 15 bytes."""
    return f"veth{container_id[:8]}", "eth0"


def link_exists(name: str) -> bool:
    """Looked up in the caller's network namespace (not /sys/class/net, which shows the
    namespace sysfs was mounted in)."""
    return netlink.index_of(name) is not None


def create_bridge(rtnl: netlink.Rtnl, network: Network) -> None:
    rtnl.add_bridge(network.name)
    index = _index(network.name)
    rtnl.add_address(index, str(network.gateway), network.subnet.prefixlen)
    rtnl.set_link(index, up=True)


def _index(name: str) -> int:
    index = netlink.index_of(name)
    if index is None:
        raise OSError(f"no network interface {name}")
    return index


def connect(container_id: str, pid: int, state_dir: Path, ports: list[PortMapping]) -> dict[str, Any]:
    """Lease an address, make sure the bridge and NAT table exist, wire the container in."""
    network = leases.configured_network()
    host_end = veth_names(container_id)[0]
    settings: dict[str, Any] = {"Mode": "bridge", "Bridge": network.name, "HostVeth": host_end,
                                "SandboxKey": f"/proc/{pid}/ns/net"}
    try:
        # The book of this network namespace, not of state_dir: see leases.py.
        with leases.opened(leases.BOOKS, network) as book, netlink.Rtnl() as rtnl:
            for dead in book.dead():
                forget(book, dead)
            first = not book.leases
            address = book.allocate(container_id, os.getpid())
            settings.update(IPAddress=str(address), IPPrefixLen=network.subnet.prefixlen,
                            Gateway=str(network.gateway))
            # The first container (re)makes the table in one nft call, whatever a killed minirun
            # left; the others only check that it is there (one netlink message: an nft call would
            # be a fork+exec, 15-35 ms), in case something deleted it (`nft flush ruleset`). nft
            # compiles it while the bridge and the veth are made, and is waited for under the lock:
            # until it is done, another container would find no table and make it again.
            table = nat.start_table(network) if first or not nat.table_exists() else None
            try:
                # Under the lock: nobody deletes the bridge while we hold a lease, nobody creates it twice.
                if not link_exists(network.name):
                    create_bridge(rtnl, network)
                settings["MacAddress"] = plug_in(container_id, pid, network, str(address))
            finally:
                if table is not None:  # waited for even after a failure: no nft outlives minirun
                    nat.table_made(table, network)
        trace.mark("network: lease, bridge, veth, nft table")
        nat.publish(container_id, str(address), ports)
    except BaseException:
        disconnect(container_id, state_dir, settings)
        raise
    return settings


def plug_in(container_id: str, pid: int, network: Network, address: str) -> str:
    """Create the veth pair with one end in the container, plug the other into the bridge.
    Returns eth0's MAC address."""
    host_end, container_end = veth_names(container_id)
    with netlink.Rtnl() as rtnl:
        # The peer is born in the namespace of PID's network (IFLA_NET_NS_PID, rtnetlink(7)).
        rtnl.add_veth(host_end, container_end, pid)
        rtnl.set_link(_index(host_end), up=True, master=_index(network.name))
    # The rest happens inside the container's network namespace: the socket is opened there
    # (a socket stays bound to the namespace it was created in).
    with netlink.entered(f"/proc/{pid}/ns/net"), netlink.Rtnl() as rtnl:
        index = _index(container_end)
        rtnl.add_address(index, address, network.subnet.prefixlen)
        rtnl.set_link(index, up=True)
        rtnl.add_default_route(str(network.gateway))
        return next(link.mac for link in rtnl.links() if link.ifindex == index)


def forget(book: leases.LeaseBook, container_id: str) -> None:
    """Drop what a dead container holds in the network's shared state: its host veth, its DNAT
    rules, its lease. The veth is usually gone with its namespace, not always yet: the kernel
    dismantles a dead namespace later (cleanup_net, a work queue), or something still holds it
    (a bind mount). Left plugged in, it kept the last lease's bridge and table ("something is
    still plugged in"), the book went with the lease, and nothing removed them any more (atk18)."""
    if (index := netlink.index_of(veth_names(container_id)[0])) is not None:
        with contextlib.suppress(OSError), netlink.Rtnl() as rtnl:  # ENODEV: gone meanwhile
            rtnl.delete_link(index)
    nat.unpublish(container_id)
    book.release(container_id)


def disconnect(container_id: str, state_dir: Path, settings: dict[str, Any]) -> None:
    """Undo connect; safe to repeat, and after the container (or its monitor) died."""
    # Names from the id and the configuration, never from the record's settings: a record
    # saying HostVeth=eth0 or Bridge=eth0 must not make `rm` delete the host's link (issue 12).
    host_end = veth_names(container_id)[0]
    network = leases.configured_network()
    with netlink.Rtnl() as rtnl:
        # Usually gone already: the container's namespace died and took the pair with it.
        # Not always: the kernel dismantles a dead namespace later, in a work queue (cleanup_net),
        # and a deletion waits for RCU (netdev_run_todo): ~40 ms, about one run in five here.
        if (index := netlink.index_of(host_end)) is not None:
            with contextlib.suppress(OSError):
                rtnl.delete_link(index)
            trace.mark("teardown: veth (its namespace was not dismantled yet)")
        with leases.opened(leases.BOOKS, network) as book:
            book.release(container_id)
            for dead in book.dead():
                forget(book, dead)
            # The last container left: remove the bridge and the table (with every rule in it, this
            # container's too), unless something is still plugged into the bridge (a container this
            # book does not know: never pull the floor from under it). Otherwise only its rules go.
            if not book.leases and not bridge_ports(rtnl, network.name):
                # Both are netlink messages that wait in the kernel for RCU grace periods, ~10 and
                # ~40 ms here; sent from two threads at once they took as long (53 ms) as in a row.
                nat.delete_table()
                if (index := netlink.index_of(network.name)) is not None:
                    rtnl.delete_link(index)
                trace.mark("teardown: nft table, bridge")
            else:
                nat.unpublish(container_id)


def sweep() -> bool:
    """prune, in this network namespace: the leases (and DNAT rules) of containers whose monitor
    died, and the bridge and table when nothing is left (what disconnect does after its own).
    True if the book had dead leases."""
    network = leases.configured_network()
    if not leases.this_netns_book(leases.BOOKS, network).exists():
        return False
    with netlink.Rtnl() as rtnl, leases.opened(leases.BOOKS, network) as book:
        dead = book.dead()
        for container_id in dead:
            forget(book, container_id)
        if dead and not book.leases and not bridge_ports(rtnl, network.name):
            nat.delete_table()
            if (index := netlink.index_of(network.name)) is not None:
                with contextlib.suppress(OSError):  # ENODEV: gone already
                    rtnl.delete_link(index)
    return bool(dead)


def bridge_ports(rtnl: netlink.Rtnl, bridge: str) -> list[str]:
    """The interfaces plugged into `bridge` (IFLA_MASTER), in the caller's network namespace."""
    index = netlink.index_of(bridge)
    if index is None:
        return []
    return [link.name for link in rtnl.links() if link.master == index]
