"""ContainerSpec: what the user asked for, checked before anything is created.

Every flag of `minirun run` is turned into a field here and validated without side effects,
so that a typo (`-v relative:path`, `--user ""`) fails with one line and exit code 125 before
a cgroup, a directory or a record exists. This module reads the host (the -v paths, a seccomp
profile file, the CPUs for --cpus/--cpuset-cpus, the memory nodes for --cpuset-mems, the
environment for `-e NAME`) but never changes it.
"""

import os
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal, NamedTuple

from minirun import state
from minirun.errors import MinirunError
from minirun.security import seccomp
from minirun.security.capabilities import DEFAULT as DEFAULT_CAPABILITIES
from minirun.security.capabilities import resolve as resolve_capabilities
from minirun.security.seccomp import DEFAULT_PROFILE as DEFAULT_SECCOMP_PROFILE

UsernsMode = Literal["auto", "shared", "host"]
NETWORK_MODES = ("default", "bridge", "slirp4netns", "none", "host")  # and container:NAME
ENV_NAME = r"^[^=\s]+$"
# RFC 1123 host name label, which is what sethostname(2) accepts and resolvers understand.
HOSTNAME = r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$"


class BindMount(NamedTuple):
    """`-v HOST:CONTAINER[:OPTIONS]`: a host path made visible inside the container.

    nosuid and nodev unless `suid`/`dev` are asked for, as podman does (docker does not): a
    container that may write into a volume must not plant a setuid program or a device node that
    gains privileges when another container (or the host) uses the same directory."""

    source: str  # absolute host path
    target: str  # absolute path inside the container
    readonly: bool = False
    nosuid: bool = True
    nodev: bool = True
    noexec: bool = False


class Limits(NamedTuple):
    """Resource limits (`-m`, `--memory-swap`, `--cpus`, `--cpu-shares`, `--cpuset-cpus`,
    `--cpuset-mems`, `--pids-limit`), in the kernel's units; None means "not asked for".
    cgroups.py writes them."""

    memory: int | None = None  # bytes
    memory_swap: int | None = None  # memory + swap, bytes; -1: unlimited swap; None: docker's 2x memory
    cpus: float | None = None  # CPUs' worth of time per period (0.5 = half of one CPU)
    cpu_shares: int | None = None  # relative weight, 1024 is the default
    cpuset_cpus: str | None = None  # CPU list, e.g. "0-1,3"
    cpuset_mems: str | None = None  # memory (NUMA) node list, same syntax, e.g. "0"
    pids: int | None = None  # max number of tasks; <= 0: unlimited

    def controllers(self) -> list[str]:
        """The cgroup controllers these limits need."""
        wanted = [("memory", self.memory), ("cpu", self.cpus if self.cpus is not None else self.cpu_shares),
                  ("cpuset", self.cpuset_cpus if self.cpuset_cpus is not None else self.cpuset_mems),
                  ("pids", self.pids)]
        return [name for name, value in wanted if value is not None]

    def memory_and_swap(self) -> int:
        """docker's --memory-swap: memory + swap; unset means twice --memory; -1 unlimited."""
        assert self.memory is not None
        return self.memory * 2 if self.memory_swap is None else self.memory_swap

    def cpu_quota_us(self, period_us: int) -> int:
        assert self.cpus is not None
        return round(self.cpus * period_us)


class PortMapping(NamedTuple):
    """`-p [HOST_IP:]HOST_PORT:CONTAINER_PORT[/udp]`: a host port forwarded into the container."""

    host_ip: str  # "" means every address of the host
    host_port: int
    container_port: int
    proto: str = "tcp"  # tcp | udp


