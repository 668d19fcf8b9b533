"""The import budget of `minirun run` (issue 14): which modules one real start loads, read from
`python -X importtime` of that run, as root and as the rootless user, with --network none and,
as root, on the default bridge.

Start-up time is a feature (README, "Start-up time"): a change that pulls a heavy module onto the
start path fails here, with the module and the chain of imports that brought it. No time is
asserted (a busy machine is not the code's fault); only *which* modules load. The interpreter's
own start (`python -c pass`: site, sitecustomize, a distribution's hooks) is not minirun's and
is taken out first.

To allow a module, add it below with the reason it must be on the start path.
"""

import subprocess

import pytest
from helpers import IMAGE, Tier

# Top-level names (`json` for json.decoder too) that a --network none start may load.
ALLOWED = frozenset({
    # the command line: argparse, which brings re and gettext (whose lookups bring locale, errno)
    "argparse", "gettext", "locale", "_locale", "errno", "re", "_sre", "copyreg", "warnings",
    "runpy",  # `python -m minirun`, as the tests start it (the console script does not)
    # the language's plumbing minirun's code uses
    "contextlib", "gc", "importlib", "typing", "_typing", "collections", "_collections", "functools",
    "_functools", "operator", "_operator", "itertools", "keyword", "reprlib", "types", "weakref",
    "_weakrefset", "enum", "math", "time",
    # records and plans: json; paths: pathlib (which brings urllib.parse, and ipaddress with it, and
    # probes for Windows' modules: nt, ntpath, _winapi)
    "json", "_json", "pathlib", "urllib", "ipaddress", "fnmatch", "glob", "nt", "ntpath", "_winapi",
    # the kernel: ctypes (kernel.py), sockets and fds (sync.py, monitor.py), signals, ttys, ids
    "ctypes", "_ctypes", "struct", "_struct", "socket", "_socket", "array", "select", "selectors",
    "signal", "_signal", "fcntl", "termios", "tty", "pwd", "zlib",
    "minirun",
})
# Running a program: subprocess (and threading with it), shutil.which to find it (shutil brings bz2
# and lzma). slirp4netns runs its program so (slirp.py). Rootless runs newuidmap and newgidmap
# with os.posix_spawnp and finds them with fsutil.on_path (userns.py), the bridge nft with
# os.posix_spawn (nat.py), so neither a --network none start nor a bridge one loads these.
NOT_WITHOUT_A_PROGRAM = ("subprocess", "threading", "shutil", "bz2", "lzma")
# minirun's own modules that a plain start must never load: pulls and archives, other networks.
NOT_ON_RUN = ("minirun.images.pull", "minirun.images.registry", "minirun.images.tarball",
              "minirun.images.offline", "minirun.probes", "minirun.commands.doctor")
# Never on a start: `dataclasses` imports inspect (ast, dis, tokenize: ~8 ms) and writes each class
# with exec at import (~1 ms a large one); plans are typing.NamedTuple, the record state.Fields.
NEVER = ("dataclasses", "inspect", "ast", "dis", "tokenize")
NOT_WITHOUT_BRIDGE = ("minirun.network.bridge", "minirun.network.nat", "minirun.network.netlink",
                      "minirun.network.leases", "minirun.network.slirp")


def imported(tier: Tier, args: list[str]) -> dict[str, str]:
    """module -> the module that imported it ("" at the top), from `python -X importtime ARGS`.
    importtime prints a module after the modules it imported, one level deeper."""
    python = tier.prefix.index("-m") - 1
    argv = [*tier.prefix[:python + 1], "-X", "importtime", *tier.prefix[python + 1:], *args]
    result = subprocess.run(argv, env=tier.env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return parents(result.stderr)


def parents(stderr: str) -> dict[str, str]:
    found: dict[str, str] = {}
    waiting: list[tuple[int, str]] = []  # (depth, module) whose importer is not printed yet
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        name = line.split("|", 2)[2]
        depth = len(name) - len(name.lstrip())
        name = name.strip()
        while waiting and waiting[-1][0] > depth:
            found[waiting.pop()[1]] = name
        waiting.append((depth, name))
    for _, name in waiting:
        found.setdefault(name, "")
    return found


def interpreter_only(tier: Tier) -> set[str]:
    python = tier.prefix.index("-m") - 1
    argv = [*tier.prefix[:python + 1], "-X", "importtime", "-c", "pass"]
    result = subprocess.run(argv, env=tier.env, capture_output=True, text=True, timeout=120, check=True)
    return set(parents(result.stderr))


def over_budget(modules: dict[str, str], baseline: set[str], allowed: frozenset[str]) -> list[str]:
    """Each module outside the budget, with the chain that imported it."""
    def chain(name: str) -> str:
        links = [name]
        while (name := modules.get(name, "")) and len(links) < 12:
            links.append(name)
        return " <- ".join(links)
    return [chain(m) for m in sorted(modules) if m not in baseline and m.split(".")[0] not in allowed]


def test_network_none_start_loads_only_its_budget(minirun: Tier) -> None:
    args = ["run", "--rm", "--network", "none", IMAGE, "true"]
    minirun(args, check=0)  # the seccomp filter is compiled once per store (pyseccomp): not measured
    modules = imported(minirun, args)
    assert "minirun.runtime" in modules and "minirun.monitor" in modules, sorted(modules)
    assert over_budget(modules, interpreter_only(minirun), ALLOWED) == []
    never = (*NOT_ON_RUN, *NOT_WITHOUT_BRIDGE, *NEVER, *NOT_WITHOUT_A_PROGRAM)
    assert [m for m in never if m in modules] == []
    assert "pyseccomp" not in modules and "pyroute2" not in modules


@pytest.mark.root
def test_bridge_start_loads_only_its_budget(root_minirun: Tier) -> None:
    """The default network as root: netlink over the standard library's socket, nft as a program
    started with posix_spawn."""
    args = ["run", "--rm", IMAGE, "true"]
    root_minirun(args, check=0)
    modules = imported(root_minirun, args)
    assert "minirun.network.netlink" in modules, sorted(modules)
    assert over_budget(modules, interpreter_only(root_minirun), ALLOWED) == []
    assert [m for m in (*NOT_ON_RUN, *NEVER, *NOT_WITHOUT_A_PROGRAM) if m in modules] == []
    assert "pyroute2" not in modules
