"""The bridge network (root): a virtual switch on the host, one veth cable per container.

    host network namespace                       container network namespace
    ----------------------------------------     --------------------------------
    minirun0 (bridge, 10.209.0.1/16)
       └── veth1a2b3c4d  <== veth pair ==>      eth0 10.209.0.2/16
                                                 default via 10.209.0.1

A veth pair is two interfaces joined like the ends of a cable (veth(4)). Both ends are created
on the host; one is plugged into the bridge, the other is moved into the container's network
namespace (by the pid of its PID 1), renamed eth0, given the leased address and a default route
through the bridge. When the container's network namespace dies, the kernel deletes the end
inside it, and with it the pair.

All of this is netlink (rtnetlink(7)), spoken here through pyroute2's IPRoute: the same
messages `ip link add ... type veth` sends. pyroute2 takes ~0.15 s to import, so this module
is imported only when a bridge network is set up or torn down.
"""

import contextlib
import os
import socket
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute  # type: ignore[import-untyped]

from minirun.network import leases, nat
from minirun.network.leases import Network
from minirun.spec import PortMapping


def veth_names(container_id: str) -> tuple[str, str]:
    """(host end, container end before it is renamed eth0): interface names are <= 15 bytes."""
    return f"veth{container_id[:8]}", f"ctr{container_id[:8]}"


def link_exists(name: str) -> bool:
    """Looked up in the caller's network namespace (not /sys/class/net, which shows the
    namespace sysfs was mounted in)."""
    try:
        socket.if_nametoindex(name)
        return True
    except OSError:
        return False


def create_bridge(ipr: Any, network: Network) -> None:
    ipr.link("add", ifname=network.name, kind="bridge")
    index = ipr.link_lookup(ifname=network.name)[0]
    ipr.addr("add", index=index, address=str(network.gateway), prefixlen=network.subnet.prefixlen)
    ipr.link("set", index=index, state="up")


def connect(container_id: str, pid: int, state_dir: Path, ports: list[PortMapping]) -> dict[str, Any]:
    """Lease an address, make sure the bridge and NAT table exist, wire the container in."""
    network = leases.configured_network()
    # The book of this network namespace, not of state_dir: see leases.py.
    with leases.opened(leases.BOOKS, network) as book, IPRoute() as ipr:
        for dead in book.dead():
            forget(book, dead)
        address = book.allocate(container_id, os.getpid())
        # Under the lock: nobody deletes the bridge while we hold a lease, nobody creates it twice.
        if not link_exists(network.name):
            create_bridge(ipr, network)
        if not nat.table_exists():
            nat.create_table(network)
    settings = {"Mode": "bridge", "Bridge": network.name, "IPAddress": str(address),
                "IPPrefixLen": network.subnet.prefixlen, "Gateway": str(network.gateway),
                "HostVeth": veth_names(container_id)[0], "SandboxKey": f"/proc/{pid}/ns/net"}
    try:
        settings["MacAddress"] = plug_in(container_id, pid, network, str(address))
        nat.publish(container_id, str(address), ports)
    except BaseException:
        disconnect(container_id, state_dir, settings)
        raise
    return settings


def plug_in(container_id: str, pid: int, network: Network, address: str) -> str:
    """Create the veth pair, plug one end into the bridge, move the other into the container.
    Returns eth0's MAC address."""
    host_end, container_end = veth_names(container_id)
    with IPRoute() as ipr:
        ipr.link("add", ifname=host_end, kind="veth", peer={"ifname": container_end})
        bridge = ipr.link_lookup(ifname=network.name)[0]
        ipr.link("set", index=ipr.link_lookup(ifname=host_end)[0], master=bridge, state="up")
        # Moving an interface to another namespace: IFLA_NET_NS_PID (rtnetlink(7)).
        ipr.link("set", index=ipr.link_lookup(ifname=container_end)[0], net_ns_pid=pid)
    # The rest happens inside the container's network namespace (pyroute2 opens its netlink
    # socket there: a socket stays bound to the namespace it was created in).
    with IPRoute(netns=f"/proc/{pid}/ns/net") as ipr:
        index = ipr.link_lookup(ifname=container_end)[0]
        ipr.link("set", index=index, ifname="eth0")
        ipr.addr("add", index=index, address=address, prefixlen=network.subnet.prefixlen)
        ipr.link("set", index=index, state="up")
        ipr.route("add", dst="default", gateway=str(network.gateway))
        mac: str = ipr.get_links(index)[0].get_attr("IFLA_ADDRESS")
    return mac


def forget(book: leases.LeaseBook, container_id: str) -> None:
    """Drop what a container holds in the network's shared state: its DNAT rules, its lease."""
    nat.unpublish(container_id)
    book.release(container_id)


def disconnect(container_id: str, state_dir: Path, settings: dict[str, Any]) -> None:
    """Undo connect; safe to repeat, and after the container (or its monitor) died."""
    # Names from the id and the configuration, never from the record's settings: a record
    # saying HostVeth=eth0 or Bridge=eth0 must not make `rm` delete the host's link (issue 12).
    host_end = veth_names(container_id)[0]
    network = leases.configured_network()
    with IPRoute() as ipr:
        # Usually gone already: the container's namespace died and took the pair with it.
        if link_exists(host_end):
            with contextlib.suppress(Exception):
                ipr.link("del", index=ipr.link_lookup(ifname=host_end)[0])
        with leases.opened(leases.BOOKS, network) as book:
            forget(book, container_id)
            for dead in book.dead():
                forget(book, dead)
            # The last container left: remove the bridge and the table, unless something is still
            # plugged into the bridge (a container this book does not know: never pull the floor
            # from under it).
            if not book.leases and not bridge_ports(ipr, network.name):
                nat.delete_table()
                if link_exists(network.name):
                    ipr.link("del", index=ipr.link_lookup(ifname=network.name)[0])


def sweep() -> bool:
    """prune, in this network namespace: the leases (and DNAT rules) of containers whose monitor
    died, and the bridge and table when nothing is left (what disconnect does after its own).
    True if the book had dead leases."""
    network = leases.configured_network()
    if not leases.this_netns_book(leases.BOOKS, network).exists():
        return False
    with IPRoute() as ipr, leases.opened(leases.BOOKS, network) as book:
        dead = book.dead()
        for container_id in dead:
            forget(book, container_id)
        if dead and not book.leases and not bridge_ports(ipr, network.name):
            nat.delete_table()
            with contextlib.suppress(OSError, IndexError):  # ENODEV: gone already
                ipr.link("del", index=ipr.link_lookup(ifname=network.name)[0])
    return bool(dead)


def bridge_ports(ipr: Any, bridge: str) -> list[str]:
    """The interfaces plugged into `bridge` (IFLA_MASTER), in the caller's network namespace."""
    found = ipr.link_lookup(ifname=bridge)
    if not found:
        return []
    return [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()
            if link.get_attr("IFLA_MASTER") == found[0]]
