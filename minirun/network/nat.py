"""NAT with nftables: containers reach out through the host, published ports reach in.

minirun owns one table, `ip minirun`, and touches nothing else (`nft list table ip minirun`
shows all of it). It is created with the bridge and deleted with it. The nft program compiles
what is written in its language, the table and the `-p` rules; the questions and deletions of
every container's start and end are single netlink messages (netlink.py's Nftnl), not a
fork+exec of nft each (15-35 ms).

  chain prerouting   nat, before routing: traffic from other hosts to one of our addresses
                     jumps to `published`
  chain output       nat, for connections the host itself makes (also to 127.0.0.1): the same
  chain published    one DNAT rule per `-p`, commented with the container's id, so that they
                     can be found and deleted when the container goes
  chain postrouting  masquerade: containers' traffic leaving through another interface gets
                     the host's address; host-localhost traffic to a container gets the bridge's
  chain guard        drop packets from the bridge addressed to 127.0.0.0/8 (see below)

Published ports and the host's own localhost. `curl 127.0.0.1:8080` on the host is DNATed in
`output` to 10.209.0.2:80, but a packet with source 127.0.0.1 may not leave through a real
interface: the kernel drops such "martians" unless net.ipv4.conf.<dev>.route_localnet is 1.
minirun sets it on its bridge only, and masquerades 127.0.0.0/8 there so the container sees the
bridge's address and answers to it. docker's default is a userland proxy process per port
instead; we avoid a long-lived helper, which minirun (no daemon) would have to supervise.
route_localnet on all interfaces let neighbours reach services bound to 127.0.0.1
(CVE-2020-8558): limited to our bridge, and `guard` drops anything arriving from the bridge
for 127.0.0.0/8, so containers cannot use it to reach the host's loopback services.

Forwarding. Routing packets between the bridge and other interfaces (outbound NAT, `-p` from
other hosts) needs net.ipv4.ip_forward=1; minirun sets it when it creates the bridge and never
clears it (other software may rely on it). Traffic between containers and between the host and
a container is not forwarded (it is bridged, or local) and works without it. Note that a
filter table elsewhere (docker's FORWARD policy DROP) can still drop forwarded packets: an
accept in our table cannot overrule a drop in another.
"""

import contextlib
import os
from pathlib import Path
from typing import NamedTuple

from minirun.errors import MinirunError
from minirun.fsutil import on_path
from minirun.network import netlink
from minirun.network.leases import Network
from minirun.spec import PortMapping

TABLE = "minirun"


class Nft(NamedTuple):
    """An nft started on a script: its pid, the read end of its stderr, and what it was asked."""

    pid: int
    errors: int
    what: str