class Security(NamedTuple):
    """`--cap-add/--cap-drop`, `--security-opt`, `--read-only`, `--tmpfs`, `--userns`."""

    capabilities: frozenset[str] = DEFAULT_CAPABILITIES
    seccomp_profile: str | None = DEFAULT_SECCOMP_PROFILE  # None: --security-opt seccomp=unconfined
    no_new_privileges: bool = False
    read_only: bool = False  # the root file system is mounted read-only
    tmpfs: Mapping[str, str] = MappingProxyType({})  # --tmpfs PATH[:OPTIONS]: path -> options
    # rootful: "auto" (ids of its own, podman's --userns=auto), "shared" (one range for every such
    # container, docker's userns-remap) or "host" (identity); minirun/idranges.py
    userns: UsernsMode = "auto"
    userns_size: int = 65536  # --userns=auto:size=N: how many ids (container ids 0..N-1)
    mask_system_paths: bool = True  # False: --security-opt systempaths=unconfined


class ContainerSpec(NamedTuple):
    image: str
    command: tuple[str, ...] = ()  # empty: the image's Cmd
    entrypoint: tuple[str, ...] | None = None  # None: the image's Entrypoint
    name: str | None = None
    hostname: str | None = None
    env: tuple[str, ...] = ()  # KEY=VALUE, applied over the image's Env
    workdir: str | None = None
    user: str | None = None  # "uid[:gid]" or "name[:group]", resolved inside the container
    binds: tuple[BindMount, ...] = ()
    network: str = "default"  # bridge for root, slirp4netns rootless (minirun/network/__init__.py)
    ports: tuple[PortMapping, ...] = ()  # -p
    add_hosts: tuple[tuple[str, str], ...] = ()  # --add-host NAME:IP, for /etc/hosts
    dns: tuple[str, ...] = ()  # --dns IP, for /etc/resolv.conf
    interactive: bool = False
    tty: bool = False
    init: bool = False
    remove: bool = False
    limits: Limits = Limits()
    cgroupns: str = "private"  # "private": the container sees its own cgroup as the root; "host"
    pull: str = "missing"  # docker's --pull: "missing" (pull if not local), "always", "never"
    platform: str | None = None  # --platform OS/ARCH[/VARIANT] for a pull; None: this host's
    security: Security = Security()
    # Namespaces shared instead of new ones (minirun/sharing.py): "private", "host",
    # "container:NAME"; --ipc also "shareable" (private, and other containers may join it).
    pid: str = "private"
    ipc: str = "private"
    uts: str = "private"


def parse_security(cap_add: list[str], cap_drop: list[str], security_opts: list[str], read_only: bool,
                   tmpfs: list[str], userns: str | None) -> Security:
    """Docker's security flags; a profile file is read here so a bad one fails before anything."""
    profile: str | None = DEFAULT_SECCOMP_PROFILE
    nnp, mask = False, True
    for opt in security_opts:
        key, sep, value = opt.replace(":", "=", 1).partition("=") if opt.startswith("seccomp") else \
            opt.partition("=")
        if key == "seccomp" and sep and value:
            profile = None if value == "unconfined" else os.path.abspath(value)
            if profile is not None:
                seccomp.read_profile(profile)
        elif key == "no-new-privileges" and value in ("", "true", "false"):
            nnp = value != "false"
        elif key == "systempaths" and value == "unconfined":
            mask = False
        else:
            raise MinirunError(f"invalid --security-opt {opt!r}: expected seccomp=PROFILE.json, "
                               "seccomp=unconfined, no-new-privileges or systempaths=unconfined")
    mounts: dict[str, str] = {}
    for value in tmpfs:
        target, _, options = value.partition(":")
        if not target.startswith("/") or os.path.normpath(target) == "/":
            raise MinirunError(f"invalid --tmpfs {value!r}: expected an absolute path other than /")
        mounts[os.path.normpath(target)] = check_tmpfs_options(value, options)
    mode, size = parse_userns(userns)
    return Security(capabilities=resolve_capabilities(cap_add, cap_drop), seccomp_profile=profile,
                    no_new_privileges=nnp, read_only=read_only, tmpfs=mounts, userns=mode, userns_size=size,
                    mask_system_paths=mask)


def parse_userns(value: str | None) -> tuple[UsernsMode, int]:
    """--userns: auto[:size=N] (the default), shared or host."""
    if value in (None, "", "auto", "shared", "host"):
        return (value or "auto"), 65536  # type: ignore[return-value]
    key, _, size = value.removeprefix("auto:").partition("=")
    # at most half of the 32-bit id space: a range never reaches (uid_t)-1, which is never mapped
    if value.startswith("auto:") and key == "size" and size.isdigit() and 1 <= int(size) <= 2**31:
        return "auto", int(size)
    raise MinirunError(f"invalid --userns {value!r}: expected auto, auto:size=N (1 to 2147483648), shared "
                       "or host")


