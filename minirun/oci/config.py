"""config.json, read and checked before anything is created: the OCI bundle as a frozen plan.

The runtime spec (github.com/opencontainers/runtime-spec, config.md and config-linux.md) names
what a runtime must do; this module turns the JSON into frozen values, so that a wrong type or
an unknown namespace fails `create` with one line before a cgroup, a record or a process
exists. Like minirun/spec.py for `minirun run`'s flags, it reads the bundle but changes
nothing. The values then travel, decided, into the child (minirun/oci/child.py).
"""

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from minirun import kernel
from minirun.errors import MinirunError
from minirun.security.capabilities import NUMBERS as CAPABILITY_NUMBERS
from minirun.userns import IdMap

NAMESPACE_FLAGS = {
    "pid": kernel.CLONE_NEWPID,
    "network": kernel.CLONE_NEWNET,
    "mount": kernel.CLONE_NEWNS,
    "ipc": kernel.CLONE_NEWIPC,
    "uts": kernel.CLONE_NEWUTS,
    "user": kernel.CLONE_NEWUSER,
    "cgroup": kernel.CLONE_NEWCGROUP,
}
# The names /proc/PID/ns/ uses for them (exec joins a container through these).
PROC_NS = {
    "pid": "pid",
    "network": "net",
    "mount": "mnt",
    "ipc": "ipc",
    "uts": "uts",
    "user": "user",
    "cgroup": "cgroup",
}
# setrlimit(2)'s resources, by the spec's names (<sys/resource.h> on Linux).
RLIMITS = {
    "RLIMIT_CPU": 0,
    "RLIMIT_FSIZE": 1,
    "RLIMIT_DATA": 2,
    "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5,
    "RLIMIT_NPROC": 6,
    "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10,
    "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14,
    "RLIMIT_RTTIME": 15,
}
OCI_VERSION = re.compile(r"^1\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


@dataclass(frozen=True)
class Capabilities:
    bounding: frozenset[str] = frozenset()
    effective: frozenset[str] = frozenset()
    inheritable: frozenset[str] = frozenset()
    permitted: frozenset[str] = frozenset()
    ambient: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Process:
    """`process` (and exec's --process file): what runs, as whom, with which limits."""

    args: list[str]
    env: list[str]
    cwd: str
    uid: int
    gid: int
    additional_gids: list[int]
    umask: int | None
    capabilities: Capabilities | None  # None: the spec's "not set" (keep what we have)
    rlimits: list[tuple[int, int, int]]  # (resource, soft, hard)
    no_new_privileges: bool
    oom_score_adj: int | None
    terminal: bool
    apparmor_profile: str = ""  # confines the program from its execve on (child.apparmor_on_exec)


@dataclass(frozen=True)
class Mount:
    destination: str
    type: str
    source: str
    options: list[str]


@dataclass(frozen=True)
class Device:
    path: str
    type: str  # c, b, u, p
    major: int
    minor: int
    mode: int | None
    uid: int | None
    gid: int | None


@dataclass(frozen=True)
class Hook:
    path: str
    args: list[str]
    env: list[str]
    timeout: int | None


@dataclass(frozen=True)
class Config:
    bundle: str
    root: str  # absolute
    root_readonly: bool
    process: Process
    hostname: str | None
    mounts: list[Mount]
    namespaces: dict[str, str]  # type -> "" (new) or a path to join
    uid_mappings: list[IdMap]
    gid_mappings: list[IdMap]
    devices: list[Device]
    cgroups_path: str | None
    resources: dict[str, Any]  # linux.resources as given; minirun/oci/cgroup.py writes it
    seccomp: dict[str, Any] | None
    masked_paths: list[str]
    readonly_paths: list[str]
    sysctl: dict[str, str]
    rootfs_propagation: str
    hooks: dict[str, list[Hook]]
    annotations: dict[str, str] = field(default_factory=dict)
    has_process: bool = True  # a bundle may come without one: create works, start refuses (runtime.md)

    def clone_flags(self) -> int:
        """The namespaces clone(2) creates: those without a path (a path is joined, setns(2))."""
        flags = 0
        for kind, path in self.namespaces.items():
            if not path and kind != "cgroup":  # cgroup: unshared by the child once in its cgroup
                flags |= NAMESPACE_FLAGS[kind]
        return flags


def _get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any, where: str) -> Any:
    value = obj.get(key, default)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MinirunError(f"config.json: {where}{key} has the wrong type ({type(value).__name__})")
    return value


