"""Container records: one JSON file per container, the only memory minirun has between commands.

minirun has no daemon. `minirun run` stays alive as the container's monitor (like podman's
conmon) and writes what happens to a record; `ps`, `inspect` and `rm` read the records.
The record lives in a run-time directory (/run/minirun or $XDG_RUNTIME_DIR/minirun), which is
emptied at boot together with the containers it describes.

Because the monitor can die without a chance to write anything (SIGKILL, OOM killer, power),
a record that says "running" is only believed while its monitor process is alive. The
monitor is identified by pid *and* start time (field 22 of /proc/PID/stat), because pids are
reused. A record whose monitor is gone is "dead": `load` reports it as exited, and the
cleanup of what it left (cgroup, container layer) is done by the next `rm` or `prune`.
"""

import contextlib
import errno
import os
import re
import sys
import time
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from minirun import procfs
from minirun.errors import ContainerNotFound, MinirunError
from minirun.fsutil import atomic_write_json, locked, read_json

# Docker's rule for container names (daemon/names.go): start alphanumeric, then [a-zA-Z0-9_.-].
NAME_RULE = r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$"
MAX_NAME_LENGTH = 255
ID_RULE = r"^[0-9a-f]{64}$"  # 256 random bits in hex, as docker's ids
PID_MAX_LIMIT = 4194304  # include/linux/threads.h: no pid is larger (proc(5), /proc/sys/kernel/pid_max)
TIMESTAMP = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$"  # state.now(), UTC
# The keys of config, host_config and network_settings that minirun reads back, and their JSON
# types: a record edited to {"Env": 5} broke exec, {"Ports": 5} ps, {"LogConfig": 5} logs, with
# a traceback (attack review of issues 11 and 12). Other keys are shown by inspect as they are.
NESTED: dict[str, dict[str, Any]] = {
    "config": {"Cmd": list[str], "Env": list[str], "Hostname": str, "Image": str, "OpenStdin": bool,
               "StopSignal": str, "StopTimeout": int, "Tty": bool, "User": str, "WorkingDir": str},
    "host_config": {"AutoRemove": bool, "Binds": list[str], "Capabilities": list[str], "CgroupnsMode": str,
                    "CpuShares": int, "CpusetCpus": str, "CpusetMems": str,
                    "IDMappings": dict[str, list[str]], "Init": bool, "IpcMode": str,
                    "LayersMode": str, "LogConfig": dict[str, Any], "Memory": int, "MemorySwap": int,
                    "NanoCpus": int, "NetworkMode": str, "NoNewPrivileges": bool, "PidMode": str,
                    "PidsLimit": int, "SeccompFilter": str, "SeccompProfile": str, "UTSMode": str,
                    "UsernsMode": str},
    "network_settings": {"Bridge": str, "Gateway": str, "HostVeth": str, "IPAddress": str, "IPPrefixLen": int,
                         "MacAddress": str, "Mode": str, "Ports": dict[str, list[dict[str, str]] | None],
                         "SandboxKey": str, "Slirp4netnsPid": int, "Slirp4netnsStart": int,
                         "Slirp4netnsSocket": str},
}

T = typing.TypeVar("T")

EXIT_KILLED_WITH_MONITOR = 137  # the monitor's death SIGKILLs the container (PR_SET_PDEATHSIG)


def now() -> str:
    """UTC now as RFC 3339 with microseconds (2026-11-30T22:05:18.123456Z), without datetime."""
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns // 1000 % 10**6:06d}Z"


def process_start_time(pid: int) -> int | None:
    """Start time of a live process in clock ticks since boot; None if it is gone or a zombie.

    A zombie (state Z, proc(5)) has exited and only waits for its parent to collect the status:
    as a monitor it is dead, even though /proc/PID still exists.
    """
    fields = procfs.stat_fields(pid)
    return None if fields is None or fields[0] in ("Z", "X") else int(fields[19])  # fields 3, 22