def start_nft(script: str, what: str) -> Nft:
    """`nft -f -` on `script`, started and not waited for: the caller does other work while nft
    compiles (finish_nft waits). posix_spawn(3) as userns.py starts newuidmap, not subprocess
    (whose import, with shutil's for which(), costs ~3 ms). The script goes to nft's stdin, a
    pipe, once nft runs: the table's few hundred bytes fit the pipe's buffer (64 KiB, pipe(7))
    and the write returns at once; a longer one (a few hundred -p) is read by nft as it is
    written. Written before nft started, it would wait for a reader that never comes."""
    nft = on_path("nft") or on_path("nft", "/usr/sbin:/sbin")
    if nft is None:
        raise MinirunError("nft (nftables) is not installed: it is needed for the bridge network's NAT "
                           "(apt-get install nftables, or use --network none/host)")
    stdin, stdin_w = os.pipe2(os.O_CLOEXEC)
    errors, errors_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.posix_spawn(nft, [nft, "-f", "-"], os.environ, file_actions=[
            (os.POSIX_SPAWN_DUP2, stdin, 0),  # dup2 clears close-on-exec on the copy
            (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
            (os.POSIX_SPAWN_DUP2, errors_w, 2),
        ])
    except BaseException:
        os.close(errors)
        os.close(stdin_w)
        raise
    finally:
        os.close(stdin)
        os.close(errors_w)
    # An nft that stops reading (it failed) makes the write fail (EPIPE): finish_nft says why.
    with contextlib.suppress(BrokenPipeError), open(stdin_w, "w") as pipe:
        pipe.write(script)
    return Nft(pid, errors, what)


def finish_nft(nft: Nft) -> None:
    """Wait for nft; its last line of complaint, if it failed, as minirun's one line."""
    try:
        with open(nft.errors, "rb", closefd=False) as pipe:
            complaint = pipe.read().decode(errors="replace").strip()
    finally:
        os.close(nft.errors)
        _, status = os.waitpid(nft.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise MinirunError(f"nft ({nft.what}): {(complaint.splitlines() or ['failed'])[-1]}")


def table_exists() -> bool:
    """One netlink message (netlink.py), not `nft list tables`: every container's start asks."""
    with netlink.Nftnl() as nftnl:
        return nftnl.table_exists(TABLE)


def write_sysctl(name: str, value: str) -> None:
    """net.* sysctls are per network namespace: /proc/sys/net shows the caller's."""
    path = Path("/proc/sys") / name.replace(".", "/")
    if path.read_text().strip() != value:
        path.write_text(value)


def start_table(network: Network) -> Nft:
    """The table and its fixed rules, in one atomic nft transaction that first replaces any table of
    that name (`add` then `delete`: the idiom for "delete if it exists" before nft 1.0.8's destroy).
    nft takes 15-35 ms to start and compile it: the caller makes the bridge meanwhile."""
    bridge, subnet = network.name, network.subnet
    return start_nft(f"""
add table ip {TABLE}
delete table ip {TABLE}
table ip {TABLE} {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        fib daddr type local jump published
    }}
    chain output {{
        type nat hook output priority -100; policy accept;
        fib daddr type local jump published
    }}
    chain published {{
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {subnet} oifname != "{bridge}" masquerade
        ip saddr 127.0.0.0/8 oifname "{bridge}" masquerade
    }}
    chain guard {{
        type filter hook prerouting priority raw; policy accept;
        iifname "{bridge}" ip daddr 127.0.0.0/8 drop
    }}
}}
""", "the table")


def table_made(nft: Nft, network: Network) -> None:
    """Wait for start_table's nft, then the sysctls of the bridge (which exists by now)."""
    finish_nft(nft)
    write_sysctl(f"net.ipv4.conf.{network.name}.route_localnet", "1")
    write_sysctl("net.ipv4.ip_forward", "1")


def delete_table() -> None:
    """With every chain and rule in it: one netlink message (a fork+exec of nft is 15-35 ms)."""
    with netlink.Nftnl() as nftnl, contextlib.suppress(FileNotFoundError):  # gone already
        nftnl.delete(TABLE)


def publish(container_id: str, address: str, ports: list[PortMapping]) -> None:
    """One DNAT rule per -p: HOST_IP:HOST_PORT -> container address:CONTAINER_PORT."""
    if not ports:
        return
    rules = []
    for port in ports:
        match = f"ip daddr {port.host_ip} " if port.host_ip else ""
        rules.append(f'add rule ip {TABLE} published {match}{port.proto} dport {port.host_port} '
                     f'dnat to {address}:{port.container_port} comment "{container_id}"\n')
    finish_nft(start_nft("".join(rules), "-p"))


def unpublish(container_id: str) -> None:
    """Delete the container's DNAT rules, found by their comment (nf_tables deletes rules by
    handle). Every container that leaves a shared table looks, with or without -p: what it
    published is read from the table itself, never from its record, so a record that lost its
    ports (or a dead container's lease, which has none) cannot leave a rule that would send a
    host port to the next container given the same address. Over netlink the look is ~0.1 ms."""
    with netlink.Nftnl() as nftnl:
        handles = [("published", rule.handle) for rule in nftnl.rules(TABLE, "published")
                   if rule.comment == container_id]
        if handles:
            with contextlib.suppress(FileNotFoundError):  # deleted meanwhile (by a `rm` of it)
                nftnl.delete(TABLE, handles)
