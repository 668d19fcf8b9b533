"""`minirun run --explain` / `exec --explain`: what each step of a start did, as it happens.

trace.mark(PHASE, SIDE, **facts) is called at every step boundary, on both sides of the
clone(2); with --explain it calls narrate() here, which prints the step, how long it took, what
it did with the real values (read back from the kernel where the kernel shows them: the child's
/proc/PID/uid_map, /proc/self/mountinfo, /proc/self/status) and the man page to read. The child
decides nothing (its plan was frozen before clone): it only reports what it did, on a
close-on-exec copy of minirun's stderr that it inherited (trace.explain_on), so its lines reach
the user even once its own 0, 1, 2 are the container's, and never the container's command. Both
sides write whole lines with one write(2) each, so their lines do not mix.

This module is imported only with --explain (tests/unit/test_explain.py checks it).
"""

import contextlib
import errno
import os
from collections.abc import Callable, Mapping

# Imported now, not when needed: exec's helper narrates after setns(2) into the container's
# mount namespace, where minirun's files are not there to import.
from minirun.security import capabilities, seccomp

Facts = Mapping[str, object]

# clone(2)'s namespace flags, in the order namespaces(7) lists them.
CLONE_FLAGS = (
    ("CLONE_NEWUSER", 0x10000000),
    ("CLONE_NEWPID", 0x20000000),
    ("CLONE_NEWNS", 0x00020000),
    ("CLONE_NEWNET", 0x40000000),
    ("CLONE_NEWUTS", 0x04000000),
    ("CLONE_NEWIPC", 0x08000000),
    ("CLONE_NEWCGROUP", 0x02000000),
)

# The files cgroups.apply / apply_policy may write (v2, then v1), shown with what they now hold.
LIMIT_FILES = (
    "memory.max",
    "memory.swap.max",
    "pids.max",
    "cpu.max",
    "cpu.weight",
    "cpuset.cpus",
    "cpuset.mems",
    "memory.limit_in_bytes",
    "memory.memsw.limit_in_bytes",
    "cpu.cfs_quota_us",
    "cpu.cfs_period_us",
    "cpu.shares",
)

# seccomp(2): the action in the top 16 bits of a filter's return value.
SECCOMP_ACTIONS = {
    0x80000000: "KILL_PROCESS",
    0x00000000: "KILL_THREAD",
    0x00030000: "TRAP",
    0x00050000: "ERRNO",
    0x7FC00000: "USER_NOTIF",
    0x7FF00000: "TRACE",
    0x7FFC0000: "LOG",
    0x7FFF0000: "ALLOW",
}


def narrate(fd: int, phase: str, side: str, ms: float, facts: Facts) -> None:
    """One step: a head line, then what it did. Never fails the start it describes."""
    say = STEPS.get(phase)
    try:
        lines = say(facts) if say else []
    except Exception as e:  # a narration that cannot read something still says so
        lines = [f"(could not show the details: {e})"]
    text = "".join(
        [f"minirun explain: [{side:6} {ms:+7.1f} ms] {phase}\n", *(f"    {line}\n" for line in lines)]
    )
    with contextlib.suppress(OSError):
        os.write(fd, text.encode(errors="replace"))


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _status(pid: str = "self") -> dict[str, str]:
    """/proc/PID/status as a dict (proc(5))."""
    return dict(line.split(":\t", 1) for line in _read(f"/proc/{pid}/status").splitlines() if ":\t" in line)


def _flag_names(flags: int) -> str:
    return "|".join(name for name, bit in CLONE_FLAGS if flags & bit) or "0"


def _cap_names(mask: int) -> list[str]:
    return [
        name[4:].lower()
        for name, bit in sorted(capabilities.NUMBERS.items(), key=lambda item: item[1])
        if mask >> bit & 1
    ]


def _cap_total() -> int:
    return capabilities.last_cap() + 1