class _Default:
    """A field's default made anew for each record (a list or dict of its own, never shared)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], T]) -> T:
    return typing.cast(T, _Default(default_factory))


@typing.dataclass_transform(kw_only_default=True, field_specifiers=(field,))
class Fields:
    """A record that changes in place: fields declared with type hints (and defaults) as for
    @dataclass, set from keyword arguments. The record changes as its container lives
    (`update`), and the start and its teardown share one object (runtime.launch: what
    start_child recorded is what teardown removes), so it is not an immutable NamedTuple as the
    plans are. Not @dataclass either: `dataclasses` imports inspect, ast and dis and writes each
    class with exec, ~10 ms of every `minirun run` (README, "Start-up time")."""

    def __init__(self, **values: Any) -> None:
        for name in field_names(type(self)):
            if name in values:
                value = values.pop(name)
            elif hasattr(type(self), name):
                default = getattr(type(self), name)
                value = default.make() if isinstance(default, _Default) else default
            else:
                raise TypeError(f"{type(self).__name__}: no {name!r}")
            setattr(self, name, value)
        if values:
            raise TypeError(f"{type(self).__name__}: unknown field {next(iter(values))!r}")


def field_names(cls: type[Fields]) -> list[str]:
    return list(cls.__annotations__)


def as_dict(record: Fields) -> dict[str, Any]:
    return {name: getattr(record, name) for name in field_names(type(record))}


class Record(Fields):
    """What `minirun inspect` shows, flattened; field names follow docker's where one exists."""

    id: str
    name: str
    image: str  # the reference the user gave, e.g. "busybox"
    image_id: str
    command: list[str]
    created: str
    rootless: bool
    status: str = "created"  # created -> running -> exited
    pid: int = 0  # container PID 1 as the host sees it
    pid_start: int = 0  # ... and its start time, so that a reused pid is never taken for it
    exit_code: int = 0
    create_args: list[str] = field(default_factory=list)  # `run`/`create` arguments, for start and restart
    oom_killed: bool = False
    started_at: str = ""
    finished_at: str = ""
    error: str = ""
    monitor_pid: int = 0
    monitor_start: int = 0
    bundle: str = ""  # the container's directory: upper layer, work dir, /etc files
    cgroup_paths: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)  # hostname, env, user, workdir, tty ...
    host_config: dict[str, Any] = field(default_factory=dict)  # binds, network mode, auto remove
    network_settings: dict[str, Any] = field(default_factory=dict)  # address, ports... (minirun/network)
    id_range: list[int] = field(default_factory=list)  # rootful remapped: host uid, gid, count (idranges.py)

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def monitor_alive(self) -> bool:
        return self.monitor_pid > 0 and process_start_time(self.monitor_pid) == self.monitor_start

    @property
    def starting(self) -> bool:
        """`run` or `start` has claimed it (`claim`) and its command does not run yet."""
        return self.status == "created" and not self.error and self.monitor_alive()

    @property
    def dead(self) -> bool:
        """True if the record says the container runs (or starts) but its monitor is gone.

        A "created" record with an error is not dead: its start failed, and it stays "Created"
        with that error and exit code, as in docker. Nor is one that `create` made, which has
        no monitor until `start`."""
        failed_start = self.status == "created" and bool(self.error)
        never_started = self.status == "created" and self.monitor_pid == 0  # `minirun create`
        return (self.status in ("created", "running") and not failed_start and not never_started
                and not self.monitor_alive())


def _path(state: Path, container_id: str) -> Path:
    return state / f"{container_id}.json"


def exit_path(state: Path, container_id: str) -> Path:
    """STATE/ID.exit: the exit code, written in place into space reserved before the start.

    A full state directory must not lose an exit code. The record is rewritten as a whole new
    file (atomic rename), which needs free space at exit time; this file's blocks are reserved
    (posix_fallocate(3)) before the container runs, so writing the code into them cannot fail
    with ENOSPC. A record whose monitor died takes its code from here."""
    return state / f"{container_id}.exit"


EXIT_FILE_SIZE = 16


def _open_exit_file(state: Path, container_id: str, flags: int) -> int:
    """Open STATE/ID.exit, never through a symbolic link (O_NOFOLLOW, open(2): ELOOP). Rootless
    the state directory is in the user's $XDG_RUNTIME_DIR, where any process of the user can
    replace the file with a link; the monitor (and the start's O_TRUNC) would then write into
    whatever file the link names."""
    path = exit_path(state, container_id)
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise MinirunError(f"{path} is a symbolic link, not an exit code file: not followed") from None
        raise


