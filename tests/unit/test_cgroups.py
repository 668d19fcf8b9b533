"""Resource limit flags and the cgroup drivers' arithmetic (no privilege, no cgroup touched).

What the limits *do* is tested against the kernel in tests/root/test_limits.py; here: docker's
units and minimums, and how one limit becomes v1 and v2 file values.
"""

import os
from pathlib import Path

import pytest

from minirun import cgroups
from minirun.cgroups import V1, V2, shares_to_weight
from minirun.errors import MinirunError
from minirun.spec import Limits, online_nodes, parse_limits, parse_size

MiB = 1024 * 1024


@pytest.mark.parametrize(("text", "size"), [
    ("64m", 64 * MiB), ("64M", 64 * MiB), ("64mb", 64 * MiB), ("64MiB", 64 * MiB), ("1g", 1024 * MiB),
    ("512k", 512 * 1024), ("1.5g", 1536 * MiB), ("7000000", 7000000), ("100b", 100),
])
def test_sizes_use_dockers_binary_units(text: str, size: int) -> None:
    assert parse_size("--memory", text) == size


@pytest.mark.parametrize(("flags", "message"), [
    ({"memory": "abc"}, "--memory"),
    ({"memory": "-5m"}, "--memory"),
    ({"memory": "1m"}, "minimum"),
    ({"memory": "64m", "memory_swap": "32m"}, "--memory-swap"),
    ({"memory_swap": "64m"}, "--memory"),
    ({"cpus": "-1"}, "--cpus"),
    ({"cpus": "0"}, "--cpus"),
    ({"cpus": "half"}, "--cpus"),
    ({"cpus": str((os.cpu_count() or 1) + 1)}, "--cpus"),
    ({"cpu_shares": "1"}, "--cpu-shares"),
    ({"cpu_shares": "300000"}, "--cpu-shares"),
    ({"cpuset_cpus": "0-"}, "--cpuset-cpus"),
    ({"cpuset_cpus": "1-0"}, "--cpuset-cpus"),
    ({"cpuset_cpus": "4096"}, "not available"),
    ({"cpuset_cpus": "0\n"}, "--cpuset-cpus"),
    ({"cpuset_mems": "a"}, "--cpuset-mems"),
    ({"cpuset_mems": "1-0"}, "backwards"),
    ({"cpuset_mems": "0-99999999999"}, "memory nodes are not available"),
    ({"cpuset_mems": str(max(online_nodes()) + 1)}, "memory nodes are not available"),
    ({"pids_limit": "many"}, "--pids-limit"),
])
def test_bad_limits_are_one_clear_error(flags: dict[str, str], message: str) -> None:
    with pytest.raises(MinirunError) as e:
        parse_limits(**flags)
    assert message in str(e.value)
    assert e.value.code == 125


def test_good_limits() -> None:
    limits = parse_limits(memory="32m", cpus="0.5", cpu_shares="512", cpuset_cpus="0", pids_limit="20",
                          cpuset_mems="0")
    assert limits == Limits(32 * MiB, None, 0.5, 512, "0", "0", 20)
    assert limits.controllers() == ["memory", "cpu", "cpuset", "pids"]
    assert Limits(cpuset_mems="0").controllers() == ["cpuset"]
    assert Limits().controllers() == []
    assert parse_limits(memory="32m", memory_swap="-1").memory_swap == -1


def files(driver: V1 | V2, limits: Limits) -> dict[str, str]:
    return {name: value for c in limits.controllers() for name, value in driver.limit_files(c, limits)}


def test_cpuset_mems_is_written_on_both_versions() -> None:
    for driver in (V1(), V2()):
        assert files(driver, Limits(cpuset_mems="0")) == {"cpuset.mems": "0"}
        both = files(driver, Limits(cpuset_cpus="1", cpuset_mems="0"))
        assert both == {"cpuset.cpus": "1", "cpuset.mems": "0"}


def test_memory_swap_defaults_to_twice_memory_like_docker() -> None:
    limits = Limits(memory=32 * MiB)
    assert files(V1(), limits)["memory.memsw.limit_in_bytes"] == str(64 * MiB)  # memory + swap
    assert files(V2(), limits)["memory.swap.max"] == str(32 * MiB)  # swap alone
    unlimited = Limits(memory=32 * MiB, memory_swap=-1)
    assert files(V1(), unlimited)["memory.memsw.limit_in_bytes"] == "-1"
    assert files(V2(), unlimited)["memory.swap.max"] == "max"
    no_swap = Limits(memory=32 * MiB, memory_swap=32 * MiB)
    assert files(V2(), no_swap)["memory.swap.max"] == "0"