def _mountinfo_entry(mount_point: str) -> tuple[str, str] | None:
    """(file system type, super options) of the last mount at `mount_point` (proc(5), mountinfo)."""
    found = None
    for line in _read("/proc/self/mountinfo").splitlines():
        fields = line.split()
        if fields[4] == mount_point:
            after = fields[fields.index("-") + 1 :]
            found = (after[0], after[2] if len(after) > 2 else "")
    return found


# --- the parent's steps ---------------------------------------------------------------------------


def seccomp_planned(facts: Facts) -> list[str]:
    profile = facts.get("profile")
    caps = facts.get("capabilities")
    bpf = facts.get("bpf")
    if not isinstance(profile, str) or not isinstance(bpf, bytes):
        return ["seccomp: unconfined, no filter will be loaded (--security-opt seccomp=unconfined)"]
    rules = seccomp.read_profile(profile).get("syscalls") or []
    applying = [r for r in rules if isinstance(caps, frozenset) and seccomp.applies(r, caps)]
    default = seccomp.read_profile(profile).get("defaultAction")
    return [
        f"seccomp profile {profile}: defaultAction {default}; {len(applying)} of {len(rules)} rules apply",
        f"to a process with these capabilities; compiled before clone to {len(bpf) // 8} BPF instructions",
        "(seccomp(2), libseccomp): the child only loads it",
    ]


def cgroup_written(facts: Facts) -> list[str]:
    cgroup = facts.get("cgroup")
    paths = getattr(cgroup, "paths", None)
    if not paths:
        return [
            "no cgroup of its own: no cgroup hierarchy here that minirun may write (rootless without",
            "delegation, or a cgroup v1 host): no limits, and the container stays in minirun's cgroup",
        ]
    lines = []
    for path in paths:
        lines.append(f"mkdir {path}; its limit files now hold:")
        for name in LIMIT_FILES:
            with contextlib.suppress(OSError):
                lines.append(f"  {name} = {_read(f'{path}/{name}').strip()}")
    return [*lines, "(the flags' limits are written before the first process moves in; cgroups(7))"]


def cloned(facts: Facts) -> list[str]:
    pid = str(facts["pid"])
    flags = facts.get("flags")
    nspid = _status(pid).get("NSpid", "").split()
    inside = f"PID {nspid[-1]} inside" if len(nspid) > 1 else "in the host's PID namespace"
    return [
        f"clone({_flag_names(flags if isinstance(flags, int) else 0)}): "
        f"the child is host pid {pid} and {inside}",
        '(clone(2), namespaces(7)); it waits on the sync socket for "go"',
    ]


def id_maps(facts: Facts) -> list[str]:
    pid = str(facts["pid"])
    lines = []
    for name in ("uid_map", "gid_map"):
        for line in _read(f"/proc/{pid}/{name}").splitlines():
            lines.append(f"{name}: {' '.join(line.split())}")
    return [
        *lines,
        "inside, outside, count: written by the parent, newuidmap(1) when rootless (user_namespaces(7))",
    ]


def cgroup_joined(facts: Facts) -> list[str]:
    pid = str(facts["pid"])
    v1 = ("the child wrote 0 (itself) to each v1 directory's tasks, opened by the parent"
          if facts.get("v1_joined") else f"echo {pid} > cgroup.procs")
    how = (f"born in its v2 cgroup by clone3(2) with CLONE_INTO_CGROUP (v1 ones: {v1})"
           if facts.get("born_in_v2") else v1)
    lines = [f"{how}: /proc/{pid}/cgroup reads"]
    lines += [f"  {line}" for line in _read(f"/proc/{pid}/cgroup").splitlines()]
    return lines


def v1_cgroups_joined(facts: Facts) -> list[str]:
    return [f"echo 0 > tasks in each of its {facts.get('count')} v1 cgroup directories, through files the "
            "parent opened before clone: a thread that moves itself takes no global lock (Linux 6.0+)"]