def reserve_exit_file(state: Path, container_id: str) -> None:
    fd = _open_exit_file(state, container_id, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.posix_fallocate(fd, 0, EXIT_FILE_SIZE)
    finally:
        os.close(fd)


def write_exit_file(state: Path, container_id: str, code: int) -> None:
    fd = _open_exit_file(state, container_id, os.O_WRONLY)
    try:
        os.pwrite(fd, f"{code}\n".encode().ljust(EXIT_FILE_SIZE, b" "), 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def open_exit_file(state: Path, container_id: str) -> int | None:
    """An fd on the exit code file, for `wait`: the code is written in place into this inode
    (write_exit_file), so it can be read through the fd even after --rm has removed the file."""
    try:
        return _open_exit_file(state, container_id, os.O_RDONLY)
    except (OSError, MinirunError):
        return None


def read_exit_fd(fd: int) -> int | None:
    text = os.pread(fd, EXIT_FILE_SIZE, 0).strip(b"\0 \n")
    return int(text) if text.isdigit() else None


def read_exit_file(state: Path, container_id: str) -> int | None:
    try:
        fd = _open_exit_file(state, container_id, os.O_RDONLY)
    except (OSError, MinirunError):
        return None
    try:
        return read_exit_fd(fd)
    finally:
        os.close(fd)


def _lock(state: Path) -> Path:
    return state / "containers.lock"


def save(state: Path, record: Record) -> None:
    atomic_write_json(_path(state, record.id), as_dict(record), mode=0o600)


def _load_file(path: Path, warn: bool = True) -> Record | None:
    """The record in `path`, or None if it vanished (removed concurrently) or is not a valid
    record: then one line on stderr names the file, and every other container still works.
    `rm -f ID` still removes such a container through what the kernel knows (rm.py)."""
    try:
        record = checked(read_json(path), path.name.removesuffix(".json"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        if warn:
            print(f"minirun: warning: ignoring the invalid record {path}: {e}", file=sys.stderr)
        return None
    if record.dead and record.status == "created":
        # Its start was interrupted (minirun killed, or the disk full): it never ran.
        record.error = "minirun died while starting it"
        record.exit_code = 125
    elif record.dead:
        recorded = read_exit_file(path.parent, record.id)  # the monitor wrote it, not the record
        record.status = "exited"
        record.exit_code = recorded if recorded is not None else record.exit_code or EXIT_KILLED_WITH_MONITOR
        if recorded is None:
            record.error = record.error or "minirun monitor died; container was killed with it"
    return record


def checked(raw: Any, container_id: str) -> Record:
    """A Record from JSON, every field of the type it is declared with (ValueError if not):
    `rm`, `ps` and the monitor act on these values, so a bad one stops here, not in them."""
    _check_fields(raw)
    record = Record(**raw)
    _check_values(record, container_id)
    _check_nested(record)
    return record


def _check_fields(raw: Any) -> None:
    """A JSON object of Record's fields, each of its declared type."""
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    hints = typing.get_type_hints(Record)
    if unknown := sorted(set(raw) - set(hints)):
        raise ValueError(f"unknown field {unknown[0]!r}")
    for name, hint in hints.items():
        if name not in raw:
            if not hasattr(Record, name):  # no default: an older record has every such field
                raise ValueError(f"no {name!r}")
        elif not _has_type(raw[name], hint):
            raise ValueError(f"{name!r} is {str(raw[name])[:40]!r}, not {_type_name(hint)}")


def _check_values(record: Record, container_id: str) -> None:
    """Its identity, status, numbers and times within what minirun itself writes."""
    if record.id != container_id or not re.fullmatch(ID_RULE, record.id):
        raise ValueError(f"its id {record.id!r} is not its file name")
    if not re.fullmatch(NAME_RULE, record.name) or record.name.startswith("/"):
        raise ValueError(f"invalid name {record.name!r}")
    if record.status not in ("created", "running", "exited"):
        raise ValueError(f"unknown status {record.status!r}")
    if record.id_range and (len(record.id_range) != 3 or min(record.id_range) < 0):
        raise ValueError(f"'id_range' is {record.id_range!r}, not [uid, gid, count]")
    for number in ("pid", "pid_start", "monitor_pid", "monitor_start", "exit_code"):
        if getattr(record, number) < 0:
            raise ValueError(f"{number!r} is negative")
    # No pid is beyond PID_MAX_LIMIT; past a C int (pid_t) or a C long, pidfd_open, kill and
    # friends raise OverflowError, which no verb expects.
    if record.pid > PID_MAX_LIMIT or record.monitor_pid > PID_MAX_LIMIT:
        raise ValueError(f"a pid beyond PID_MAX_LIMIT ({PID_MAX_LIMIT})")
    if max(record.pid_start, record.monitor_start, *record.id_range, 0) >= 2**63 or record.exit_code > 255:
        raise ValueError("a number out of range")
    for stamp in ("created", "started_at", "finished_at"):
        value = getattr(record, stamp)
        if not re.fullmatch(TIMESTAMP, value) and (stamp == "created" or value):
            raise ValueError(f"{stamp!r} is {value[:40]!r}, not an RFC 3339 time")


def _check_nested(record: Record) -> None:
    """The keys of its dicts that minirun reads back (NESTED), each of its JSON type."""
    for name, keys in NESTED.items():
        inner = getattr(record, name)
        for key, hint in keys.items():
            if key in inner and not _has_type(inner[key], hint):
                raise ValueError(f"{name}[{key!r}] is {str(inner[key])[:40]!r}, not {_type_name(hint)}")


def _has_type(value: Any, hint: Any) -> bool:
    """Is a JSON value of a declared type (a Record field's, or NESTED's)? (bool is not an int here)"""
    if hint is Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is types.UnionType:
        return any(_has_type(value, h) for h in args)
    if hint is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and all(_has_type(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) and _has_type(v, args[1])
                                               for k, v in value.items())
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint)


def all_records(state: Path, warn: bool = True) -> list[Record]:
    if not state.is_dir():
        return []
    records = [_load_file(p, warn) for p in state.glob("*.json")]
    return sorted((r for r in records if r is not None), key=lambda r: r.created)


def find(state: Path, ref: str, warn: bool = True) -> Record:
    """Find a container by name, full id or unique id prefix, as docker does. (warn: say which
    records are invalid; a command that reads the records again says it once.)

    One record is read, not all of them: a name's claim (STATE/names/NAME) names its id, a full
    id is a file name, and a prefix is matched against the file names (`_lookup`). Only when
    that finds nothing (or an ambiguous prefix) are all records read (`_scan`): a record without
    a claim (written by an older minirun, or its claim deleted by hand) is still found by its
    name there, and a broken record is named in a warning there (why it is not found)."""
    return _lookup(state, ref) or _scan(state, ref, warn)


def _lookup(state: Path, ref: str) -> Record | None:
    """find's fast path: the answer `_scan` would give, or None to let `_scan` decide (nothing
    found, or an ambiguous prefix). The one difference: a name that has no claim and is also a
    unique prefix of another container's id gives that container here, where `_scan` gives
    the named one."""
    by_name = by_id = None
    if re.fullmatch(NAME_RULE, ref) and (owner := _claim_of(state, ref.lstrip("/"))) is not None:
        record = _load_file(_path(state, owner), warn=False)  # (warn: _scan says it, if it runs)
        # The claim names the container; the record, if valid, must agree (a claim is a link
        # anyone who can write the state directory can change, a record can be edited).
        by_name = record if record is not None and record.name == ref.lstrip("/") else None
    if re.fullmatch(ID_RULE, ref):
        by_id = _load_file(_path(state, ref), warn=False)
    # A 64-digit hex name may be another container's id: as in `_scan`, the older one wins.
    if found := sorted((r for r in (by_name, by_id) if r is not None), key=lambda r: r.created):
        return found[0]
    if not re.fullmatch(r"[0-9a-f]{1,63}", ref):
        return None  # no id starts with it
    matches = [r for i in _ids_starting_with(state, ref) if (r := _load_file(_path(state, i), warn=False))]
    return matches[0] if len(matches) == 1 else None


def _ids_starting_with(state: Path, prefix: str) -> list[str]:
    """The ids of the record files whose id starts with `prefix`, from the file names alone."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(state) as entries:
        return [stem for e in entries if (stem := e.name.removesuffix(".json")) != e.name
                and stem.startswith(prefix) and re.fullmatch(ID_RULE, stem)]
    return []


def _scan(state: Path, ref: str, warn: bool) -> Record:
    """find by reading every record (O(n)): what `_lookup` leaves undecided."""
    records = all_records(state, warn)
    for r in records:
        if r.name == ref.lstrip("/") or r.id == ref:
            return r
    matches = [r for r in records if len(ref) >= 1 and r.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise MinirunError(f"multiple containers match id prefix {ref!r}: be more specific")
    raise ContainerNotFound(f"no such container: {ref}")


def image_ids_in_use(state: Path) -> frozenset[str]:
    """Image ids that container records use: such an image must not be deleted under them."""
    return frozenset(r.image_id for r in all_records(state))


def check_name(name: str) -> str:
    """A container name by docker's rule (NAME_RULE), at most MAX_NAME_LENGTH characters."""
    if not re.fullmatch(NAME_RULE, name):
        raise MinirunError(f"invalid container name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, "
                           "at least two characters")
    if len(name.lstrip("/")) > MAX_NAME_LENGTH:
        raise MinirunError(f"invalid container name {name[:20]!r}... ({len(name)} characters): "
                           f"at most {MAX_NAME_LENGTH}")
    return name


def generate_name() -> str:
    """Docker picks adjective_scientist; we keep it short and readable."""
    adjectives = ["brave", "calm", "eager", "fuzzy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
                  "nimble", "quiet", "rapid", "sunny", "tidy", "witty"]
    nouns = ["turing", "hopper", "lovelace", "ritchie", "thompson", "torvalds", "knuth", "liskov",
             "dijkstra", "hamilton", "kernighan", "perlman", "cerf", "lamport", "wirth", "backus"]
    # os.urandom is what the `secrets` module draws from; 16 words each, so a byte picks evenly.
    a, n = os.urandom(2)
    return f"{adjectives[a % 16]}_{nouns[n % 16]}_{os.urandom(2).hex()}"


def create(state: Path, make_record: Callable[[str, str], Record], name: str | None,
           in_use: Callable[[str], bool] = lambda _id: False) -> Record:
    """Allocate an id and a unique name under the lock, and write the "created" record.

    The lock makes "is this name free?" and "take it" one step: two `minirun run --name web`
    started together cannot both succeed. A name is free unless its claim holds it (`_held`),
    which is one look at STATE/names/NAME, never a read of the records; it stays held while a
    container that had it still exists, even if its record is garbage or gone.
    """
    if name is not None:
        check_name(name)
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    with locked(_lock(state)):
        if name is None:
            chosen = generate_name()
            while _held(state, chosen, in_use):
                chosen = generate_name()
        elif _held(state, chosen := name.lstrip("/"), in_use):
            raise MinirunError(f"the container name {name!r} is already in use; remove it or pick another")
        record = make_record(os.urandom(32).hex(), chosen)  # 256 random bits, as docker's ids
        _reserve_name(state, chosen, record.id)  # the name first: a record never lacks its claim
        save(state, record)
        return record


# A name's claim: STATE/names/NAME, a symbolic link whose target is the container's id, made
# before the record and removed after it (symlink(2) is atomic). Records can be corrupted or
# deleted; while the claim and something of its container (record file, directory, cgroup:
# `in_use`, which container.py knows) remain, the name stays taken and `rm -f NAME` finds it.
# Without this, a running container whose record broke lost its name to the next `run --name`.
# It is also the index by name: `create` and `find` look at one claim, not at every record.


def _names(state: Path) -> Path:
    return state / "names"


def _claim_at(path: str) -> str | None:
    """The container id the claim at `path` names; None if there is no such claim."""
    with contextlib.suppress(OSError):  # no claim, not a link, a name too long for a file
        target = os.readlink(path)
        if re.fullmatch(ID_RULE, target):
            return target
    return None


def _claim_of(state: Path, name: str) -> str | None:
    return _claim_at(os.path.join(_names(state), name))


def name_claims(state: Path) -> dict[str, str]:
    """name -> container id, from the claims."""
    claims = {}
    # (No names directory, or a file in its place: no claims. rm, prune and the monitor's --rm
    # release claims after the record is gone; an error there would stop them half way.)
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(_names(state)):
            if (target := _claim_at(entry.path)) is not None:
                claims[entry.name] = target
    return claims


def _holds(state: Path, container_id: str, in_use: Callable[[str], bool]) -> bool:
    """Does a claim for this container still hold its name: does the container exist in some
    form (a record file, valid or not, or `in_use`)? A claim that does not is stale."""
    return _path(state, container_id).exists() or in_use(container_id)


def _held(state: Path, name: str, in_use: Callable[[str], bool]) -> bool:
    """Is this name taken: has it a claim that is not stale?"""
    owner = _claim_of(state, name)
    return owner is not None and _holds(state, owner, in_use)


def _reserve_name(state: Path, name: str, container_id: str) -> None:
    claim = _names(state) / name
    try:
        _names(state).mkdir(mode=0o700, exist_ok=True)
    except FileExistsError:
        raise MinirunError(f"{_names(state)} is not a directory (the name claims): remove it") from None
    with contextlib.suppress(FileNotFoundError):
        os.unlink(claim)  # a stale claim: its container is gone (_held said so)
    os.symlink(container_id, claim)


def release_name(state: Path, container_id: str, name: str | None = None) -> None:
    """Remove the claims on names for `container_id`: given its name, that one claim if it is
    this container's (one readlink, as `rm` does); else every claim it has (all are read)."""
    if name is not None and _claim_of(state, name) == container_id:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_names(state) / name)
        return
    for claimed, owner in name_claims(state).items():
        if owner == container_id:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_names(state) / claimed)


def update(state: Path, record: Record, **changes: Any) -> Record:
    """Change fields of a record and write it atomically."""
    for key, value in changes.items():
        setattr(record, key, value)
    save(state, record)
    return record


def delete(state: Path, record: Record) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_path(state, record.id))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(exit_path(state, record.id))
    release_name(state, record.id, record.name)