def test_v1_memory_limit_is_written_before_memsw() -> None:
    names = [n for n, _ in V1().limit_files("memory", Limits(memory=32 * MiB))]
    assert names == ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]


def test_cpus_become_a_quota_per_period() -> None:
    assert files(V2(), Limits(cpus=0.5))["cpu.max"] == "50000 100000"
    v1 = files(V1(), Limits(cpus=1.5))
    assert (v1["cpu.cfs_quota_us"], v1["cpu.cfs_period_us"]) == ("150000", "100000")


def test_cpu_shares_map_onto_v2_weight() -> None:
    assert shares_to_weight(2) == 1
    assert shares_to_weight(262144) == 10000
    assert shares_to_weight(1024) == 39  # runc's and crun's value for docker's default
    assert files(V2(), Limits(cpu_shares=1024))["cpu.weight"] == "39"


def test_pids_limit_zero_or_negative_is_unlimited() -> None:
    assert files(V1(), Limits(pids=20))["pids.max"] == "20"
    assert files(V2(), Limits(pids=-1))["pids.max"] == "max"


def run_device_program(program: bytes, kind: str, access: str, major: int, minor: int) -> int:
    """Interpret the few eBPF instructions cgroups.device_program uses, on one device access
    (what the kernel's BPF_CGROUP_DEVICE hook would pass it): returns what the program returns."""
    import struct

    ctx = [({"b": 1, "c": 2}[kind]) | sum({"m": 1, "r": 2, "w": 4}[a] for a in access) << 16, major, minor]
    regs = [0] * 11
    pc = 0
    while True:
        code, registers, off, imm = struct.unpack_from("<BBhi", program, pc * 8)
        dst, src = registers & 0xF, registers >> 4
        pc += 1
        if code == 0x61:  # ldx u32 from the context (r1 points to it)
            regs[dst] = ctx[off // 4]
        elif code == 0xBF:
            regs[dst] = regs[src]
        elif code == 0xB7:
            regs[dst] = imm
        elif code == 0x57:
            regs[dst] &= imm & 0xFFFFFFFFFFFFFFFF
        elif code == 0x77:
            regs[dst] >>= imm
        elif code == 0x55:
            if regs[dst] != imm:
                pc += off
        elif code == 0x95:
            return regs[0]
        else:
            raise AssertionError(f"unexpected instruction {code:#x}")


@pytest.mark.parametrize(("kind", "access", "major", "minor", "allowed"), [
    ("c", "rw", 1, 3, 1),    # /dev/null
    ("c", "rwm", 136, 7, 1),  # a pty
    ("c", "m", 4, 1, 1),     # mknod of anything
    ("b", "m", 8, 0, 1),
    ("b", "r", 8, 0, 0),     # reading a disk
    ("c", "r", 10, 259, 0),  # /dev/cpu_dma_latency
    ("c", "rw", 10, 200, 1),  # /dev/net/tun
    ("c", "w", 10, 201, 0),
    ("b", "rw", 1, 3, 0),    # a block device with /dev/null's numbers
])
def test_device_program_is_the_allowlist(kind: str, access: str, major: int, minor: int,
                                         allowed: int) -> None:
    from minirun.cgroups import DEVICE_ALLOWLIST, device_program

    assert run_device_program(device_program(DEVICE_ALLOWLIST), kind, access, major, minor) == allowed


def test_cpuset_preparation_is_for_v1_directories_only(tmp_path: Path) -> None:
    """A v2 cgroup has an empty cpuset.cpus too, which means "the parent's"; the v2 root has no
    cpuset.cpus to copy. Treating it as v1 broke every rootful container after the first on
    systemd hosts (issue 10). Plain files here: the kernel-side test is the VM tier's."""
    v2 = tmp_path / "v2" / "minirun"
    v2.mkdir(parents=True)
    (v2 / "cgroup.controllers").write_text("cpuset cpu memory pids\n")
    (v2 / "cpuset.cpus").write_text("\n")
    cgroups.prepare_v1_cpuset(v2)  # the parent (the "root") has no cpuset.cpus: nothing to do
    assert (v2 / "cpuset.cpus").read_text() == "\n"
    v1 = tmp_path / "cpuset" / "minirun"
    v1.mkdir(parents=True)
    for name, value in (("cpuset.cpus", "0-1\n"), ("cpuset.mems", "0\n")):
        (v1.parent / name).write_text(value)
        (v1 / name).write_text("\n")
    cgroups.prepare_v1_cpuset(v1)
    assert ((v1 / "cpuset.cpus").read_text(), (v1 / "cpuset.mems").read_text()) == ("0-1\n", "0\n")
