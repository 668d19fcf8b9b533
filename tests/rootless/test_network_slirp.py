"""Rootless networking: slirp4netns by default, -p through its API socket (add_hostfwd).

minirun runs as the test user inside the session's network namespace (conftest.test_netns), so
slirp4netns's published ports listen on that namespace's loopback, where the test connects.
"""

import os
import signal
import subprocess
from collections.abc import Callable

from helpers import IMAGE, Tier, process_exists, wait_for, wait_running

WWW = "mkdir -p /www && echo hello-rootless > /www/index.html && exec httpd -f -p 80 -h /www"


def slirp_processes(tier: Tier) -> list[int]:
    """slirp4netns processes of the test user."""
    out = subprocess.run(["pgrep", "-u", str(tier.uid), "-x", "slirp4netns"], capture_output=True, text=True)
    return [int(pid) for pid in out.stdout.split()]


def test_default_network_is_slirp4netns(rootless_minirun: Tier) -> None:
    out = rootless_minirun(["run", "--rm", IMAGE, "sh", "-c", "ip -4 -o addr show tap0; ip route; "
                            "cat /etc/resolv.conf"], check=True).stdout
    assert "inet 10.0.2.100/24" in out
    assert "default via 10.0.2.2 dev tap0" in out
    assert "nameserver" in out


def test_published_port_from_the_host_loopback(rootless_minirun: Tier, names: Callable[[], str]) -> None:
    name = names()
    before = set(slirp_processes(rootless_minirun))
    proc = rootless_minirun.popen(["run", "--rm", "--name", name, "-p", "127.0.0.1:18180:80", IMAGE,
                                   "sh", "-c", WWW])
    item = wait_running(rootless_minirun, name, proc)
    settings = item["NetworkSettings"]
    assert settings["IPAddress"] == "10.0.2.100"
    assert settings["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18180"}]}
    socket_path = settings["Slirp4netnsSocket"]
    assert os.path.exists(socket_path)
    try:
        out = subprocess.run(["nsenter", f"--net=/run/netns/{rootless_minirun.netns}", "busybox", "wget",
                              "-q", "-O-", "http://127.0.0.1:18180/"],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout == "hello-rootless\n", out.stderr
        assert set(slirp_processes(rootless_minirun)) - before
    finally:
        rootless_minirun(["rm", "-f", name], check=True)
        proc.communicate(timeout=30)
    # slirp4netns and its socket went with the container
    wait_for(lambda: set(slirp_processes(rootless_minirun)) <= before, what="slirp4netns to exit")
    assert not os.path.exists(socket_path)


def test_slirp4netns_follows_a_sigkilled_monitor(rootless_minirun: Tier, names: Callable[[], str]) -> None:
    """--exit-fd: the monitor's end of a pipe closes when it dies, and slirp4netns exits."""
    name = names()
    proc = rootless_minirun.popen(["run", "--name", name, IMAGE, "sleep", "300"])
    item = wait_running(rootless_minirun, name, proc)
    slirp_pid = item["NetworkSettings"]["Slirp4netnsPid"]
    assert process_exists(slirp_pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    wait_for(lambda: not process_exists(slirp_pid), what="slirp4netns to exit")
    rootless_minirun(["rm", name], check=True)
    assert not os.path.exists(item["NetworkSettings"]["Slirp4netnsSocket"])