def delete_id(state: Path, container_id: str) -> None:
    """Remove whatever record file (valid or not) and name claims a container id has."""
    if re.fullmatch(ID_RULE, container_id):
        for path in (_path(state, container_id), exit_path(state, container_id)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        release_name(state, container_id)


def record_ids(state: Path) -> set[str]:
    """The ids of every record file, valid or not."""
    if not state.is_dir():
        return set()
    return {p.name.removesuffix(".json") for p in state.glob("*.json") if re.fullmatch(ID_RULE, p.name[:-5])}


@contextlib.contextmanager
def exclusive(state: Path) -> Iterator[None]:
    """Serialise removals (rm, prune) against creations."""
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    with locked(_lock(state)):
        yield


def claim(state: Path, container_id: str, ref: str) -> tuple[Record, bool]:
    """`start`: take a created or exited container for this process, under the lock `rm` and
    `prune` remove under, so that the check ("it exists and is not running") and the claim are
    one step. Before, an `rm -f` between the two removed it, reported success, and the start
    then wrote the record again and ran it (attack review of issue 11). Claimed, it is
    "created" with this process as its monitor (`starting`): rm -f waits for the start to end,
    then stops and removes it; a second `start` is refused. If this process dies before the
    container runs, the record says so (`_load_file`: "minirun died while starting it")."""
    with locked(_lock(state)):
        record = _load_file(_path(state, container_id), warn=False)
        if record is None:
            raise ContainerNotFound(f"no such container: {ref}")
        if record.status == "running" or record.starting:
            return record, False  # not claimed: the caller says what that means for it
        record.status, record.error = "created", ""
        record.monitor_pid, record.monitor_start = os.getpid(), process_start_time(os.getpid()) or 0
        save(state, record)
        return record, True


def load(state: Path, container_id: str, warn: bool = True) -> Record | None:
    """One record by full id; None if it is gone (removed concurrently) or invalid (warn: say so)."""
    return _load_file(_path(state, container_id), warn)