def network_connected(facts: Facts) -> list[str]:
    settings = facts.get("settings")
    if not isinstance(settings, Mapping) or not settings.get("IPAddress"):
        return ["no address of its own: network none, host, or another container's namespace"]
    return [
        f"eth0 {settings.get('IPAddress')}/{settings.get('IPPrefixLen', '')} "
        f"gateway {settings.get('Gateway', '')}",
        "a veth pair, one end moved into the child's network namespace (veth(4), network_namespaces(7))",
    ]


def go(_facts: Facts) -> list[str]:
    return ['sync: "go" sent; the child builds its root from the plan frozen before clone']


def started(facts: Facts) -> list[str]:
    return ["the sync socket closed on execve (close-on-exec): the command runs"]


# --- the child's steps ----------------------------------------------------------------------------


def namespace_root(_facts: Facts) -> list[str]:
    cgroup = " ".join(_read("/proc/self/cgroup").split())
    return [
        f"unshare(CLONE_NEWCGROUP) now that it is in its cgroup: /proc/self/cgroup reads {cgroup}",
        "(cgroup_namespaces(7))",
        f"sethostname({os.uname().nodename!r}) (uts_namespaces(7)); lo up (network_namespaces(7))",
    ]


def overlay(facts: Facts) -> list[str]:
    merged = str(facts["merged"])
    entry = _mountinfo_entry(merged)
    if entry is None:
        return [f"no mount at {merged}"]
    options = {k: v for k, _, v in (o.partition("=") for o in entry[1].split(","))}
    bundle = str(facts.get("bundle") or "")
    for key in ("lowerdir", "upperdir", "workdir"):  # mounted from inside the bundle: relative
        options[key] = ":".join(part if part.startswith("/") or not bundle else f"{bundle}/{part}"
                                for part in options.get(key, "").split(":") if part)
    return [
        f'mount("overlay", {merged!r}, "overlay", ...) (mount(2), overlayfs):',
        f"  lowerdir={options.get('lowerdir', '')}  (the image's layers, read-only)",
        f"  upperdir={options.get('upperdir', '')}  (this container's changes)",
        f"  workdir={options.get('workdir', '')}",
    ]


def mounts(facts: Facts) -> list[str]:
    merged = str(facts["merged"]).rstrip("/")
    inside = [
        line.split()[4][len(merged) :]
        for line in _read("/proc/self/mountinfo").splitlines()
        if line.split()[4].startswith(merged + "/")
    ]
    return [
        f"{len(inside)} mounts under the new root: {' '.join(sorted(set(inside)))}",
        "(proc(5), sysfs(5), devpts; masked and read-only paths as docker's)",
    ]


def pivoted(_facts: Facts) -> list[str]:
    entry = _mountinfo_entry("/")
    count = len(_read("/proc/self/mountinfo").splitlines())
    return [
        'pivot_root(".", ".") then umount2(".", MNT_DETACH): the old root is stacked under the',
        f"new one and detached (pivot_root(2)); / is now {entry[0] if entry else '?'}, {count} mounts in all",
    ]


def _seccomp_returns(bpf: bytes) -> str:
    """The actions a filter can return, with how many of its BPF_RET K instructions return each
    (struct sock_filter: u16 code, u8 jt, u8 jf, u32 k; BPF_RET|BPF_K is code 0x06)."""
    counts: dict[str, int] = {}
    for i in range(0, len(bpf) - 7, 8):
        if int.from_bytes(bpf[i : i + 2], "little") == 0x06:
            k = int.from_bytes(bpf[i + 4 : i + 8], "little")
            action = SECCOMP_ACTIONS.get(k & 0xFFFF0000, hex(k))
            if action == "ERRNO":
                action = f"ERRNO({errno.errorcode.get(k & 0xFFFF, k & 0xFFFF)})"
            counts[action] = counts.get(action, 0) + 1
    return ", ".join(f"{action} x{n}" for action, n in counts.items())