# What --tmpfs accepts after PATH: docker's flag words, and the tmpfs(5) options minirun passes on.
TMPFS_FLAGS = ("ro", "rw", "noexec", "exec", "nosuid", "suid", "nodev", "dev")
TMPFS_SIZE = r"(?i)^\d+[kmg]?$|^\d{1,3}%$"  # tmpfs(5): bytes, k/m/g, or % of RAM
TMPFS_OPTIONS = {"size": TMPFS_SIZE, "nr_blocks": TMPFS_SIZE, "nr_inodes": TMPFS_SIZE,
                 "mode": r"^[0-7]{1,4}$", "uid": r"^\d{1,10}$", "gid": r"^\d{1,10}$"}


def check_tmpfs_options(value: str, options: str) -> str:
    """Every --tmpfs option checked here, before anything exists: the kernel would refuse a bad
    one only inside the container, after its record was written (mount(2) EINVAL)."""
    for option in filter(None, options.split(",")):
        key, sep, setting = option.partition("=")
        if option in TMPFS_FLAGS:
            continue
        if not sep or key not in TMPFS_OPTIONS:
            raise MinirunError(f"invalid --tmpfs {value!r}: unknown option {option!r} (expected "
                               f"{', '.join(TMPFS_FLAGS)}, or {'=, '.join(TMPFS_OPTIONS)}=)")
        if not re.fullmatch(TMPFS_OPTIONS[key], setting):
            raise MinirunError(f"invalid --tmpfs {value!r}: bad value in {option!r}")
        if key in ("size", "nr_blocks", "nr_inodes") and not setting.endswith("%") \
                and parse_size(f"--tmpfs {key}", setting) > MAX_BYTES:
            raise MinirunError(f"invalid --tmpfs {value!r}: {option!r} is too large")
    return options


# Docker's rule for container names (daemon/names.go), and a length that still fits a file name
# (NAME_MAX, 255): docker sets none, and a 5,000-character name only makes every listing unreadable.
def check_name(name: str | None) -> str | None:
    """--name, checked as the record will be (state.check_name: docker's rule)."""
    return None if name is None else state.check_name(name)


def env_dict(env: list[str]) -> dict[str, str]:
    """KEY=VALUE strings as a dict; later entries win, as in a shell's environment."""
    return {key: value for key, _, value in (e.partition("=") for e in env)}


# -v options: each word sets one BindMount field (podman's [no]suid, [no]dev, [no]exec; ro|rw).
BIND_OPTIONS = {"ro": ("readonly", True), "rw": ("readonly", False), "suid": ("nosuid", False),
                "nosuid": ("nosuid", True), "dev": ("nodev", False), "nodev": ("nodev", True),
                "exec": ("noexec", False), "noexec": ("noexec", True)}


def parse_bind(value: str) -> BindMount:
    """Parse docker's -v syntax. Named volumes are not supported, so HOST must be a path."""
    parts = value.split(":")
    if len(parts) not in (2, 3):
        raise MinirunError(f"invalid volume {value!r}: expected HOST-PATH:CONTAINER-PATH[:OPTIONS]")
    source, target = parts[0], parts[1]
    options: dict[str, bool] = {}
    for word in (parts[2].split(",") if len(parts) == 3 else []):
        if word not in BIND_OPTIONS:
            raise MinirunError(f"invalid volume {value!r}: unknown option {word!r} (expected ro, rw, "
                               "[no]suid, [no]dev, [no]exec)")
        options.update([BIND_OPTIONS[word]])
    if not source.startswith("/"):
        raise MinirunError(f"invalid volume {value!r}: the host path must be absolute (named volumes "
                           "are not supported)")
    if not target.startswith("/"):
        raise MinirunError(f"invalid volume {value!r}: the container path must be absolute")
    if os.path.normpath(target) == "/":
        raise MinirunError(f"invalid volume {value!r}: cannot mount over the container's root")
    if not os.path.exists(source):
        # docker would create a missing directory; podman refuses. We refuse: a typo in the
        # host path should not silently create a directory on the host.
        raise MinirunError(f"invalid volume {value!r}: host path {source} does not exist")
    return BindMount(os.path.realpath(source), os.path.normpath(target), **options)


