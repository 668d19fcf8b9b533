"""Capabilities, seccomp, no_new_privs, --read-only and --tmpfs as a container sees them."""

import json
import subprocess
import tempfile
from pathlib import Path

import pytest
from helpers import IMAGE, Tier, one_line_error

DOCKER_DEFAULT = "00000000a80425fb"


def status(minirun: Tier, *flags: str) -> dict[str, str]:
    """The container's /proc/self/status, as a dict (CapEff, Seccomp, NoNewPrivs, ...)."""
    result = minirun(["run", "--rm", "--network", "none", *flags, IMAGE, "cat", "/proc/self/status"], check=0)
    return {k: v.strip() for k, _, v in (line.partition(":") for line in result.stdout.splitlines())}


def sh(minirun: Tier, script: str, *flags: str) -> "subprocess.CompletedProcess[str]":
    return minirun(["run", "--rm", "--network", "none", *flags, IMAGE, "sh", "-c", script])


def test_default_is_dockers_set_and_seccomp(minirun: Tier) -> None:
    s = status(minirun)
    assert (s["CapEff"], s["CapPrm"], s["CapBnd"]) == (DOCKER_DEFAULT,) * 3
    assert (s["CapInh"], s["CapAmb"]) == ("0000000000000000",) * 2
    assert s["Seccomp"] == "2", "filter mode"
    assert s["NoNewPrivs"] == "0", "off by default, as in docker"


def test_cap_add_and_drop(minirun: Tier) -> None:
    # CAP_SYS_ADMIN is bit 21 (0x200000); CAP_NET_RAW bit 13 (0x2000); CAP_CHOWN bit 0.
    assert status(minirun, "--cap-add", "SYS_ADMIN")["CapBnd"] == "00000000a82425fb"
    assert status(minirun, "--cap-drop", "net_raw", "--cap-drop", "CAP_CHOWN")["CapEff"] == "00000000a80405fa"
    none = status(minirun, "--cap-drop", "ALL")
    assert (none["CapEff"], none["CapBnd"]) == ("0000000000000000",) * 2
    assert status(minirun, "--cap-drop", "ALL", "--cap-add", "KILL")["CapBnd"] == "0000000000000020"
    assert status(minirun, "--cap-add", "ALL")["CapBnd"] == "000001ffffffffff"


def test_non_root_user_has_no_effective_capabilities(minirun: Tier) -> None:
    s = status(minirun, "--user", "1000")
    assert (s["CapEff"], s["CapPrm"], s["CapAmb"]) == ("0000000000000000",) * 3
    assert s["CapBnd"] == DOCKER_DEFAULT
    assert s["Uid"].split()[0] == "1000"


def test_ping_needs_net_raw(minirun: Tier) -> None:
    # Seed 004's lab: ping opens a raw socket, which needs CAP_NET_RAW (in docker's default set).
    ok = sh(minirun, "ping -c 1 -W 5 127.0.0.1")
    assert ok.returncode == 0, ok.stderr
    dropped = sh(minirun, "ping -c 1 -W 5 127.0.0.1", "--cap-drop", "NET_RAW")
    assert dropped.returncode != 0 and "permission denied" in dropped.stderr.lower()


def test_setuid_and_no_new_privileges(minirun: Tier) -> None:
    # Seed 004's setuid lab: a plain user cannot ping (no CAP_NET_RAW), a setuid-root busybox
    # can (execve makes its euid root, which holds the capability), unless no_new_privs is set:
    # then execve ignores the setuid bit.
    setup = "mkdir /tmp/s && cp /bin/busybox /tmp/s/busybox && chmod 4755 /tmp/s/busybox && "
    ping = "su -s /bin/sh nobody -c '{} ping -c 1 -W 5 127.0.0.1'"
    plain = sh(minirun, ping.format("/bin/busybox"))
    assert plain.returncode != 0 and "permission denied" in plain.stderr
    assert sh(minirun, setup + ping.format("/tmp/s/busybox")).returncode == 0
    nnp = sh(minirun, setup + ping.format("/tmp/s/busybox"), "--security-opt", "no-new-privileges")
    assert nnp.returncode != 0 and "permission denied" in nnp.stderr
    assert status(minirun, "--security-opt", "no-new-privileges")["NoNewPrivs"] == "1"
    assert status(minirun, "--security-opt", "no-new-privileges", "--user", "1000")["Seccomp"] == "2"


def test_seccomp_unconfined_and_a_custom_profile(minirun: Tier) -> None:
    assert status(minirun, "--security-opt", "seccomp=unconfined")["Seccomp"] == "0"
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat", "no_such_syscall_minirun"],
                             "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(profile, f)
        f.flush()
        Path(f.name).chmod(0o644)
        result = sh(minirun, "mkdir /tmp/x", "--security-opt", f"seccomp={f.name}")
    assert result.returncode != 0 and "Permission denied" in result.stderr, "errno 13 = EACCES"


def test_read_only_root_with_tmpfs(minirun: Tier) -> None:
    result = sh(minirun, "touch /root-file", "--read-only")
    assert result.returncode != 0 and "Read-only file system" in result.stderr
    out = sh(minirun, "echo hi > /tmp/f && cat /tmp/f && grep ' /tmp ' /proc/self/mountinfo",
             "--read-only", "--tmpfs", "/tmp", "--tmpfs", "/run:size=1m,mode=755")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("hi\n") and "tmpfs" in out.stdout and "nosuid,nodev,noexec" in out.stdout
    run = sh(minirun, "stat -c %a /run; grep ' /run ' /proc/self/mountinfo",
             "--tmpfs", "/run:size=1m,mode=755,exec")
    assert run.stdout.startswith("755\n") and "noexec" not in run.stdout and "size=1024k" in run.stdout


@pytest.mark.parametrize("flags", [
    ["--cap-add", "NOT_A_CAP"],
    ["--cap-drop", ""],
    ["--security-opt", "seccomp=/nonexistent/profile.json"],
    ["--security-opt", "apparmor=unconfined"],
    ["--tmpfs", "relative/path"],
    ["--userns", "private"],
])
def test_bad_security_flags(minirun: Tier, flags: list[str]) -> None:
    result = minirun(["run", "--rm", *flags, IMAGE, "true"], check=125)
    assert one_line_error(result)
