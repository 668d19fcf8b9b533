"""Network pieces that need no privilege: flag parsing, the lease book, /etc files, lean imports."""

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minirun import container, runtime, spec
from minirun.errors import MinirunError
from minirun.network import leases
from minirun.spec import PortMapping

NET = leases.Network("mrtest0", ipaddress.IPv4Network("10.209.0.0/29"))


def book_path(state_dir: Path) -> Path:
    """The book of this network namespace (one per namespace, see leases._paths)."""
    return state_dir / f"mrtest0-netns{os.stat('/proc/self/ns/net').st_ino}.json"


def test_publish_forms() -> None:
    assert spec.parse_publish("8080:80") == PortMapping("", 8080, 80, "tcp")
    assert spec.parse_publish("127.0.0.1:8080:80") == PortMapping("127.0.0.1", 8080, 80, "tcp")
    assert spec.parse_publish("5353:53/udp") == PortMapping("", 5353, 53, "udp")


@pytest.mark.parametrize("bad", ["80", "0:80", "8080:70000", "x:80", "1.2.3:8080:80", "8080:80/sctp",
                                 "a:b:c:d"])
def test_publish_rejects(bad: str) -> None:
    with pytest.raises(MinirunError, match="invalid -p"):
        spec.parse_publish(bad)


def test_add_host_dns_and_network_modes() -> None:
    assert spec.parse_add_host("db:10.1.2.3") == ("db", "10.1.2.3")
    assert spec.parse_add_host("db=10.1.2.3") == ("db", "10.1.2.3")
    assert spec.parse_dns("9.9.9.9") == "9.9.9.9"
    for bad in ("db", "db:notanip", ":1.2.3.4"):
        with pytest.raises(MinirunError):
            spec.parse_add_host(bad)
    with pytest.raises(MinirunError):
        spec.parse_dns("dns.example")
    for mode in ("bridge", "none", "host", "slirp4netns", "container:web", "default"):
        assert spec.check_network(mode) == mode
    for bad in ("container:", "bridged", "macvlan"):
        with pytest.raises(MinirunError, match="invalid --network"):
            spec.check_network(bad)


def test_subnet_is_configurable_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MINIRUN_SUBNET", raising=False)
    default = leases.configured_network().subnet
    assert default == ipaddress.IPv4Network(leases.DEFAULT_SUBNET)
    # not docker's, not podman's
    assert not default.overlaps(ipaddress.IPv4Network("172.17.0.0/16"))
    assert not default.overlaps(ipaddress.IPv4Network("10.88.0.0/16"))
    monkeypatch.setenv("MINIRUN_SUBNET", "10.99.0.0/24")
    assert leases.configured_network().gateway == ipaddress.IPv4Address("10.99.0.1")
    for bad in ("10.99.0.0/30", "banana", "127.0.0.0/8", "10.99.0.1/24"):
        monkeypatch.setenv("MINIRUN_SUBNET", bad)
        with pytest.raises(MinirunError, match="MINIRUN_SUBNET"):
            leases.configured_network()


def test_leases_are_distinct_persist_and_free(tmp_path: Path) -> None:
    with leases.opened(tmp_path, NET) as book:
        a = book.allocate("a" * 64, os.getpid())
        b = book.allocate("b" * 64, os.getpid())
        assert book.allocate("a" * 64, os.getpid()) == a  # asking again: the same lease
    assert (a, b) == (ipaddress.IPv4Address("10.209.0.2"), ipaddress.IPv4Address("10.209.0.3"))
    # A new minirun process reads the same book from disk.
    with leases.opened(tmp_path, NET) as book:
        assert book.address_of("b" * 64) == b
        book.release("a" * 64)
        assert book.allocate("c" * 64, os.getpid()) == a  # the lowest free address again
        book.release("b" * 64)
        book.release("c" * 64)
    # The last lease gone: the book is removed, only the lock file stays.
    assert [p.name for p in tmp_path.iterdir()] == ["mrtest0.lock"]


