"""seccomp: a list of the system calls the container may make, enforced by the kernel.

A seccomp filter is a small BPF program the kernel runs on every system call of the process
(seccomp(2)): it looks at the call's number and its arguments and returns ALLOW, ERRNO(n),
KILL, ... minirun reads profiles in Docker's JSON format and builds the filter with
libseccomp (through pyseccomp), which turns names into numbers for each architecture and
compiles the rules into BPF.

The default profile (minirun/profiles/seccomp-default.json) is Docker's: every call fails with
EPERM unless listed; the dangerous ones (mount, unshare, setns, bpf, perf_event_open,
kexec_load, init_module, reboot, keyctl, ...) are allowed only when the matching capability
was added; clone(2) only without CLONE_NEW* flags; clone3(2) returns ENOSYS, because its flags
are in memory that seccomp cannot read, and libc then falls back to clone(2).

Names the installed libseccomp does not know (calls newer than it) are skipped, as Docker
does. The parent compiles the filter (or finds it in its cache) before clone; the child only
hands the BPF program to the kernel (kernel.seccomp_set_filter), so pyseccomp is imported
only when a profile is compiled for the first time.
"""

import contextlib
import errno
import glob
import os
import zlib
from pathlib import Path
from typing import Any

from minirun.errors import MinirunError

DEFAULT_PROFILE = str(Path(__file__).resolve().parent.parent / "profiles" / "seccomp-default.json")

# Docker's arch names in "includes"/"excludes", for the machine we run on (uname -m).
DOCKER_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "x86", "armv7l": "arm"}
ACTIONS = ("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD",
           "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP", "SCMP_ACT_LOG")
OPERATORS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
             "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")


def read_profile(path: str) -> dict[str, Any]:
    """Read and check a profile file; done while parsing flags, so a bad file fails with 125."""
    import json

    try:
        with open(path) as f:
            profile = json.load(f)
    except (OSError, ValueError) as e:
        raise MinirunError(f"cannot read seccomp profile {path}: {e}") from None
    problem = profile_problem(profile)
    if problem is not None or not isinstance(profile, dict):
        raise MinirunError(f"invalid seccomp profile {path}: {problem}")
    return profile


def profile_problem(profile: Any) -> str | None:
    """What is wrong with the shape of a profile in Docker's format, or None.

    Checked in full here, so that compiling it (build) can trust every field it reads."""
    def strings(value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)

    def conditions(value: Any) -> bool:  # "includes" / "excludes"
        return isinstance(value, dict) and all(strings(value.get(k, [])) for k in ("caps", "arches")) \
            and isinstance(value.get("minKernel", ""), str)

    if not isinstance(profile, dict) or "defaultAction" not in profile:
        return "no defaultAction"
    if not isinstance(profile.get("defaultErrnoRet", 0), int):
        return "defaultErrnoRet must be a number"
    archmap = profile.get("archMap") or []
    if not isinstance(archmap, list) or not all(
            isinstance(e, dict) and isinstance(e.get("architecture", ""), str)
            and strings(e.get("subArchitectures") or []) for e in archmap):
        return "archMap must list {architecture, subArchitectures}"
    rules = profile.get("syscalls") or []
    if not isinstance(rules, list):
        return "syscalls must be a list"
    actions = [r["action"] for r in rules if isinstance(r, dict) and "action" in r]
    for action in [profile["defaultAction"], *actions]:
        if action not in ACTIONS:
            return f"action {action} is not supported"
    for rule in rules:
        if not isinstance(rule, dict):
            return "each rule must be an object"
        names = rule.get("names") or ([rule["name"]] if "name" in rule else [])
        if not names or not strings(names) or "action" not in rule:
            return "a rule needs names and an action"
        if not isinstance(rule.get("errnoRet", 0), int):
            return "errnoRet must be a number"
        if not conditions(rule.get("includes") or {}) or not conditions(rule.get("excludes") or {}):
            return "includes/excludes must be {caps, arches, minKernel}"
        args = rule.get("args") or []
        if not isinstance(args, list):
            return "args must be a list"
        for arg in args:
            if not isinstance(arg, dict) or arg.get("op") not in OPERATORS:
                return f"unknown operator {arg.get('op') if isinstance(arg, dict) else arg!r}"
            numbers = (arg.get("index"), arg.get("value"), arg.get("valueTwo", 0))
            if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
                return "an argument needs index and value as numbers"
            if not 0 <= arg["index"] <= 5:  # a system call has at most six arguments
                return "an argument's index must be 0 to 5"
    return None


def _kernel_at_least(version: str) -> bool:
    def numbers(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split("-")[0].split(".")[:2] if p.isdigit())
    return numbers(os.uname().release) >= numbers(version)