def parse_env(values: list[str]) -> list[str]:
    """`-e KEY=VALUE` sets; `-e KEY` copies KEY from minirun's environment if it is set."""
    result = []
    for value in values:
        key, sep, _ = value.partition("=")
        if not key or not re.fullmatch(ENV_NAME, key):
            raise MinirunError(f"invalid environment variable {value!r}")
        if sep:
            result.append(value)
        elif key in os.environ:
            result.append(f"{key}={os.environ[key]}")
    return result


def check_user(user: str | None) -> str | None:
    if user is None:
        return None
    name, _, group = user.partition(":")
    if not name or (":" in user and not group) or any(c.isspace() for c in user):
        raise MinirunError(f"invalid user {user!r}: expected USER[:GROUP] or UID[:GID]")
    for part in (name, group):
        if part.isdigit() and int(part) > 2**32 - 2:
            raise MinirunError(f"invalid user {user!r}: id out of range")
    return user


def check_hostname(hostname: str | None) -> str | None:
    if hostname is not None and (len(hostname) > 64 or not re.fullmatch(HOSTNAME, hostname)):
        raise MinirunError(f"invalid hostname {hostname!r}")
    return hostname


def check_network(network: str) -> str:
    if network.startswith("container:") and len(network) > len("container:"):
        return network
    if network not in NETWORK_MODES:
        raise MinirunError(f"invalid --network {network!r}: expected one of {', '.join(NETWORK_MODES[1:])} "
                           "or container:NAME")
    return network


def _ipv4(what: str, value: str, text: str) -> str:
    import ipaddress  # only for -p IP:..., --add-host and --dns

    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise MinirunError(f"invalid {what} {value!r}: {text!r} is not an IPv4 address") from None


