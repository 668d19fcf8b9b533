"""ContainerSpec: what the user asked for, checked before anything is created.

Every flag of `minirun run` is turned into a field here and validated without side effects,
so that a typo (`-v relative:path`, `--user ""`) fails with one line and exit code 125 before
a cgroup, a directory or a record exists. Nothing in this module touches the system except
reading the host's environment for `-e NAME` (docker's "take it from my environment").
"""

import os
import re
from dataclasses import dataclass, field

from minirun.errors import MinirunError

NETWORK_MODES = ("none", "host")
ENV_NAME = re.compile(r"^[^=\s]+$")
# RFC 1123 host name label, which is what sethostname(2) accepts and resolvers understand.
HOSTNAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$")


@dataclass(frozen=True)
class BindMount:
    """`-v HOST:CONTAINER[:ro]`: a host path made visible inside the container."""

    source: str  # absolute host path
    target: str  # absolute path inside the container
    readonly: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    image: str
    command: list[str] = field(default_factory=list)  # empty: the image's Cmd
    entrypoint: list[str] | None = None  # None: the image's Entrypoint
    name: str | None = None
    hostname: str | None = None
    env: list[str] = field(default_factory=list)  # KEY=VALUE, applied over the image's Env
    workdir: str | None = None
    user: str | None = None  # "uid[:gid]" or "name[:group]", resolved inside the container
    binds: list[BindMount] = field(default_factory=list)
    network: str = "none"
    interactive: bool = False
    tty: bool = False
    init: bool = False
    remove: bool = False


def env_dict(env: list[str]) -> dict[str, str]:
    """KEY=VALUE strings as a dict; later entries win, as in a shell's environment."""
    return {key: value for key, _, value in (e.partition("=") for e in env)}


def parse_bind(value: str) -> BindMount:
    """Parse docker's -v syntax. Named volumes are not supported, so HOST must be a path."""
    parts = value.split(":")
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        source, target, readonly = parts[0], parts[1], parts[2] == "ro"
    elif len(parts) == 2:
        source, target, readonly = parts[0], parts[1], False
    else:
        raise MinirunError(f"invalid volume {value!r}: expected HOST-PATH:CONTAINER-PATH[:ro|rw]")
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
    return BindMount(os.path.realpath(source), os.path.normpath(target), readonly)


def parse_env(values: list[str]) -> list[str]:
    """`-e KEY=VALUE` sets; `-e KEY` copies KEY from minirun's environment if it is set."""
    result = []
    for value in values:
        key, sep, _ = value.partition("=")
        if not key or not ENV_NAME.match(key):
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
    if hostname is not None and (len(hostname) > 64 or not HOSTNAME.match(hostname)):
        raise MinirunError(f"invalid hostname {hostname!r}")
    return hostname


def check_network(network: str) -> str:
    if network == "bridge" or network == "default":
        raise MinirunError("--network bridge is not available yet; use --network none or host")
    if network not in NETWORK_MODES:
        raise MinirunError(f"invalid --network {network!r}: expected one of {', '.join(NETWORK_MODES)}")
    return network


def check_workdir(workdir: str | None) -> str | None:
    if workdir is not None and not workdir.startswith("/"):
        raise MinirunError(f"invalid working directory {workdir!r}: it must be an absolute path")
    return workdir
