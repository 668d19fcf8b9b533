"""Rootless networking with slirp4netns: a user-mode TCP/IP stack instead of a bridge.

An unprivileged user cannot create host interfaces (a bridge or a veth end in the host's
namespace needs CAP_NET_ADMIN there). slirp4netns (github.com/rootless-containers/slirp4netns)
gets around that: it joins the container's user and network namespaces just long enough to
create a tap device there (tap0, 10.0.2.100/24, default route via 10.0.2.2, DNS at 10.0.2.3:
that is --configure), then returns to the host's namespace with the tap's file descriptor.
Every packet the container sends comes out of that descriptor, and slirp4netns turns it into
ordinary socket calls of an ordinary process: the host sees connections made by the user.

  --api-socket    a unix socket taking JSON commands; `add_hostfwd` is how `-p 8080:80`
                  works: slirp4netns listens on the host's port 8080 and forwards into the tap
  --ready-fd      slirp4netns writes "1" there once tap0 is configured: then we send "go"
  --exit-fd       slirp4netns exits when this pipe's other end closes. minirun (the monitor)
                  holds that end for its whole life, so slirp4netns goes with it, also when
                  the monitor is SIGKILLed
  --disable-host-loopback  10.0.2.2 would otherwise reach the host's 127.0.0.1 services
"""

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

from minirun import procfs, state
from minirun.errors import MinirunError
from minirun.spec import PortMapping

ADDRESS, GATEWAY, DNS, PREFIXLEN = "10.0.2.100", "10.0.2.2", "10.0.2.3", 24
READY_TIMEOUT = 30.0


def find_binary() -> str:
    binary = shutil.which("slirp4netns")
    if binary is None:
        raise MinirunError("slirp4netns is not installed: rootless containers need it for networking "
                           "(apt-get install slirp4netns), or use --network none")
    return binary


def socket_path(state_dir: Path, container_id: str) -> Path:
    # unix(7) socket paths are limited to 108 bytes: the short id keeps it well inside.
    return state_dir / f"slirp4netns-{container_id[:12]}.sock"


def connect(container_id: str, pid: int, state_dir: Path, ports: list[PortMapping]) -> dict[str, Any]:
    """Start slirp4netns for the container whose PID 1 is `pid`; publish ports through its API."""
    binary = find_binary()
    api = socket_path(state_dir, container_id)
    with contextlib.suppress(FileNotFoundError):
        api.unlink()
    ready_r, ready_w = os.pipe()
    exit_r, exit_w = os.pipe()  # exit_w stays open in the monitor, deliberately, until it exits
    os.set_inheritable(exit_w, True)  # ... also through a detached monitor's execve (monitor.py)
    try:
        proc = subprocess.Popen(
            [binary, "--configure", "--mtu=65520", "--disable-host-loopback", f"--api-socket={api}",
             f"--ready-fd={ready_w}", f"--exit-fd={exit_r}", str(pid), "tap0"],
            pass_fds=(ready_w, exit_r), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,  # no terminal signals (Ctrl-C) for it
            # The monitor holds the forwarded signals blocked while the container starts
            # (runtime.py), and a blocked mask survives fork and execve (signal(7)): without
            # this, slirp4netns would never see the SIGTERM that disconnect() sends it.
            preexec_fn=_unblock_signals)
    finally:
        os.close(ready_w)
        os.close(exit_r)
    settings = {"Mode": "slirp4netns", "IPAddress": ADDRESS, "IPPrefixLen": PREFIXLEN, "Gateway": GATEWAY,
                "Slirp4netnsPid": proc.pid, "Slirp4netnsStart": state.process_start_time(proc.pid) or 0,
                "Slirp4netnsSocket": str(api)}
    try:
        wait_ready(proc, ready_r)
        for port in ports:
            add_hostfwd(api, port)
    except BaseException:
        os.close(exit_w)
        disconnect(settings, api)
        raise
    finally:
        os.close(ready_r)
    return settings


def wait_ready(proc: "subprocess.Popen[bytes]", ready_r: int) -> None:
    readable, _, _ = select.select([ready_r], [], [], READY_TIMEOUT)
    if readable and os.read(ready_r, 1) == b"1":
        return
    proc.kill()
    proc.wait()
    raise MinirunError("slirp4netns failed to configure the container's network (is /dev/net/tun "
                       "missing, or not mode 0666?)")


def add_hostfwd(api: Path, port: PortMapping) -> None:
    """One `-p`: {"execute": "add_hostfwd", ...} on the API socket (slirp4netns(1), "API")."""
    request = {"execute": "add_hostfwd",
               "arguments": {"proto": port.proto, "host_addr": port.host_ip or "0.0.0.0",
                             "host_port": port.host_port, "guest_port": port.container_port}}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(READY_TIMEOUT)
        s.connect(str(api))
        s.sendall(json.dumps(request).encode())
        s.shutdown(socket.SHUT_WR)
        answer = json.loads(s.recv(65536) or b"{}")
    if "return" not in answer:
        reason = answer.get("error", {}).get("desc", answer)
        raise MinirunError(f"cannot publish {port.host_ip or '0.0.0.0'}:{port.host_port}: {reason}")


def disconnect(settings: dict[str, Any], api: Path) -> None:
    """Stop slirp4netns (if it is still the process we started: our child) and remove its
    socket (`api`, derived from the id: never a path the record names)."""
    pid, start = settings.get("Slirp4netnsPid", 0), settings.get("Slirp4netnsStart", 0)
    ours = isinstance(pid, int) and pid > 1 and procfs.parent(pid) == os.getpid()
    if ours and state.process_start_time(pid) == start:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(ChildProcessError):  # only the monitor, its parent, can reap it
            os.waitpid(pid, 0)
    with contextlib.suppress(FileNotFoundError):
        api.unlink()


def _unblock_signals() -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, [])

