"""Networking, root and rootless alike (none, host), and the bridge network of root.

Every minirun of the suite runs inside the session's own network namespace (conftest.test_netns):
the bridge, the veths, the nft table and the published ports below are created there, and the
"host" the tests talk from is that namespace (`nsenter --net`). Nothing leaves it but loopback.
"""

import dataclasses
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from helpers import IMAGE, Tier, one_line_error, process_exists, read_until, wait_for, wait_running

# busybox wget -T (timeout) segfaults in Debian 12's busybox 1.35: subprocess timeouts bound the waits.
WWW = "mkdir -p /www && echo hello-from-{tag} > /www/index.html && exec httpd -f -p 80 -h /www"


def host(tier: Tier, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a command on the tests' "host": inside the session's network namespace."""
    return subprocess.run(["nsenter", f"--net=/run/netns/{tier.netns}", *argv], capture_output=True,
                          text=True, timeout=timeout, check=check)


def fetch(tier: Tier, url: str) -> str:
    return host(tier, "busybox", "wget", "-q", "-O-", url).stdout


def nft_table(tier: Tier) -> str:
    return host(tier, "nft", "list", "table", "ip", "minirun", check=False).stdout


def start_web(tier: Tier, name: str, *flags: str) -> tuple[subprocess.Popen[str], dict[str, object]]:
    proc = tier.popen(["run", "--rm", "--name", name, *flags, IMAGE, "sh", "-c", WWW.format(tag=name)])
    item = wait_running(tier, name, proc)
    return proc, item


def stop(tier: Tier, name: str, proc: subprocess.Popen[str]) -> None:
    tier(["rm", "-f", name], check=True)
    proc.communicate(timeout=30)


def netns_inode(path: str) -> int:
    return os.stat(path).st_ino


# --- none and host: both tiers ----------------------------------------------------------------


def test_network_none_has_only_lo(minirun: Tier) -> None:
    out = minirun(["run", "--rm", "--network", "none", IMAGE, "ip", "-o", "link"], check=True).stdout
    assert [line.split(":")[1].strip() for line in out.splitlines()] == ["lo"]
    assert "UP" in out


def test_network_host_is_the_hosts_namespace(minirun: Tier) -> None:
    out = minirun(["run", "--rm", "--network", "host", IMAGE, "stat", "-L", "-c", "%i", "/proc/self/ns/net"],
                  check=True).stdout
    assert int(out) == netns_inode(f"/run/netns/{minirun.netns}")


def test_publish_needs_a_network(minirun: Tier) -> None:
    result = minirun(["run", "--rm", "--network", "none", "-p", "8080:80", IMAGE, "true"], check=125)
    assert "-p/--publish needs" in one_line_error(result)


# --- the bridge network (root) ----------------------------------------------------------------


def test_bridge_is_roots_default(root_minirun: Tier) -> None:
    out = root_minirun(["run", "--rm", IMAGE, "sh", "-c", "ip -4 -o addr show eth0; ip route"],
                       check=True).stdout
    assert " eth0 " in out and "inet 10.209." in out and "/16" in out
    assert "default via 10.209.0.1 dev eth0" in out


def test_hosts_resolv_and_inspect(root_minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    proc = root_minirun.popen(["run", "--rm", "-i", "--name", name, "--hostname", "web", "--add-host",
                               "db:10.1.2.3", "--dns", "10.9.9.9", IMAGE, "sh", "-c",
                               "cat /etc/hosts /etc/resolv.conf; echo ready; read x"], stdin=subprocess.PIPE)
    out = read_until(proc.stdout, "ready")
    item = wait_running(root_minirun, name, proc)
    proc.communicate("\n", timeout=30)
    assert "10.1.2.3\tdb" in out
    assert "nameserver 10.9.9.9" in out
    ip = next(line.split("\t")[0] for line in out.splitlines() if line.endswith("\tweb"))
    settings = item["NetworkSettings"]
    assert settings["IPAddress"] == ip and ip.startswith("10.209.")
    assert settings["IPPrefixLen"] == 16 and settings["Gateway"] == "10.209.0.1"
    assert settings["MacAddress"].count(":") == 5
    assert item["HostConfig"]["NetworkMode"] == "bridge"


def test_containers_and_host_reach_each_other(root_minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    proc, item = start_web(root_minirun, name)
    try:
        settings = item["NetworkSettings"]
        assert isinstance(settings, dict)
        ip = settings["IPAddress"]
        assert ip.startswith("10.209.") and settings["Gateway"] == "10.209.0.1"
        # container -> container
        out = root_minirun(["run", "--rm", IMAGE, "wget", "-q", "-O-", f"http://{ip}/"],
                           check=True).stdout
        assert out == f"hello-from-{name}\n"
        # host -> container
        assert fetch(root_minirun, f"http://{ip}/") == f"hello-from-{name}\n"
    finally:
        stop(root_minirun, name, proc)


def test_published_ports_and_nat_rules(root_minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    proc, item = start_web(root_minirun, name, "-p", "18080:80", "-p", "127.0.0.1:18081:80",
                           "-p", "18053:53/udp")
    container_id = str(item["Id"])
    try:
        ports = item["NetworkSettings"]["Ports"]  # type: ignore[index]
        assert ports == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "18080"},
                                    {"HostIp": "127.0.0.1", "HostPort": "18081"}],
                         "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "18053"}]}
        ip = item["NetworkSettings"]["IPAddress"]  # type: ignore[index]
        table = nft_table(root_minirun)
        assert f'tcp dport 18080 dnat to {ip}:80 comment "{container_id}"' in table
        assert f"ip daddr 127.0.0.1 tcp dport 18081 dnat to {ip}:80" in table
        assert f"udp dport 18053 dnat to {ip}:53" in table
        assert 'ip saddr 10.209.0.0/16 oifname != "minirun0" masquerade' in table  # outbound NAT
        # from the host's own localhost (output chain + route_localnet), and its bridge address
        for url in ("http://127.0.0.1:18080/", "http://127.0.0.1:18081/", "http://10.209.0.1:18080/"):
            assert fetch(root_minirun, url) == f"hello-from-{name}\n", url
        # 18081 is bound to 127.0.0.1 only
        assert host(root_minirun, "busybox", "wget", "-q", "-O-", "http://10.209.0.1:18081/",
                    check=False).returncode != 0
        # from another machine: a peer namespace cabled to the "host" (prerouting + forwarding)
        with peer(root_minirun) as (peer_ns, host_ip):
            out = subprocess.run(["ip", "netns", "exec", peer_ns, "busybox", "wget", "-q", "-O-",
                                  f"http://{host_ip}:18080/"], capture_output=True, text=True, timeout=30)
            assert out.stdout == f"hello-from-{name}\n", out.stderr
        assert host(root_minirun, "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"
    finally:
        stop(root_minirun, name, proc)
    assert container_id not in nft_table(root_minirun)


def test_a_leaving_container_takes_only_its_own_rules(root_minirun: Tier, names: Callable[[], str]) -> None:
    """The table stays while another container runs; the one that leaves takes its DNAT rules
    (found by their comment over netlink, whatever its record says) and nothing of the others'."""
    first, second = names(), names()
    proc_a, item_a = start_web(root_minirun, first, "-p", "18070:80")
    try:
        proc_b, item_b = start_web(root_minirun, second, "-p", "18071:80", "-p", "18072:80/udp")
        table = nft_table(root_minirun)
        assert f'comment "{item_a["Id"]}"' in table and table.count(f'comment "{item_b["Id"]}"') == 2, table
        # a container without -p comes and goes: the others' rules stay
        root_minirun(["run", "--rm", IMAGE, "true"], check=0)
        assert nft_table(root_minirun) == table
        stop(root_minirun, second, proc_b)
        table = nft_table(root_minirun)
        assert str(item_b["Id"]) not in table and f'comment "{item_a["Id"]}"' in table, table
        assert fetch(root_minirun, "http://127.0.0.1:18070/") == f"hello-from-{first}\n"
    finally:
        stop(root_minirun, first, proc_a)
    assert nft_table(root_minirun) == "" and host(root_minirun, "ip", "link", "show", "minirun0",
                                                   check=False).returncode != 0


def test_more_published_ports_than_a_pipe_holds(root_minirun: Tier, names: Callable[[], str]) -> None:
    """The DNAT rules go to nft's stdin, a pipe: 500 rules (~85 KiB) do not fit its 64 KiB, and
    written before nft ran, the write waited for good (a hang of `run`, then of every start)."""
    name = names()
    ports = [arg for n in range(500) for arg in ("-p", f"{20000 + n}:80")]
    started = root_minirun(["run", "-d", "--name", name, *ports, IMAGE, "sleep", "60"], check=0, timeout=60)
    try:
        assert started.returncode == 0, started.stderr
        assert nft_table(root_minirun).count("dnat to") == 500
    finally:
        root_minirun(["rm", "-f", name], check=0, timeout=60)
    assert nft_table(root_minirun) == ""


def test_many_published_ports_leave_a_shared_table_cleanly(root_minirun: Tier,
                                                          names: Callable[[], str]) -> None:
    """With another container on the bridge, the leaving one deletes its own DNAT rules, one
    netlink batch (Nftnl.delete): every rule's ACK is a message in the socket's receive buffer
    (212992 bytes by default), and a batch of 500 overflowed it: the kernel dropped the ACKs and
    recv said ENOBUFS (atk18): `run --rm` said "cannot record the exit", its lease stayed."""
    keeper, name = names(), names()
    proc, _ = start_web(root_minirun, keeper)
    try:
        ports = [arg for n in range(500) for arg in ("-p", f"{20000 + n}:80")]
        result = root_minirun(["run", "--rm", "--name", name, *ports, IMAGE, "sh", "-c", "exit 3"],
                              timeout=120)
        assert result.returncode == 3 and result.stderr == "", result.stderr
        assert "dnat to" not in nft_table(root_minirun)
        netns = netns_inode(f"/run/netns/{root_minirun.netns}")
        book = Path(f"/run/minirun/networks/minirun0-netns{netns}.json")
        assert len(json.loads(book.read_text())["leases"]) == 1, book.read_text()  # the keeper's only
    finally:
        stop(root_minirun, keeper, proc)
    assert nft_table(root_minirun) == ""


def test_a_lease_book_found_corrupt_at_the_exit_keeps_the_exit_code(root_minirun: Tier) -> None:
    """The book of leases (root's file) turned unreadable while a --rm container ran: its exit
    still returns the container's code, with one line that names the book; prune says the same
    line (atk18: json's ValueError, raised in the network's thread and re-raised in the main
    one, escaped monitor.finish: a traceback, the code lost)."""
    netns = netns_inode(f"/run/netns/{root_minirun.netns}")
    book = Path(f"/run/minirun/networks/minirun0-netns{netns}.json")
    proc = root_minirun.popen(["run", "--rm", "-i", IMAGE, "sh", "-c", "echo up; read x; exit 3"],
                              stdin=subprocess.PIPE)
    saved = ""
    try:
        assert proc.stdout is not None
        read_until(proc.stdout, "up\n")
        saved = book.read_text()
        book.write_text('{"subnet": ')
        _, err = proc.communicate("\n", timeout=60)
        assert proc.returncode == 3, err
        assert "Traceback" not in err and len(err.splitlines()) == 1 and str(book) in err, err
        pruned = root_minirun(["prune"], timeout=60)
        assert "Traceback" not in pruned.stderr and str(book) in pruned.stderr, pruned.stderr
    finally:
        proc.kill()
        proc.wait(timeout=30)
        if saved:
            book.write_text(saved)  # its lease, of a dead monitor now: the next set-up reclaims it
        root_minirun(["run", "--rm", IMAGE, "true"], check=0)
    assert nft_table(root_minirun) == "" and not book.exists()


def test_a_table_deleted_behind_our_back_is_made_again(root_minirun: Tier,
                                                        names: Callable[[], str]) -> None:
    """`nft flush ruleset` (a firewall reload) while a container runs: the next container finds
    the table missing (a netlink question, not the lease book's word) and makes it again."""
    name = names()
    proc, _ = start_web(root_minirun, name)
    try:
        host(root_minirun, "nft", "delete", "table", "ip", "minirun")
        out = root_minirun(["run", "--rm", "-p", "18073:80", IMAGE, "true"], check=0)
        assert out.returncode == 0, out.stderr
        assert "masquerade" in nft_table(root_minirun)
    finally:
        stop(root_minirun, name, proc)
    assert nft_table(root_minirun) == ""


@contextmanager
def peer(tier: Tier) -> Iterator[tuple[str, str]]:
    """Another "machine": a namespace with a veth to the test host, 192.168.251.2 -> .1."""
    name = f"mrt-peer-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        host(tier, "ip", "link", "add", "mrtpeer0", "type", "veth", "peer", "name", "eth0", "netns", name)
        host(tier, "ip", "addr", "add", "192.168.251.1/24", "dev", "mrtpeer0")
        host(tier, "ip", "link", "set", "mrtpeer0", "up")
        for cmd in (["ip", "addr", "add", "192.168.251.2/24", "dev", "eth0"],
                    ["ip", "link", "set", "eth0", "up"], ["ip", "link", "set", "lo", "up"]):
            subprocess.run(["ip", "netns", "exec", name, *cmd], check=True)
        yield name, "192.168.251.1"
    finally:
        host(tier, "ip", "link", "del", "mrtpeer0", check=False)
        subprocess.run(["ip", "netns", "delete", name], check=False)


def test_container_network_mode(root_minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    proc, item = start_web(root_minirun, name)
    try:
        out = root_minirun(["run", "--rm", "--network", f"container:{name}", IMAGE, "sh", "-c",
                            "netstat -tln; ip -4 -o addr show eth0; wget -q -O- http://127.0.0.1/"],
                           check=True).stdout
        assert ":80 " in out  # the other container's listener, in the shared namespace
        assert str(item["NetworkSettings"]["IPAddress"]) + "/" in out  # type: ignore[index]
        assert f"hello-from-{name}" in out
    finally:
        stop(root_minirun, name, proc)
    result = root_minirun(["run", "--rm", "--network", f"container:{name}", IMAGE, "true"], check=125)
    assert "no such container" in one_line_error(result)


def test_fifty_concurrent_starts_get_distinct_addresses(root_minirun: Tier) -> None:
    procs = [root_minirun.popen(["run", "--rm", "-i", IMAGE, "sh", "-c", "ip -4 -o addr show eth0; read x"],
                                stdin=subprocess.PIPE) for _ in range(50)]
    try:
        outputs = [read_until(p.stdout, "/16", timeout=120) for p in procs]
        addresses = [out.split("inet ")[1].split("/")[0] for out in outputs]
        assert len(set(addresses)) == 50, sorted(addresses)
    finally:
        for p in procs:  # all 50 ran at the same time; now let them finish
            p.communicate("\n", timeout=120)
    assert all(p.returncode == 0 for p in procs)


def test_sigkilled_monitor_leaves_nothing_for_long(root_minirun: Tier, names: Callable[[], str]) -> None:
    """minirun SIGKILLed: its container dies (PDEATHSIG) but nobody frees the lease or the
    DNAT rule; the next bridge network set-up reclaims them, and `rm` removes the record."""
    name = names()
    proc = root_minirun.popen(["run", "--name", name, "-p", "18090:80", IMAGE, "sleep", "300"])
    item = wait_running(root_minirun, name, proc)
    container_id = str(item["Id"])
    book = Path(f"/run/minirun/networks/minirun0-netns{netns_inode(f'/run/netns/{root_minirun.netns}')}.json")
    assert container_id in book.read_text()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    wait_for(lambda: '"exited"' in root_minirun(["inspect", name]).stdout, what="the record to say exited")
    assert container_id in nft_table(root_minirun)
    root_minirun(["run", "--rm", IMAGE, "true"], check=True)  # a bridge set-up: reclaims dead leases
    assert not book.exists() or container_id not in book.read_text()
    assert container_id not in nft_table(root_minirun)
    root_minirun(["rm", name], check=True)


def test_a_dead_containers_lingering_veth_does_not_keep_the_bridge_for_good(root_minirun: Tier,
                                                                           names: Callable[[], str]) -> None:
    """`run --rm` SIGKILLed mid-teardown: its files gone (the main thread), its lease not (the
    network's thread), and its namespace not dismantled yet (the kernel does it later, in a work
    queue; held here by a bind mount, `ip netns attach`, to make "later" last). prune forgot the
    lease but left the dead container's host veth plugged in, so the bridge and table stayed
    ("something is still plugged in") and the book went: nothing would ever remove them (atk18)."""
    name = names()
    proc = root_minirun.popen(["run", "--rm", "--name", name, "-p", "18096:80", IMAGE, "sleep", "300"])
    wait_running(root_minirun, name, proc)
    item = root_minirun.inspect(name)
    container_id, pid = item["Id"], item["State"]["Pid"]
    holder = f"mrt-hold-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "attach", holder, str(pid)], check=True)
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        wait_for(lambda: not process_exists(pid), what="the container to die with its monitor")
        (root_minirun.state_dir / f"{container_id}.json").unlink()  # as --rm's main thread had
        root_minirun(["prune"], check=0)
        veth = host(root_minirun, "ip", "link", "show", f"veth{container_id[:8]}", check=False)
        assert veth.returncode != 0, "prune left the dead container's veth on the bridge"
    finally:
        subprocess.run(["ip", "netns", "delete", holder], check=False)
    root_minirun(["prune"], check=0)
    assert nft_table(root_minirun) == ""
    assert host(root_minirun, "ip", "link", "show", "minirun0", check=False).returncode != 0


def test_rootless_cannot_bridge(rootless_minirun: Tier) -> None:
    result = rootless_minirun(["run", "--rm", "--network", "bridge", IMAGE, "true"], check=125)
    assert "needs root" in one_line_error(result)
    # container:NAME is no longer refused rootless (it joins the other's user namespace too,
    # tests/root/test_sharing.py): only a container that does not exist is.
    result = rootless_minirun(["run", "--rm", "--network", "container:whatever", IMAGE, "true"], check=125)
    assert "no such container" in one_line_error(result)


def test_dns_and_add_host_conflict_with_a_joined_network(root_minirun: Tier) -> None:
    """docker: "conflicting options": a joined network comes with the other container's
    /etc/hosts and /etc/resolv.conf. Refused before the other container is even looked up."""
    for flags in (["--dns", "10.1.2.3"], ["--add-host", "db:10.1.2.3"]):
        args = ["run", "--rm", "--network", "container:anything", *flags, IMAGE, "true"]
        result = root_minirun(args, check=125)
        assert "cannot be used with --network container:NAME" in result.stderr


def test_two_state_dirs_in_one_netns_share_the_address_book(root_minirun: Tier,
                                                             names: Callable[[], str]) -> None:
    """Leases and the bridge belong to the network namespace, not to MINIRUN_STATE: a second
    minirun with its own state directory gets another address, and its exit leaves the bridge
    that the first one's container still hangs on."""
    other_state = Path(tempfile.mkdtemp(prefix="minirun-test-state-"))
    other = dataclasses.replace(root_minirun, env={**root_minirun.env, "MINIRUN_STATE": str(other_state)},
                                state_dir=other_state, processes=[], auto_name=None)
    first = root_minirun.popen(["run", "--rm", "-i", IMAGE, "sh", "-c", "ip -4 -o addr show eth0; read x; "
                                "ping -c 1 -W 5 10.209.0.1 >/dev/null && echo gateway-reachable"],
                               stdin=subprocess.PIPE)
    try:
        first_address = read_until(first.stdout, "/16", timeout=60).split("inet ")[1].split("/")[0]
        second = other(["run", "--rm", "--name", names(), IMAGE, "ip", "-4", "-o", "addr", "show", "eth0"],
                       check=0)
        assert "inet " in second.stdout, second.stderr
        assert second.stdout.split("inet ")[1].split("/")[0] != first_address
        bridge = host(root_minirun, "ip", "link", "show", "minirun0", check=False)
        assert bridge.returncode == 0, "the bridge stays"
        out, err = first.communicate("\n", timeout=60)
        assert first.returncode == 0 and "gateway-reachable" in out, err
    finally:
        other.kill_processes()
        if first.poll() is None:
            first.kill()
            first.communicate(timeout=30)
        shutil.rmtree(other_state, ignore_errors=True)