def bounded(facts: Facts) -> list[str]:
    status = _status()
    kept = _cap_names(int(status["CapBnd"], 16))
    lines = [
        f"bounding set: {len(kept)} of {_cap_total()} capabilities kept: {', '.join(kept)}",
        "(PR_CAPBSET_DROP for the others; capabilities(7))",
    ]
    security = facts.get("security")
    bpf = facts.get("bpf", getattr(security, "seccomp_filter", None))
    if isinstance(bpf, bytes):
        nnp = facts.get("nnp", getattr(security, "no_new_privileges", False))
        when = " (after the user switch: no_new_privs)" if nnp else ""
        lines.append(
            f"seccomp(SECCOMP_SET_MODE_FILTER){when}: {len(bpf) // 8} BPF instructions; now Seccomp: "
            f"{status.get('Seccomp', '?')} (filter mode), filters: {status.get('Seccomp_filters', '?')}"
        )
        lines.append(f"it returns {_seccomp_returns(bpf)} (seccomp(2))")
    else:
        lines.append("seccomp: unconfined, no filter (seccomp(2))")
    return lines


def switched(_facts: Facts) -> list[str]:
    status = _status()
    effective = _cap_names(int(status["CapEff"], 16))
    uid, gid = status["Uid"].split()[0], status["Gid"].split()[0]
    return [
        f"setresgid/setresuid: uid {uid}, gid {gid} (credentials(7)); "
        f"NoNewPrivs: {status.get('NoNewPrivs', '?')}",
        f"effective capabilities: {len(effective)} of {_cap_total()}: {', '.join(effective) or 'none'}",
        "(capabilities(7): a non-root user keeps none unless a file capability grants some at exec)",
    ]


def executing(facts: Facts) -> list[str]:
    argv = facts.get("argv")
    command = " ".join(str(a) for a in argv) if isinstance(argv, (list, tuple)) else "?"
    preserved = facts.get("preserved")
    kept = "0, 1, 2"
    if isinstance(preserved, int) and preserved:
        kept += f" and 3..{2 + preserved} (--preserve-fds)"
    return [
        f"signals reset, every fd but {kept} close-on-exec (close_range(2)),",
        f"execve({command!r}) (execve(2)): from here on it is the container's command",
    ]


# --- exec ------------------------------------------------------------------------------------------


def exec_joined(facts: Facts) -> list[str]:  # minirun-oci exec's helper
    flags = facts.get("flags")
    cgroup = facts.get("cgroup")
    paths = getattr(cgroup, "paths", ())
    lines = [f"echo {os.getpid()} > {path}/cgroup.procs (cgroups(7))" for path in paths]
    return [
        *lines,
        f"setns(pidfd of PID 1, {_flag_names(flags if isinstance(flags, int) else 0)}): all at once,",
        "the user namespace first (setns(2), Linux 5.8); then clone: the PID namespace is for children",
    ]


def exec_helper(facts: Facts) -> list[str]:
    pid = facts.get("pid")
    if facts.get("born_in_v2"):
        return [f"the helper, host pid {pid}, is born in the container's v2 cgroup: clone3(2) with",
                "CLONE_INTO_CGROUP, from the host's cgroup namespace (no migration, no global lock)"]
    return [f"the helper, host pid {pid}, forked (no v2 cgroup to be born in, or no clone3 here)"]


def exec_in_cgroups(facts: Facts) -> list[str]:
    lines = []
    if facts.get("v1_joined"):
        lines.append(f"wrote 0 (itself) to the tasks file of {facts['v1_joined']} v1 directories "
                     "(minirun opened them)")
    if facts.get("moved_into_v2"):
        lines.append(f"echo {os.getpid()} > cgroup.procs of the v2 directory (not born there)")
    lines.append("/proc/self/cgroup reads (the clone after setns inherits them):")
    lines += [f"  {line}" for line in _read("/proc/self/cgroup").splitlines()]
    return lines


def exec_setns(facts: Facts) -> list[str]:
    flags = facts.get("flags")
    return [
        f"setns(pidfd of PID 1, {_flag_names(flags if isinstance(flags, int) else 0)}): all at once,",
        "the user namespace first (setns(2), Linux 5.8); then clone: the PID namespace is for children",
    ]