def _strings(obj: dict[str, Any], key: str, where: str) -> list[str]:
    value = _get(obj, key, list, [], where)
    if not all(isinstance(v, str) for v in value):
        raise MinirunError(f"config.json: {where}{key} must be a list of strings")
    return list(value)


def _caps(obj: dict[str, Any], key: str) -> frozenset[str]:
    names = _strings(obj, key, "process.capabilities.")
    unknown = [n for n in names if n not in CAPABILITY_NUMBERS]
    if unknown:
        raise MinirunError(f"config.json: unknown capability {unknown[0]!r} in process.capabilities.{key}")
    return frozenset(names)


def check_user_id(value: Any, name: str) -> int:
    """A uid or gid: uint32 in config-linux.md, and not (uid_t)-1, which setresuid(2) and
    setgroups(2) read as "leave it unchanged" (the process would stay root)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32 - 1:
        raise MinirunError(f"{name} {value!r}: an id from 0 to {2**32 - 2} is needed")
    return value


def lsm_enabled(name: Literal["apparmor", "selinux"]) -> bool:
    """Is the Linux security module on? AppArmor: securityfs has apparmor/ and the module says Y
    (runc's apparmor.IsEnabled); SELinux: selinuxfs is mounted (go-selinux's GetEnabled)."""
    if name == "selinux":
        return os.path.exists("/sys/fs/selinux/enforce")
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            return f.read(1) == "Y" and os.path.isdir("/sys/kernel/security/apparmor")
    except OSError:
        return False


def refuse_label(value: str, field: str, lsm: Literal["apparmor", "selinux"]) -> None:
    """An AppArmor profile or SELinux label asked for is never silently dropped: the program would
    run unconfined. On a host without the module, runc refuses the same (apparmorProfile: its
    write to /proc/thread-self/attr/apparmor/exec fails; selinuxLabel: its validator; mountLabel:
    the kernel refuses mount's context= option, "tmpfs: Unknown parameter 'context'"); crun
    ignores them. With AppArmor on, its profile is applied (child.apparmor_on_exec); minirun-oci
    cannot apply SELinux labels (features: selinux enabled false)."""
    if not value:
        return
    module = {"apparmor": "AppArmor", "selinux": "SELinux"}[lsm]
    if not lsm_enabled(lsm):
        raise MinirunError(f"config.json: {field} {value!r}: {module} is not enabled on this host")
    if lsm == "selinux":
        raise MinirunError(f"config.json: {field} {value!r}: minirun-oci has no {module} support")


def parse_process(raw: Any, where: str = "process.") -> Process:
    if not isinstance(raw, dict):
        raise MinirunError(f"config.json: {where.rstrip('.')} must be an object")
    apparmor = _get(raw, "apparmorProfile", str, "", where)
    refuse_label(apparmor, f"{where}apparmorProfile", "apparmor")
    refuse_label(_get(raw, "selinuxLabel", str, "", where), f"{where}selinuxLabel", "selinux")
    args = _strings(raw, "args", where)
    if not args:
        raise MinirunError(f"{where}args must not be empty")
    cwd = _get(raw, "cwd", str, "/", where)
    if not cwd.startswith("/"):
        raise MinirunError(f"{where}cwd {cwd!r} must be an absolute path")
    user = _get(raw, "user", dict, {}, where)
    caps = None
    if "capabilities" in raw and raw["capabilities"] is not None:
        c = _get(raw, "capabilities", dict, {}, where)
        caps = Capabilities(
            _caps(c, "bounding"),
            _caps(c, "effective"),
            _caps(c, "inheritable"),
            _caps(c, "permitted"),
            _caps(c, "ambient"),
        )
    rlimits = []
    for item in _get(raw, "rlimits", list, [], where):
        kind = item.get("type") if isinstance(item, dict) else None
        if kind not in RLIMITS:
            raise MinirunError(f"config.json: unknown rlimit type {kind!r}")
        soft, hard = item.get("soft"), item.get("hard")
        if not isinstance(soft, int) or not isinstance(hard, int) or soft > hard:
            raise MinirunError(f"config.json: rlimit {kind}: soft and hard must be numbers, soft <= hard")
        rlimits.append((RLIMITS[kind], soft, hard))
    oom = _get(raw, "oomScoreAdj", int, None, where)
    if oom is not None and not -1000 <= oom <= 1000:  # OOM_SCORE_ADJ_MIN .. _MAX, proc(5)
        raise MinirunError(f"config.json: {where}oomScoreAdj {oom}: a number from -1000 to 1000 is needed")
    console = _get(raw, "consoleSize", dict, {}, where)
    del console  # the pty's size is the console socket's holder's business (conmon sets it)
    return Process(
        args=args,
        env=_strings(raw, "env", where),
        cwd=cwd,
        uid=check_user_id(0 if user.get("uid") is None else user["uid"], f"config.json: {where}user.uid"),
        gid=check_user_id(0 if user.get("gid") is None else user["gid"], f"config.json: {where}user.gid"),
        additional_gids=[check_user_id(g, f"config.json: {where}user.additionalGids")
                         for g in _get(user, "additionalGids", list, [], where + "user.")],
        umask=_get(user, "umask", int, None, where + "user."),
        capabilities=caps,
        rlimits=rlimits,
        no_new_privileges=_get(raw, "noNewPrivileges", bool, False, where),
        oom_score_adj=oom,
        terminal=_get(raw, "terminal", bool, False, where),
        apparmor_profile=apparmor,
    )


# What stands in for a missing `process`: the container is created, and `start` refuses to run it.
NO_PROCESS = {"args": ["/"], "cwd": "/"}


def _idmaps(raw: list[Any], key: str) -> list[IdMap]:
    maps = []
    for m in raw:
        if not isinstance(m, dict) or not all(
            isinstance(m.get(k), int) for k in ("containerID", "hostID", "size")
        ):
            raise MinirunError(f"config.json: linux.{key} entries need containerID, hostID and size")
        maps.append(IdMap(m["containerID"], m["hostID"], m["size"]))
    return maps


def _hooks(raw: dict[str, Any]) -> dict[str, list[Hook]]:
    hooks: dict[str, list[Hook]] = {}
    for kind in HOOK_KINDS:
        for h in _get(raw, kind, list, [], "hooks."):
            if not isinstance(h, dict) or not isinstance(h.get("path"), str) or not h["path"].startswith("/"):
                raise MinirunError(f"config.json: hooks.{kind}: each hook needs an absolute path")
            timeout = _get(h, "timeout", int, None, f"hooks.{kind}.")
            if timeout is not None and timeout <= 0:
                raise MinirunError(f"config.json: hooks.{kind}: timeout must be positive")
            hooks.setdefault(kind, []).append(
                Hook(h["path"], _strings(h, "args", "hooks."), _strings(h, "env", "hooks."), timeout)
            )
    return hooks


def load(bundle: str) -> Config:
    """Read BUNDLE/config.json. Every error is one line (exit 125 from the CLI)."""
    bundle = os.path.abspath(bundle)
    try:
        with open(os.path.join(bundle, "config.json")) as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise MinirunError(f"{bundle}/config.json: no such file (is --bundle right?)") from None
    except (OSError, ValueError) as e:
        raise MinirunError(f"{bundle}/config.json: {e}") from None
    if not isinstance(raw, dict):
        raise MinirunError("config.json: the top level must be an object")
    version = _get(raw, "ociVersion", str, "1.0.0", "")
    if not OCI_VERSION.match(version):  # config.md: a SemVer 2.0.0 version of the spec, major 1
        raise MinirunError(f"config.json: unsupported ociVersion {version!r} (this runtime takes 1.x.y)")
    root = _get(raw, "root", dict, {}, "")
    root_path = os.path.join(bundle, _get(root, "path", str, "rootfs", "root."))
    if not os.path.isdir(root_path):
        raise MinirunError(f"root.path {root_path}: not a directory")
    linux = _get(raw, "linux", dict, {}, "")
    refuse_label(_get(linux, "mountLabel", str, "", "linux."), "linux.mountLabel", "selinux")
    namespaces: dict[str, str] = {}
    for ns in _get(linux, "namespaces", list, [], "linux."):
        kind = ns.get("type") if isinstance(ns, dict) else None
        if kind not in NAMESPACE_FLAGS:
            raise MinirunError(f"config.json: unknown namespace type {kind!r}")
        if kind in namespaces:
            raise MinirunError(f"config.json: namespace {kind} is listed twice")
        namespaces[kind] = _get(ns, "path", str, "", "linux.namespaces.")
    mounts = []
    for m in _get(raw, "mounts", list, [], ""):
        if not isinstance(m, dict) or not isinstance(m.get("destination"), str):
            raise MinirunError("config.json: each mount needs a destination")
        if not m["destination"].startswith("/"):
            raise MinirunError(f"config.json: mount destination {m['destination']!r} must be absolute")
        mounts.append(
            Mount(
                m["destination"],
                _get(m, "type", str, "", "mounts."),
                _get(m, "source", str, "", "mounts."),
                _strings(m, "options", "mounts."),
            )
        )
    devices = []
    for d in _get(linux, "devices", list, [], "linux."):
        if (
            not isinstance(d, dict)
            or not isinstance(d.get("path"), str)
            or d.get("type") not in ("c", "b", "u", "p")
        ):
            raise MinirunError("config.json: each linux.devices entry needs a path and a type c, b, u or p")
        devices.append(
            Device(
                d["path"],
                d["type"],
                int(d.get("major", 0)),
                int(d.get("minor", 0)),
                d.get("fileMode"),
                d.get("uid"),
                d.get("gid"),
            )
        )
    uid_maps = _idmaps(_get(linux, "uidMappings", list, [], "linux."), "uidMappings")
    gid_maps = _idmaps(_get(linux, "gidMappings", list, [], "linux."), "gidMappings")
    if (uid_maps or gid_maps) and "user" not in namespaces:
        raise MinirunError("config.json: uidMappings/gidMappings need a user namespace")
    hostname = _get(raw, "hostname", str, None, "")
    if hostname and "uts" not in namespaces:
        raise MinirunError("config.json: hostname needs a new uts namespace")
    sysctl = _get(linux, "sysctl", dict, {}, "linux.")
    propagation = _get(linux, "rootfsPropagation", str, "", "linux.")
    if propagation not in (
        "",
        "private",
        "rprivate",
        "slave",
        "rslave",
        "shared",
        "rshared",
        "unbindable",
        "runbindable",
    ):
        raise MinirunError(f"config.json: unknown linux.rootfsPropagation {propagation!r}")
    return Config(
        bundle=bundle,
        root=root_path,
        root_readonly=_get(root, "readonly", bool, False, "root."),
        process=parse_process(raw.get("process") or NO_PROCESS),
        has_process=raw.get("process") is not None,
        hostname=hostname,
        mounts=mounts,
        namespaces=namespaces,
        uid_mappings=uid_maps,
        gid_mappings=gid_maps,
        devices=devices,
        cgroups_path=_get(linux, "cgroupsPath", str, None, "linux."),
        resources=_get(linux, "resources", dict, {}, "linux."),
        seccomp=_get(linux, "seccomp", dict, None, "linux."),
        masked_paths=_strings(linux, "maskedPaths", "linux."),
        readonly_paths=_strings(linux, "readonlyPaths", "linux."),
        sysctl={str(k): str(v) for k, v in sysctl.items()},
        rootfs_propagation=propagation,
        hooks=_hooks(_get(raw, "hooks", dict, {}, "")),
        annotations={str(k): str(v) for k, v in _get(raw, "annotations", dict, {}, "").items()},
    )
