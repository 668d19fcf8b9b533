"""rtnetlink(7) over the standard library's socket: the few messages the bridge network sends.

`ip link add veth1 type veth peer name eth0 netns PID` is one netlink message to the kernel: a
header (netlink(7): length, type, flags, sequence number, port), a fixed part (here `struct
ifinfomsg`: family, type, interface index, flags, which flags to change), then attributes, each
`length, type, value` padded to 4 bytes, where a value may itself be a list of attributes. The
kernel answers every request sent with NLM_F_ACK with an NLMSG_ERROR message whose error is 0
(done) or -errno; a dump (NLM_F_DUMP) is answered with messages until NLMSG_DONE.

Why not pyroute2 (which the bridge used before): importing it costs 90-150 ms, whatever
submodule is asked for (its package loads ndb, ipdb, conntrack and asyncio), against a bridge
run's ~180 ms in all; this module imports in about a millisecond. Why not the `ip` program, as
the articles do: each `ip` is a fork+exec (~2 ms here), and the container's end needs a second
one inside its namespace (`nsenter -n ip ...`). README, "Why these dependencies", has the figures.

Constants are the kernel's (include/uapi/linux/rtnetlink.h, if_link.h, veth.h, if_addr.h).
"""

import os
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

from minirun import kernel

# message types (rtnetlink(7)) and flags (netlink(7))
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_NEWROUTE = 20, 24
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE, NLM_F_DUMP = 0x1, 0x4, 0x200, 0x400, 0x300
# link attributes (IFLA_*), the nested ones of IFLA_LINKINFO, and veth's peer
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_PID = 1, 3, 10, 18, 19
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_GATEWAY = 5
IFF_UP = 0x1
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1

HEADER = struct.Struct("=IHHII")  # struct nlmsghdr
IFINFO = struct.Struct("=BxHiII")  # struct ifinfomsg
IFADDR = struct.Struct("=BBBBi")  # struct ifaddrmsg
RTMSG = struct.Struct("=BBBBBBBBI")  # struct rtmsg


def attr(kind: int, value: bytes) -> bytes:
    """One attribute (struct rtattr): length, type, value, padded to 4 bytes."""
    length = 4 + len(value)
    return struct.pack("=HH", length, kind) + value + b"\0" * (-length % 4)


def name_attr(name: str) -> bytes:
    return attr(IFLA_IFNAME, name.encode() + b"\0")


def ifinfo(index: int = 0, up: bool = False) -> bytes:
    return IFINFO.pack(socket.AF_UNSPEC, 0, index, IFF_UP if up else 0, IFF_UP if up else 0)


class Link(NamedTuple):
    """One interface, as a dump of RTM_GETLINK reports it."""

    ifindex: int
    name: str
    master: int  # the bridge it is plugged into, 0 if none
    mac: str


class Rtnl:
    """A NETLINK_ROUTE socket in the network namespace of the caller at the time it is opened
    (a socket stays bound to the namespace it was created in)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        self.sock.bind((0, 0))
        self.seq = 0

    def __enter__(self) -> "Rtnl":
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.close()

    def request(self, kind: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
        """Send one message; the (type, payload) of each answer until the ACK or NLMSG_DONE.
        An error answer raises OSError with the kernel's errno."""
        self.seq += 1
        self.sock.send(HEADER.pack(HEADER.size + len(body), kind, NLM_F_REQUEST | flags, self.seq, 0) + body)
        answers: list[tuple[int, bytes]] = []
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset < len(data):
                length, answer, _, seq, _ = HEADER.unpack_from(data, offset)
                payload = data[offset + HEADER.size:offset + length]
                offset += (length + 3) & ~3
                if seq != self.seq:
                    continue
                if answer == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    return answers
                if answer == NLMSG_DONE:
                    return answers
                answers.append((answer, payload))

    # --- the operations, in the words of `ip` ------------------------------------------------

    def add_bridge(self, name: str) -> None:
        """ip link add NAME type bridge"""
        info = attr(IFLA_LINKINFO, attr(IFLA_INFO_KIND, b"bridge"))
        self.request(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, ifinfo() + name_attr(name) + info)

    def add_veth(self, name: str, peer: str, peer_pid: int) -> None:
        """ip link add NAME type veth peer name PEER netns PID: the peer is born in the network
        namespace of process PID (IFLA_NET_NS_PID), so it never exists on the host."""
        peer_info = ifinfo() + name_attr(peer) + attr(IFLA_NET_NS_PID, struct.pack("=I", peer_pid))
        data = attr(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer_info))
        info = attr(IFLA_LINKINFO, attr(IFLA_INFO_KIND, b"veth") + data)
        self.request(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, ifinfo() + name_attr(name) + info)

    def set_link(self, index: int, up: bool = False, master: int | None = None) -> None:
        """ip link set dev INDEX [master BRIDGE] [up]"""
        extra = b"" if master is None else attr(IFLA_MASTER, struct.pack("=I", master))
        self.request(RTM_NEWLINK, NLM_F_ACK, ifinfo(index, up) + extra)

    def delete_link(self, index: int) -> None:
        """ip link del dev INDEX"""
        self.request(RTM_DELLINK, NLM_F_ACK, ifinfo(index))

    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        """ip addr add ADDRESS/PREFIXLEN dev INDEX"""
        packed = socket.inet_aton(address)
        body = IFADDR.pack(socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
        body += attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed)
        self.request(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)

    def add_default_route(self, gateway: str) -> None:
        """ip route add default via GATEWAY"""
        body = RTMSG.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE,
                          RTN_UNICAST, 0)
        self.request(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                     body + attr(RTA_GATEWAY, socket.inet_aton(gateway)))

    def links(self) -> list[Link]:
        """ip link show: every interface of this socket's namespace."""
        found = []
        for _, payload in self.request(RTM_GETLINK, NLM_F_DUMP, ifinfo()):
            index = IFINFO.unpack_from(payload)[2]
            values = dict(attributes(payload[IFINFO.size:]))
            found.append(Link(index, values.get(IFLA_IFNAME, b"").rstrip(b"\0").decode(),
                              struct.unpack("=I", values[IFLA_MASTER])[0] if IFLA_MASTER in values else 0,
                              values.get(IFLA_ADDRESS, b"").hex(":")))
        return found


def attributes(data: bytes) -> Iterator[tuple[int, bytes]]:
    """The (type, value) pairs of a run of attributes."""
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            return
        yield kind, data[offset + 4:offset + length]
        offset += (length + 3) & ~3


def index_of(name: str) -> int | None:
    """The interface's index in the caller's network namespace (if_nametoindex(3)), or None."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


@contextmanager
def entered(netns_path: str) -> Iterator[None]:
    """Run the block in another network namespace (setns(2)), then come back to our own. Only
    this thread moves; the parent is single-threaded while it wires the network."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            kernel.setns(target, kernel.CLONE_NEWNET)
        finally:
            os.close(target)
        try:
            yield
        finally:
            kernel.setns(own, kernel.CLONE_NEWNET)
    finally:
        os.close(own)