def applies(rule: dict[str, Any], caps: frozenset[str]) -> bool:
    """Docker's conditions on a rule: only with (includes) or without (excludes) these
    capabilities, on these architectures, from this kernel version."""
    arch = DOCKER_ARCH.get(os.uname().machine, os.uname().machine)
    includes, excludes = rule.get("includes") or {}, rule.get("excludes") or {}
    if includes.get("caps") and not set(includes["caps"]) <= caps:
        return False
    if includes.get("arches") and arch not in includes["arches"]:
        return False
    if includes.get("minKernel") and not _kernel_at_least(includes["minKernel"]):
        return False
    if excludes.get("caps") and set(excludes["caps"]) & caps:
        return False
    return not (excludes.get("arches") and arch in excludes["arches"])


def build(profile: dict[str, Any], caps: frozenset[str]) -> Any:
    """A pyseccomp SyscallFilter for `profile`, for a process holding `caps`."""
    try:
        import pyseccomp as sc  # type: ignore[import-untyped]
    except ImportError:  # also when libseccomp.so.2 itself is missing
        raise MinirunError("compiling the seccomp profile needs pyseccomp and libseccomp2 (install.sh "
                           "installs them), or run with --security-opt seccomp=unconfined") from None

    def action(name: str, errno_ret: int | None) -> int:
        actions = {"SCMP_ACT_ALLOW": sc.ALLOW, "SCMP_ACT_KILL": sc.KILL, "SCMP_ACT_KILL_THREAD": sc.KILL,
                   "SCMP_ACT_KILL_PROCESS": sc.KILL_PROCESS, "SCMP_ACT_TRAP": sc.TRAP, "SCMP_ACT_LOG": sc.LOG}
        if name == "SCMP_ACT_ERRNO":
            return int(sc.ERRNO(errno.EPERM if errno_ret is None else errno_ret))
        return int(actions[name])  # read_profile accepted only these

    default_errno = profile.get("defaultErrnoRet")
    default = action(profile["defaultAction"], default_errno)
    f = sc.SyscallFilter(default)
    # Docker's archMap: also filter the 32-bit calls of this machine (int 0x80 on x86_64), so
    # that 32-bit programs work and cannot bypass the filter through the other table.
    native = os.uname().machine
    for entry in profile.get("archMap") or []:
        if entry.get("architecture", "").removeprefix("SCMP_ARCH_").lower() == native.lower():
            for sub in entry.get("subArchitectures") or []:
                arch = getattr(sc.Arch, sub.removeprefix("SCMP_ARCH_"), None)
                if arch is not None and not f.exist_arch(arch):
                    f.add_arch(arch)
    ops = {name: getattr(sc, name.removeprefix("SCMP_CMP_")) for name in OPERATORS}
    for rule in profile.get("syscalls") or []:
        if not applies(rule, caps):
            continue
        rule_action = action(rule["action"], rule.get("errnoRet", default_errno))
        if rule_action == default:
            continue  # libseccomp refuses a rule that does what the default already does
        args = [sc.Arg(a["index"], ops[a["op"]], a["value"], a.get("valueTwo", 0))
                for a in rule.get("args") or []]
        for name in rule.get("names") or [rule["name"]]:
            if sc.resolve_syscall(sc.Arch.NATIVE, name) == -1:
                continue  # unknown to this libseccomp: skipped, as Docker does
            f.add_rule(rule_action, name, *args)
    return f


def _libseccomp_version() -> str:
    """The real file name of libseccomp.so.2 (e.g. libseccomp.so.2.5.4): a new libseccomp may
    compile the same profile differently (new system call names), so it is part of the key."""
    for pattern in ("/usr/lib/*/libseccomp.so.2", "/lib/*/libseccomp.so.2", "/usr/lib64/libseccomp.so.2",
                    "/usr/lib/libseccomp.so.2"):
        for path in glob.glob(pattern):
            return os.path.realpath(path)
    return "unknown"


def compiled(path: str, caps: frozenset[str], cache_dir: Path) -> bytes:
    """The profile compiled to BPF for `caps`, from the cache when it was compiled before.

    Building the filter costs ~60 ms (importing pyseccomp ~35 ms, adding ~350 rules ~25 ms,
    compiling ~10 ms) against under 1 ms to read the result: so it is compiled once per profile,
    capability set, libseccomp and kernel version, and kept in the store as seccomp/KEY.bpf next
    to KEY.key, the exact inputs it was compiled from. A cached filter is used only if those
    match byte for byte, so a checksum collision can never load the wrong filter.
    """
    material = b"\0".join([Path(path).read_bytes(), ",".join(sorted(caps)).encode(),
                           os.uname().machine.encode(), os.uname().release.encode(),
                           _libseccomp_version().encode()])
    key = f"{zlib.crc32(material):08x}-{len(material)}"
    cached, inputs = cache_dir / f"{key}.bpf", cache_dir / f"{key}.key"
    with contextlib.suppress(OSError):
        if inputs.read_bytes() == material:
            return cached.read_bytes()
    import tempfile

    bpf_filter = build(read_profile(path), caps)
    cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for target, write in ((cached, bpf_filter.export_bpf), (inputs, lambda f: f.write(material))):
        with tempfile.NamedTemporaryFile(dir=cache_dir, delete=False) as tmp:
            write(tmp)
        os.replace(tmp.name, target)  # atomic: a concurrent run sees the old file or the new one
    return cached.read_bytes()
