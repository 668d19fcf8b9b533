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

nf_tables speaks the same framing on another netlink family (NETLINK_NETFILTER, the socket the
`nft` program opens): this module also asks it whether minirun's table exists, lists the rules
of a chain and deletes rules or the table, the calls of every container's start and end. Each
costs a fork+exec of nft otherwise (15-35 ms here, nat.py); written here they are one message
each. Creating the table stays a script for nft to compile (nat.py): readable, and once per
bridge.

Constants are the kernel's (include/uapi/linux/rtnetlink.h, if_link.h, veth.h, if_addr.h,
netfilter/nfnetlink.h, netfilter/nf_tables.h) and libnftnl's (udata.h, for a rule's comment).
"""

import os
import socket
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple, Self

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
# nf_tables (netfilter/nfnetlink.h, nf_tables.h): message type = subsystem << 8 | message
NETLINK_NETFILTER, NFNL_SUBSYS_NFTABLES, NFPROTO_IPV4 = 12, 10, 2
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFT_MSG_NEWTABLE, NFT_MSG_GETTABLE, NFT_MSG_DELTABLE, NFT_MSG_GETRULE, NFT_MSG_DELRULE = 0, 1, 2, 7, 8
NFTA_TABLE_NAME = 1
NFTA_RULE_TABLE, NFTA_RULE_CHAIN, NFTA_RULE_HANDLE, NFTA_RULE_USERDATA = 1, 2, 3, 7
NFTNL_UDATA_RULE_COMMENT = 0  # libnftnl: a rule's userdata is type, length, value records
BATCH = 100  # rules deleted per transaction: their ACKs fit a socket's receive buffer (Nftnl.delete)

HEADER = struct.Struct("=IHHII")  # struct nlmsghdr
IFINFO = struct.Struct("=BxHiII")  # struct ifinfomsg
IFADDR = struct.Struct("=BBBBi")  # struct ifaddrmsg
RTMSG = struct.Struct("=BBBBBBBBI")  # struct rtmsg
NFGEN = struct.Struct("=BBH")  # struct nfgenmsg: family, version (NFNETLINK_V0), res_id (big-endian)


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


class Netlink:
    """A netlink socket in the network namespace of the caller at the time it is opened
    (a socket stays bound to the namespace it was created in)."""

    def __init__(self, protocol: int) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)
        self.sock.bind((0, 0))
        self.seq = 0

    def __enter__(self) -> Self:
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


class Rtnl(Netlink):
    """rtnetlink(7): the interfaces, addresses and routes of a network namespace."""

    def __init__(self) -> None:
        super().__init__(socket.NETLINK_ROUTE)

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


class Rule(NamedTuple):
    """One rule of an nf_tables chain: its handle (what deletes it) and its comment."""

    handle: int
    comment: str


class Nftnl(Netlink):
    """nf_tables over netlink, for the `ip` family's tables: the messages `nft list table`,
    `nft -a list chain` and `nft delete` send."""

    def __init__(self) -> None:
        super().__init__(NETLINK_NETFILTER)

    def nft_request(self, message: int, flags: int, attrs: bytes) -> list[tuple[int, bytes]]:
        body = NFGEN.pack(NFPROTO_IPV4, 0, 0) + attrs  # the ip family's tables
        return self.request(NFNL_SUBSYS_NFTABLES << 8 | message, flags, body)

    def table_exists(self, table: str) -> bool:
        """nft list table ip TABLE: answered with the table, or ENOENT."""
        try:
            self.nft_request(NFT_MSG_GETTABLE, NLM_F_ACK, attr(NFTA_TABLE_NAME, table.encode() + b"\0"))
        except FileNotFoundError:
            return False
        return True

    def rules(self, table: str, chain: str) -> list[Rule]:
        """nft -a list chain ip TABLE CHAIN: a dump of the family's rules (the kernel keeps the
        ones of TABLE and CHAIN; none if they do not exist), with their handles and comments."""
        names = attr(NFTA_RULE_TABLE, table.encode() + b"\0") + attr(NFTA_RULE_CHAIN, chain.encode() + b"\0")
        found = []
        for _, payload in self.nft_request(NFT_MSG_GETRULE, NLM_F_DUMP, names):
            values = dict(attributes(payload[NFGEN.size:]))
            if values.get(NFTA_RULE_TABLE) != table.encode() + b"\0" or \
                    values.get(NFTA_RULE_CHAIN) != chain.encode() + b"\0":
                continue  # a kernel that ignores the dump's filter
            found.append(Rule(struct.unpack(">Q", values[NFTA_RULE_HANDLE])[0],
                              comment(values.get(NFTA_RULE_USERDATA, b""))))
        return found

    def delete(self, table: str, rule_handles: Sequence[tuple[str, int]] = ()) -> None:
        """nft delete rule ip TABLE CHAIN handle N ..., or with no rules nft delete table ip TABLE
        (with its chains and rules). Changes to nf_tables are transactions: a batch that begins
        with NFNL_MSG_BATCH_BEGIN and ends with NFNL_MSG_BATCH_END, all applied or none. A table
        or rule that does not exist raises FileNotFoundError (ENOENT).

        Rules go BATCH to a transaction: the kernel answers every message of a batch before we
        read any answer, each ACK a buffer of ~800 bytes in the socket's receive queue (212992
        bytes by default, net.core.rmem_default), and ACKs that do not fit are dropped, recv
        then saying ENOBUFS (netlink(7)): here 250 rules in one batch passed, 270 did not
        (atk18). A container's rules are independent of each other: what a failed transaction
        left, the next look finds again."""
        name = attr(NFTA_TABLE_NAME, table.encode() + b"\0")  # NFTA_RULE_TABLE is the same number
        if not rule_handles:
            self._batch([(NFT_MSG_DELTABLE, name)])
        for start in range(0, len(rule_handles), BATCH):
            self._batch([(NFT_MSG_DELRULE, name + attr(NFTA_RULE_CHAIN, chain.encode() + b"\0")
                          + attr(NFTA_RULE_HANDLE, struct.pack(">Q", handle)))
                         for chain, handle in rule_handles[start:start + BATCH]])

    def _batch(self, bodies: list[tuple[int, bytes]]) -> None:
        """One transaction of nf_tables messages, (type, attributes) each; raises the first error."""
        begin = HEADER.size + NFGEN.size
        # the batch's res_id names the subsystem it is for, big-endian like every nfgenmsg field
        opening = self.seq + 1
        batch = HEADER.pack(begin, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, opening, 0) \
            + NFGEN.pack(socket.AF_UNSPEC, 0, socket.htons(NFNL_SUBSYS_NFTABLES))
        waiting = set()
        for number, (message, body) in enumerate(bodies, start=self.seq + 2):
            full = NFGEN.pack(NFPROTO_IPV4, 0, 0) + body
            batch += HEADER.pack(HEADER.size + len(full), NFNL_SUBSYS_NFTABLES << 8 | message,
                                 NLM_F_REQUEST | NLM_F_ACK, number, 0) + full
            waiting.add(number)
        self.seq += len(bodies) + 2
        batch += HEADER.pack(begin, NFNL_MSG_BATCH_END, NLM_F_REQUEST, self.seq, 0) \
            + NFGEN.pack(socket.AF_UNSPEC, 0, socket.htons(NFNL_SUBSYS_NFTABLES))
        self.sock.send(batch)
        # Every message sent with NLM_F_ACK is answered once, after the commit (or the abort).
        error = 0
        while waiting:
            data = self.sock.recv(65536)
            offset = 0
            while offset < len(data):
                length, answer, _, seq, _ = HEADER.unpack_from(data, offset)
                if answer == NLMSG_ERROR and (seq in waiting or seq == opening):
                    waiting.discard(seq)
                    error = error or -struct.unpack_from("=i", data, offset + HEADER.size)[0]
                    if seq == opening and error:  # the batch itself was refused: nothing in it is answered
                        waiting.clear()
                offset += (length + 3) & ~3
        if error:
            raise OSError(error, os.strerror(error))


def comment(userdata: bytes) -> str:
    """The comment in a rule's userdata (libnftnl's records: type, length, value; nft stores the
    comment with its terminating NUL)."""
    offset = 0
    while offset + 2 <= len(userdata):
        kind, length = userdata[offset], userdata[offset + 1]
        if kind == NFTNL_UDATA_RULE_COMMENT:
            return userdata[offset + 2:offset + 2 + length].rstrip(b"\0").decode(errors="replace")
        offset += 2 + length
    return ""


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

