"""IP leases: which container holds which address of a bridge network.

A bridge network is a subnet (minirun's default is 10.209.0.0/16, chosen to stay clear of
docker's 172.17.0.0/16 and podman's 10.88.0.0/16; MINIRUN_SUBNET changes it). Its first
address belongs to the bridge, the gateway of every container; the others are handed out
one per container.

The book of leases is a JSON file, one per network namespace, read and rewritten under flock(2)
on a separate lock file, so 50 `minirun run` started together get 50 different addresses. It lives
in /run/minirun/networks whatever MINIRUN_STATE says: the bridge, its addresses and the nft table
belong to the network namespace, not to one state directory, so two minirun with different state
directories in one namespace must share one book (or both hand out 10.209.0.2, and the first to
finish deletes the bridge under the other). Each lease names the container and its monitor
(pid + start time, as in minirun/state.py): when that monitor is gone, even SIGKILLed with no
chance to clean up, the lease is dead and the next minirun that opens the book reclaims it. The
file is removed when its last lease goes: an idle network leaves nothing behind.
"""

import contextlib
import ipaddress
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from minirun import state
from minirun.errors import MinirunError
from minirun.fsutil import atomic_write_json, locked, remove_abandoned_tmp

DEFAULT_SUBNET = "10.209.0.0/16"


class Network(NamedTuple):
    """A bridge network: its name (also the bridge's interface name) and its subnet."""

    name: str
    subnet: ipaddress.IPv4Network

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address + 1


def configured_network(name: str = "minirun0") -> Network:
    """The bridge network, with MINIRUN_SUBNET (e.g. 10.99.0.0/24) if set; checked, no I/O."""
    value = os.environ.get("MINIRUN_SUBNET") or DEFAULT_SUBNET
    try:
        subnet = ipaddress.IPv4Network(value)
    except ValueError:
        raise MinirunError(f"invalid MINIRUN_SUBNET {value!r}: expected an IPv4 network such as "
                           f"{DEFAULT_SUBNET}") from None
    if subnet.prefixlen > 29 or subnet.is_loopback or subnet.is_multicast:
        raise MinirunError(f"invalid MINIRUN_SUBNET {value!r}: need a unicast network of /29 or larger")
    return Network(name, subnet)


class Lease(NamedTuple):
    container_id: str
    monitor_pid: int
    monitor_start: int

    def alive(self) -> bool:
        return self.monitor_pid > 0 and state.process_start_time(self.monitor_pid) == self.monitor_start


class LeaseBook(NamedTuple):
    """The leases of one network: address -> holder."""

    network: Network
    leases: dict[str, Lease]  # changed in place while the book is open

    def address_of(self, container_id: str) -> ipaddress.IPv4Address | None:
        return next((ipaddress.IPv4Address(ip) for ip, lease in self.leases.items()
                     if lease.container_id == container_id), None)

    def dead(self) -> list[str]:
        """Containers whose monitor died without releasing their lease."""
        return [lease.container_id for lease in self.leases.values() if not lease.alive()]

    def allocate(self, container_id: str, monitor_pid: int) -> ipaddress.IPv4Address:
        """The lowest free address (after the gateway) for container_id."""
        held = self.address_of(container_id)
        if held is not None:
            return held
        start = state.process_start_time(monitor_pid) or 0
        for address in self.network.subnet.hosts():
            if address != self.network.gateway and str(address) not in self.leases:
                self.leases[str(address)] = Lease(container_id, monitor_pid, start)
                return address
        raise MinirunError(f"network {self.network.name} ({self.network.subnet}) has no free address left")

    def release(self, container_id: str) -> None:
        for ip in [ip for ip, lease in self.leases.items() if lease.container_id == container_id]:
            del self.leases[ip]


BOOKS = Path("/run/minirun/networks")  # root's: only root makes bridges


def _paths(directory: Path, network: Network) -> tuple[Path, Path]:
    """(book, lock). One book per network namespace (named by the namespace's inode): a bridge, its
    addresses and its nft table exist in the namespace they were made in, and minirun may run in
    several (its tests do, side by side). One lock for all: a lock file is never removed (a waiter
    would lock a dead file)."""
    netns = os.stat("/proc/self/ns/net").st_ino
    return directory / f"{network.name}-netns{netns}.json", directory / f"{network.name}.lock"


def this_netns_book(directory: Path, network: Network) -> Path:
    return _paths(directory, network)[0]


BOOK_NAME = re.compile(r"^(?P<network>[a-z0-9_.-]+)-netns(?P<inode>\d+)\.json$")


def sweep_other_namespaces(directory: Path = BOOKS) -> list[Path]:
    """prune: drop the dead leases (monitor gone) from the books of *other* network namespaces,
    and a book that keeps none. A namespace minirun ran in may be gone for good (a test's, an
    `unshare -n` shell's); nothing else would ever open its book again. (Its bridge and nft
    table, if that namespace still exists, are its own minirun's to remove; this one's book
    is swept by bridge.sweep, which can also take its DNAT rules away.) Returns the books
    removed."""
    here = os.stat("/proc/self/ns/net").st_ino
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            match = BOOK_NAME.match(entry.name)
            if not match or int(match["inode"]) == here:
                continue
            with locked(directory / f"{match['network']}.lock"):
                try:
                    raw = json.loads(Path(entry.path).read_text())
                    book = {ip: Lease(**lease) for ip, lease in raw["leases"].items()}
                except FileNotFoundError:
                    continue
                except (ValueError, TypeError, KeyError, AttributeError):
                    book = {}  # unreadable: it can lend nothing to anyone
                alive = {ip: lease for ip, lease in book.items() if lease.alive()}
                if not alive:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                    removed.append(Path(entry.path))
                elif alive != book:
                    atomic_write_json(Path(entry.path), {"subnet": raw["subnet"], "leases": {
                        ip: lease._asdict() for ip, lease in alive.items()}}, mode=0o600)
    remove_abandoned_tmp(directory)
    return removed


@contextlib.contextmanager
def opened(directory: Path, network: Network) -> Iterator[LeaseBook]:
    """Hold the network's lock, lend its book of leases, write it back (or remove it if empty).
    `directory`: BOOKS (the tests use their own)."""
    book_path, lock_path = _paths(directory, network)
    with locked(lock_path):
        book = LeaseBook(network, {})
        with contextlib.suppress(FileNotFoundError):
            text = book_path.read_text()
            try:
                raw = json.loads(text)
                subnet, lent = raw["subnet"], {ip: Lease(**lease) for ip, lease in raw["leases"].items()}
            except (ValueError, TypeError, KeyError, AttributeError):
                # Not guessed at: lending its addresses again could give a running container's
                # to the next one. One line (not json's traceback), at start, exit and prune.
                raise MinirunError(f"the lease book {book_path} is unreadable: remove it (and the "
                                   f"{network.name} bridge) once no bridge container runs") from None
            if subnet != str(network.subnet) and lent:
                raise MinirunError(f"network {network.name} is in use with subnet {subnet}: "
                                   f"stop its containers before changing MINIRUN_SUBNET")
            book.leases.update(lent)
        yield book
        if book.leases:
            leases = {ip: lease._asdict() for ip, lease in book.leases.items()}
            atomic_write_json(book_path, {"subnet": str(network.subnet), "leases": leases}, mode=0o600)
        else:
            with contextlib.suppress(FileNotFoundError):
                book_path.unlink()