def exec_planned(facts: Facts) -> list[str]:
    flags = facts.get("flags")
    security = facts.get("security")
    caps: frozenset[str] = getattr(security, "capabilities", frozenset())
    bpf = getattr(security, "seccomp_filter", None)
    paths = getattr(facts.get("cgroup"), "paths", ())
    filter_ = (
        f"the seccomp filter ({len(bpf) // 8} BPF instructions)" if isinstance(bpf, bytes) else "no seccomp"
    )
    joins = _flag_names(flags if isinstance(flags, int) else 0)
    cgroup = " ".join(str(p) for p in paths) or "none"
    return [
        f"the plan, from the container's record before any fork: join {joins},",
        f"cgroup {cgroup}; {len(caps)} capabilities and {filter_}, as at its start",
    ]


# --- minirun-oci create and start (minirun/oci/; `minirun-oci --explain[=FILE]`) -----------------


def oci_config(facts: Facts) -> list[str]:
    """config.json read into the frozen plan (oci/config.py), before anything exists."""
    cfg = facts["config"]
    proc = getattr(cfg, "process", None)
    spaces: Mapping[str, str] = getattr(cfg, "namespaces", {})
    new = [kind for kind, path in spaces.items() if not path]
    joined = [f"{kind}={path}" for kind, path in spaces.items() if path]
    maps = [f"{m.inside} {m.outside} {m.count}" for m in getattr(cfg, "uid_mappings", [])]
    hooks: Mapping[str, list[object]] = getattr(cfg, "hooks", {})
    return [
        f"bundle {getattr(cfg, 'bundle', '?')}: root {getattr(cfg, 'root', '?')}"
        f"{' (read-only)' if getattr(cfg, 'root_readonly', False) else ''}",
        f"process: {' '.join(getattr(proc, 'args', []))!r} as uid {getattr(proc, 'uid', '?')} "
        f"gid {getattr(proc, 'gid', '?')}, cwd {getattr(proc, 'cwd', '?')}, "
        f"terminal {getattr(proc, 'terminal', False)}",
        f"namespaces: new {', '.join(new) or 'none'}; joined {', '.join(joined) or 'none'}",
        f"uidMappings: {'; '.join(maps) or 'none'} (container host size)",
        f"{len(getattr(cfg, 'mounts', []))} mounts, {len(getattr(cfg, 'masked_paths', []))} masked and "
        f"{len(getattr(cfg, 'readonly_paths', []))} read-only paths, cgroupsPath "
        f"{getattr(cfg, 'cgroups_path', None) or '(none: /minirun-oci/ID)'}",
        "hooks: " + (", ".join(f"{kind} {len(h)}" for kind, h in hooks.items() if h) or "none"),
        "(config.md, config-linux.md): a frozen plan; the child decides nothing",
    ]


def oci_seccomp(facts: Facts) -> list[str]:
    profile = facts.get("seccomp")
    bpf = facts.get("bpf")
    if not isinstance(profile, Mapping) or not isinstance(bpf, bytes):
        return ["linux.seccomp: none, no filter will be loaded"]
    rules = profile.get("syscalls") or []
    names = sum(len(r.get("names") or []) for r in rules if isinstance(r, Mapping))
    return [
        f"linux.seccomp: defaultAction {profile.get('defaultAction')}, {len(rules)} rules naming {names} "
        f"syscalls; compiled before clone to {len(bpf) // 8} BPF instructions",
        "(seccomp(2), libseccomp; minirun/security/seccomp.py): the child only loads it",
    ]


def oci_cgroup(facts: Facts) -> list[str]:
    given = facts.get("cgroups_path")
    resources = facts.get("resources")
    asked = ", ".join(sorted(resources)) if isinstance(resources, Mapping) and resources else "none"
    lines = [f"linux.cgroupsPath {given or '(none)'}: one directory in each hierarchy"]
    if facts.get("systemd"):
        lines.append("--systemd-cgroup: slice:prefix:name made into the path systemd would give the scope,")
        lines.append("written on cgroupfs by minirun itself (no scope asked of systemd over D-Bus)")
    lines += cgroup_written(facts)[:-1]
    return [*lines, f"linux.resources ({asked}) written before the process moves in (cgroups(7))"]