def test_subnet_is_full(tmp_path: Path) -> None:
    with pytest.raises(MinirunError, match="no free address"), leases.opened(tmp_path, NET) as book:
        for i in range(10):  # a /29 has 6 hosts, one is the gateway
            book.allocate(f"{i:064d}", os.getpid())


def test_dead_monitor_leases_are_found(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()  # a real process that has exited: its pid names nobody (or somebody else)
    with leases.opened(tmp_path, NET) as book:
        book.allocate("a" * 64, os.getpid())
        book.allocate("d" * 64, gone.pid)
    raw = json.loads(book_path(tmp_path).read_text())
    assert len(raw["leases"]) == 2
    with leases.opened(tmp_path, NET) as book:
        assert book.dead() == ["d" * 64]
        book.release("a" * 64)
        book.release("d" * 64)


@pytest.mark.parametrize("text", ['{"subnet": ', '[]', '{"subnet": "10.209.0.0/29"}',
                                  '{"subnet": "10.209.0.0/29", "leases": {"10.209.0.2": {"x": 1}}}'])
def test_an_unreadable_book_is_one_line_naming_it(tmp_path: Path, text: str) -> None:
    """Not json's ValueError, a KeyError or a TypeError: a traceback at run, exit and prune (atk18)."""
    book_path(tmp_path).write_text(text)
    with pytest.raises(MinirunError, match=f"lease book {book_path(tmp_path)} is unreadable"), \
            leases.opened(tmp_path, NET):
        pass
    assert book_path(tmp_path).read_text() == text  # kept as it was, for whoever looks


def test_changing_the_subnet_while_leased_is_refused(tmp_path: Path) -> None:
    with leases.opened(tmp_path, NET) as book:
        book.allocate("a" * 64, os.getpid())
    other = leases.Network("mrtest0", ipaddress.IPv4Network("10.99.0.0/24"))
    with pytest.raises(MinirunError, match="in use with subnet"), leases.opened(tmp_path, other):
        pass
    with leases.opened(tmp_path, NET) as book:
        book.release("a" * 64)


ALLOCATE = """
import ipaddress, os, sys
from pathlib import Path
from minirun.network import leases
network = leases.Network("mrtest0", ipaddress.IPv4Network("10.209.0.0/24"))
with leases.opened(Path(sys.argv[1]), network) as book:
    print(book.allocate(sys.argv[2], os.getppid()))
"""


def test_concurrent_allocations_never_collide(tmp_path: Path) -> None:
    """40 processes started at once, each taking a lease: 40 different addresses."""
    repo = Path(__file__).resolve().parents[2]
    procs = [subprocess.Popen([sys.executable, "-c", ALLOCATE, str(tmp_path), f"{i:064d}"], cwd=repo,
                              stdout=subprocess.PIPE, text=True) for i in range(40)]
    addresses = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(addresses)) == 40
    raw = json.loads(book_path(tmp_path).read_text())
    assert sorted(raw["leases"]) == sorted(addresses)


def test_etc_files_for_the_network(tmp_path: Path) -> None:
    files = runtime.etc_files(container.Layout(tmp_path), "web", "bridge", [("db", "10.1.2.3")], ["9.9.9.9"])
    hosts = Path(files["/etc/hosts"]).read_text()
    assert "10.1.2.3\tdb\n" in hosts and "127.0.1.1\tweb\n" in hosts
    runtime.add_own_address(files["/etc/hosts"], "web", "10.209.0.7")
    assert "10.209.0.7\tweb\n" in Path(files["/etc/hosts"]).read_text()
    resolv = Path(files["/etc/resolv.conf"]).read_text()
    assert resolv.startswith("nameserver 9.9.9.9\n")
    assert resolv.count("nameserver") == 1


def test_network_none_does_not_import_pyroute2() -> None:
    code = ("import sys\nfrom minirun import cli, runtime, network\n"
            "from minirun.spec import ContainerSpec\nfrom pathlib import Path\n"
            "plan = network.choose(ContainerSpec('busybox', network='none'), False, Path('/nonexistent'))\n"
            "assert network.connect(plan, 'x', 0, Path('/nonexistent')) == {'Mode': 'none', 'Ports': {}}\n"
            "print('pyroute2' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "False"