def _port(what: str, value: str, text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise MinirunError(f"invalid {what} {value!r}: {text!r} is not a port number (1-65535)")
    return int(text)


def parse_publish(value: str) -> PortMapping:
    """docker's -p: HOST_PORT:CONTAINER_PORT or HOST_IP:HOST_PORT:CONTAINER_PORT, then /tcp|/udp."""
    ports, _, proto = value.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise MinirunError(f"invalid -p {value!r}: the protocol must be tcp or udp")
    parts = ports.split(":")
    if len(parts) == 2:
        host_ip, host_port, container_port = "", parts[0], parts[1]
    elif len(parts) == 3:
        host_ip, host_port, container_port = _ipv4("-p", value, parts[0]), parts[1], parts[2]
    else:
        raise MinirunError(f"invalid -p {value!r}: expected [HOST_IP:]HOST_PORT:CONTAINER_PORT[/udp]")
    return PortMapping(host_ip, _port("-p", value, host_port), _port("-p", value, container_port), proto)


def parse_add_host(value: str) -> tuple[str, str]:
    """--add-host NAME:IP (docker also accepts NAME=IP)."""
    name, sep, ip = value.partition("=") if "=" in value else value.partition(":")
    if not sep or not name or not re.fullmatch(HOSTNAME, name):
        raise MinirunError(f"invalid --add-host {value!r}: expected NAME:IP")
    return name, _ipv4("--add-host", value, ip)


def parse_dns(value: str) -> str:
    return _ipv4("--dns", value, value)


PULL_POLICIES = ("missing", "always", "never")
PLATFORM = r"^[a-z0-9_]+(/[a-z0-9_]+){0,2}$"


def check_platform(platform: str | None) -> str | None:
    if platform is not None and not re.fullmatch(PLATFORM, platform):
        raise MinirunError(f"invalid --platform {platform!r}: expected OS/ARCH[/VARIANT], e.g. linux/arm64")
    return platform


def check_pull(policy: str) -> str:
    if policy not in PULL_POLICIES:
        raise MinirunError(f"invalid --pull {policy!r}: expected one of {', '.join(PULL_POLICIES)}")
    return policy


def check_workdir(workdir: str | None) -> str | None:
    if workdir is not None and not workdir.startswith("/"):
        raise MinirunError(f"invalid working directory {workdir!r}: it must be an absolute path")
    return workdir


# --- resource limits, with docker's units and docker's (and the kernel's) minimums ----------

SIZE = r"(?i)^(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?$"
# Sizes are signed 64-bit numbers in docker (RAMInBytes) and in the kernel's counters: a larger one
# used to be written to memory.limit_in_bytes and wrapped around there.
MAX_BYTES = 2**63 - 1
PIDS_MAX = 4 * 1024 * 1024  # PID_MAX_LIMIT (include/linux/threads.h): pids.max refuses more
MIN_MEMORY = 6 * 1024 * 1024  # docker's minimum: below it a container cannot even start its shell
CPU_SHARES_RANGE = (2, 262144)  # what the kernel accepts in cpu.shares (sched.h MIN/MAX_SHARES)
CPU_LIST = r"^\d+(-\d+)?(,\d+(-\d+)?)*$"


def parse_size(flag: str, value: str) -> int:
    """docker's RAMInBytes: 64m, 1g, 512k, 1.5g, 100 (bytes); binary multiples."""
    match = re.fullmatch(SIZE, value.strip())
    if not match:
        raise MinirunError(f"invalid {flag} {value!r}: expected a size like 64m, 512k or 1g")
    whole, _, fraction = match.group(1).partition(".")
    multiple = 1 << 10 * " kmgtp".index(match.group(2).lower() or " ")
    # In integers (a float would round 99999999999999999999g): 1.5g is 1g + 5 * 1g // 10.
    size: int = int(whole) * multiple + int(fraction or "0") * multiple // 10 ** len(fraction)
    if size > MAX_BYTES:
        raise MinirunError(f"invalid {flag} {value!r}: too large (the most is 8 EiB, 2^63-1 bytes)")
    return size


def parse_id_list(flag: str, what: str, value: str, available: set[int]) -> str:
    """--cpuset-cpus 0-1,3 / --cpuset-mems 0: every CPU or node named must be one of `available`
    (the list syntax of cpuset(7), "List format")."""
    def unavailable() -> MinirunError:
        return MinirunError(f"invalid {flag} {value!r}: requested {what} are not available "
                            f"(available: {','.join(map(str, sorted(available)))})")

    if not re.fullmatch(CPU_LIST, value):  # (match's `$` would let a trailing newline through)
        raise MinirunError(f"invalid {flag} {value!r}: expected a list like 0-1,3")
    wanted: set[int] = set()
    for part in value.split(","):
        low, _, high = part.partition("-")
        if high and int(high) < int(low):
            raise MinirunError(f"invalid {flag} {value!r}: {part} is a backwards range")
        if int(high or low) > max(available):  # before range(): 0-99999999999 would fill the memory
            raise unavailable()
        wanted |= set(range(int(low), int(high or low) + 1))
    if not wanted <= available:
        raise unavailable()
    return value


def parse_cpu_list(value: str, available: set[int]) -> str:
    """--cpuset-cpus: the CPUs this process may run on (its affinity) are the ones to choose from."""
    return parse_id_list("--cpuset-cpus", "CPUs", value, available)


# The online memory (NUMA) nodes that have memory: the ones cpuset.mems accepts (the kernel's
# top cpuset holds node_states[N_MEMORY]; a memoryless node is online but refused). Older
# kernels without has_memory: every online node.
NODE_LISTS = ("/sys/devices/system/node/has_memory", "/sys/devices/system/node/online")


def online_nodes() -> set[int]:
    """The host's online memory nodes, from sysfs (a list like "0-1"). A kernel built without
    NUMA has neither file and one node, 0 (its cpuset.mems is "0")."""
    for name in NODE_LISTS:
        try:
            with open(name) as f:
                text = f.read().strip()
        except OSError:
            continue
        nodes: set[int] = set()
        for part in filter(None, text.split(",")):
            low, _, high = part.partition("-")
            nodes |= set(range(int(low), int(high or low) + 1))
        if nodes:
            return nodes
    return {0}


def parse_limits(memory: str | None = None, memory_swap: str | None = None, cpus: str | None = None,
                 cpu_shares: str | None = None, cpuset_cpus: str | None = None,
                 pids_limit: str | None = None, cpuset_mems: str | None = None) -> Limits:
    mem = parse_size("--memory", memory) if memory is not None else None
    if mem is not None and mem < MIN_MEMORY:
        raise MinirunError(f"invalid --memory {memory!r}: the minimum is 6m")
    swap = None
    if memory_swap is not None:
        if mem is None:
            raise MinirunError("--memory-swap needs --memory as well (it is memory plus swap)")
        swap = -1 if memory_swap.strip() == "-1" else parse_size("--memory-swap", memory_swap)
        if swap != -1 and swap < mem:
            raise MinirunError(f"invalid --memory-swap {memory_swap!r}: it is memory plus swap, so it "
                               "must be at least --memory (or -1 for unlimited swap)")
    cpu_count = os.cpu_count() or 1
    n_cpus = None
    if cpus is not None:
        try:
            n_cpus = float(cpus)
        except ValueError:
            raise MinirunError(f"invalid --cpus {cpus!r}: expected a number like 0.5") from None
        if not 0.01 <= n_cpus <= cpu_count:
            raise MinirunError(f"invalid --cpus {cpus!r}: the range is 0.01 to {cpu_count} "
                               f"(this host has {cpu_count} CPUs)")
    shares = None
    if cpu_shares is not None:
        if not cpu_shares.isdigit() or not CPU_SHARES_RANGE[0] <= int(cpu_shares) <= CPU_SHARES_RANGE[1]:
            raise MinirunError(f"invalid --cpu-shares {cpu_shares!r}: expected an integer from "
                               f"{CPU_SHARES_RANGE[0]} to {CPU_SHARES_RANGE[1]} (1024 is the default)")
        shares = int(cpu_shares)
    cpuset = parse_cpu_list(cpuset_cpus, os.sched_getaffinity(0)) if cpuset_cpus is not None else None
    # docker checks the nodes up front too ("Requested memory nodes are not available"): the
    # kernel refuses a node without memory only when cpuset.mems is written (EINVAL, v1 and v2:
    # kernel/cgroup/cpuset.c, update_nodemask), after the container's cgroup exists.
    mems = (parse_id_list("--cpuset-mems", "memory nodes", cpuset_mems, online_nodes())
            if cpuset_mems is not None else None)
    pids = None
    if pids_limit is not None:
        try:
            pids = int(pids_limit)
        except ValueError:
            raise MinirunError(f"invalid --pids-limit {pids_limit!r}: expected an integer "
                               "(-1 for unlimited)") from None
        if pids > PIDS_MAX:
            raise MinirunError(f"invalid --pids-limit {pids_limit!r}: the most is {PIDS_MAX} "
                               "(-1 for unlimited)")
    return Limits(mem, swap, n_cpus, shares, cpuset, mems, pids)


def check_cgroupns(value: str) -> str:
    if value not in ("private", "host"):
        raise MinirunError(f"invalid --cgroupns {value!r}: expected private or host")
    return value


# --- shared namespaces: --pid, --ipc, --uts (and --network container:NAME) --------------------

SHARE_MODES = {"pid": ("private", "host"), "ipc": ("private", "shareable", "host"),
               "uts": ("private", "host")}


def check_share(kind: str, value: str | None) -> str:
    """--pid/--ipc: private, host or container:NAME (--ipc also shareable); --uts: private or host."""
    if value is None or value == "":
        return "private"
    if kind != "uts" and value.startswith("container:") and len(value) > len("container:"):
        return value
    if value not in SHARE_MODES[kind]:
        others = "" if kind == "uts" else " or container:NAME"
        raise MinirunError(f"invalid --{kind} {value!r}: expected {', '.join(SHARE_MODES[kind])}{others}")
    return value