def oci_fifo(facts: Facts) -> list[str]:
    return [
        f"mkfifo {facts.get('fifo')} (0622), kept as an O_PATH fd for the child: the wait",
        "between create and start (fifo(7))",
    ]


def oci_go(_facts: Facts) -> list[str]:
    return ['sync: "go" sent; the child joins and builds from the plan frozen before clone']


def oci_namespaces(facts: Facts) -> list[str]:
    spaces = facts.get("namespaces")
    kinds = list(spaces) if isinstance(spaces, Mapping) else []
    names = {"network": "net", "mount": "mnt"}
    shown = []
    for kind in kinds:
        with contextlib.suppress(OSError):
            shown.append(os.readlink(f"/proc/self/ns/{names.get(kind, kind)}"))
    status = _status()
    lines = [
        f"in its namespaces: {' '.join(shown)}",
        "(namespaces(7): new ones from clone, a path in config.json setns(2)'d, the user namespace first)",
        f"uid {status['Uid'].split()[0]} in its user namespace; /proc/self/cgroup, last line: "
        + _read("/proc/self/cgroup").splitlines()[-1],
    ]
    if isinstance(spaces, Mapping) and spaces.get("cgroup") == "":
        lines.append("unshare(CLONE_NEWCGROUP) once in its cgroup: that is its root (cgroup_namespaces(7))")
    if facts.get("hostname") is not None:
        lines.append(f"sethostname({os.uname().nodename!r}) (uts_namespaces(7))")
    return lines


def oci_mounts(facts: Facts) -> list[str]:
    root = str(facts.get("root", "")).rstrip("/")
    inside = sorted({line.split()[4][len(root):] or "/" for line in _read("/proc/self/mountinfo").splitlines()
                     if line.split()[4] == root or line.split()[4].startswith(root + "/")})
    given = facts.get("mounts")
    count = len(given) if isinstance(given, list) else "?"
    return [
        f"root.path {root} bound onto itself; config.json's {count} mounts in order, each target",
        "resolved inside it (openat2 RESOLVE_IN_ROOT); devices and /dev links; createContainer hooks:",
        f"  {' '.join(inside)}",
        "(mount(2), mount_namespaces(7))",
    ]


def oci_paths(facts: Facts) -> list[str]:
    masked, readonly, sysctl = facts.get("masked"), facts.get("readonly"), facts.get("sysctl")
    written = " ".join(f"{k}={v}" for k, v in sysctl.items()) if isinstance(sysctl, Mapping) else ""
    return [
        f"sysctl (written to /proc/sys before it is read-only): {written or 'none'}",
        f"maskedPaths ({len(masked) if isinstance(masked, list) else 0}): /dev/null or an empty tmpfs "
        "over each, as minirun's own (rootfs.mask_path)",
        f"readonlyPaths ({len(readonly) if isinstance(readonly, list) else 0}): bound onto itself, "
        "remounted read-only (rootfs.read_only_path)",
        f"root.readonly: {facts.get('root_readonly')}",
    ]


def oci_stdio(facts: Facts) -> list[str]:
    links = []
    for fd in (0, 1, 2):
        try:
            links.append(f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            links.append(f"{fd} closed")
    how = "a pty of its devpts, master sent over --console-socket (SCM_RIGHTS, unix(7))" \
        if facts.get("terminal") else "the fds create inherited (conmon's, under podman)"
    return [f"setsid(2); stdio is {how}:", f"  {', '.join(links)}"]


def oci_waiting(facts: Facts) -> list[str]:
    return [
        "set up; the sync socket closes: create sees EOF, writes state.json, --pid-file, exits",
        f'("created"); the child blocks in open({facts.get("fifo")}, O_WRONLY) until start opens it',
        "for reading (fifo(7))",
    ]


def oci_created(facts: Facts) -> list[str]:
    pid = facts.get("pid")
    return [
        f"{facts.get('record')}: pid {pid}, status created; createRuntime hooks: {facts.get('hooks')}",
        f"--pid-file {facts.get('pid_file') or '(none)'}; create exits: its child {pid} is reparented",
        "to the nearest subreaper (conmon under podman, prctl(2) PR_SET_CHILD_SUBREAPER)",
    ]


def oci_opened(_facts: Facts) -> list[str]:
    return ['start opened the fifo: the open returned; wrote "0" (its write end is close-on-exec)']


def oci_prestart(facts: Facts) -> list[str]:
    return [f"prestart hooks: {facts.get('hooks')} (the 1.0 spec's moment: before the program runs)"]


def oci_exec_plan(facts: Facts) -> list[str]:
    proc = facts.get("process")
    bpf = facts.get("bpf")
    caps = getattr(getattr(proc, "capabilities", None), "bounding", None)
    return [
        f"exec into pid {facts.get('pid')} (checked against its start time): join "
        f"{_flag_names(flags if isinstance(flags := facts.get('flags'), int) else 0)}",
        f"process: {' '.join(getattr(proc, 'args', []))!r} as uid {getattr(proc, 'uid', '?')}, "
        f"{len(caps) if caps is not None else 'all'} bounding capabilities, "
        + (f"the container's seccomp filter ({len(bpf) // 8} BPF instructions)" if isinstance(bpf, bytes)
           else "no seccomp"),
    ]


def oci_start(facts: Facts) -> list[str]:
    pid = str(facts["pid"])
    argv = ""
    with contextlib.suppress(OSError):
        argv = " ".join(a for a in _read(f"/proc/{pid}/cmdline").split("\0") if a)
    now = f"pid {pid} now runs {argv!r}" if argv else f"pid {pid} ran, and has exited already"
    return [
        f"open({facts.get('fifo')}, O_RDONLY|O_NONBLOCK), poll: the byte, then EOF when the child's",
        f"execve(2) closed the write end; {now}",
        "the fifo unlinked: state says running; then poststart hooks",
    ]


STEPS: dict[str, Callable[[Facts], list[str]]] = {
    "exec: plan": exec_planned,
    "bundle, /etc files, seccomp filter (compiled or cached)": seccomp_planned,
    "cgroup": cgroup_written,
    "clone": cloned,
    "id maps": id_maps,
    "into its v1 cgroups": v1_cgroups_joined,
    "join cgroup": cgroup_joined,
    "network, record": network_connected,
    "go": go,
    "go (with idmapped layers)": go,
    "exec (waited for the child's set-up)": started,
    "cgroupns, hostname, lo": namespace_root,
    "overlay": overlay,
    "mounts": mounts,
    "pivot_root": pivoted,
    "bounding set, seccomp": bounded,
    "user, capabilities, cwd": switched,
    "signals, fds: exec": executing,
    "exec: cgroup, setns": exec_joined,  # minirun-oci exec
    "exec: helper": exec_helper,
    "exec: into its cgroups": exec_in_cgroups,
    "exec: setns": exec_setns,
    "exec: bounding set, seccomp, user, capabilities": lambda facts: bounded(facts) + switched(facts),
    "exec: execve": executing,
    "oci: config.json": oci_config,
    "oci: seccomp": oci_seccomp,
    "oci: cgroup": oci_cgroup,
    "oci: exec fifo": oci_fifo,
    "oci: go": oci_go,
    "oci: created": oci_created,
    "oci: namespaces": oci_namespaces,
    "oci: mounts": oci_mounts,
    "oci: sysctl, masked and read-only paths": oci_paths,
    "oci: stdio": oci_stdio,
    "oci: capabilities, seccomp, user": lambda facts: bounded(facts) + switched(facts),
    "oci: cwd; the sync socket closes": oci_waiting,
    "oci: start opened the exec fifo": oci_opened,
    "oci: execve": executing,
    "oci: prestart hooks": oci_prestart,
    "oci: start": oci_start,
    "oci: exec plan": oci_exec_plan,
}
