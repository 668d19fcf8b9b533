"""Capability sets, seccomp profiles and the security flags, without starting a container."""

import json
from pathlib import Path

import pytest

from minirun.errors import MinirunError
from minirun.security import capabilities, seccomp
from minirun.spec import parse_security, parse_userns


def test_default_set_is_dockers() -> None:
    assert capabilities.mask(capabilities.DEFAULT) == 0xA80425FB


def test_resolve_add_and_drop() -> None:
    assert capabilities.resolve(["sys_admin"], ["CAP_NET_RAW"]) == capabilities.DEFAULT - {"CAP_NET_RAW"} | {
        "CAP_SYS_ADMIN"}
    assert capabilities.resolve([], ["ALL"]) == frozenset()
    assert capabilities.resolve(["KILL"], ["all"]) == {"CAP_KILL"}
    assert capabilities.resolve(["ALL"], []) == frozenset(capabilities.NUMBERS)
    with pytest.raises(MinirunError, match="invalid capability"):
        capabilities.resolve(["CAP_FLY"], [])


def test_profile_rules_apply_by_capability_and_arch() -> None:
    rule = {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}}
    assert not seccomp.applies(rule, capabilities.DEFAULT)
    assert seccomp.applies(rule, capabilities.DEFAULT | {"CAP_SYS_ADMIN"})
    clone = {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]}}
    assert seccomp.applies(clone, capabilities.DEFAULT)
    assert not seccomp.applies(clone, frozenset({"CAP_SYS_ADMIN"}))
    assert not seccomp.applies({"names": ["x"], "action": "SCMP_ACT_ALLOW",
                                "includes": {"arches": ["s390x"]}}, capabilities.DEFAULT)
    assert not seccomp.applies({"names": ["x"], "action": "SCMP_ACT_ALLOW",
                                "includes": {"minKernel": "99.0"}}, capabilities.DEFAULT)


def test_default_profile_compiles_and_is_cached(tmp_path: Path) -> None:
    profile = seccomp.read_profile(seccomp.DEFAULT_PROFILE)
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO" and profile["defaultErrnoRet"] == 1
    first = seccomp.compiled(seccomp.DEFAULT_PROFILE, capabilities.DEFAULT, tmp_path)
    assert len(first) % 8 == 0 and len(first) > 800, "struct sock_filter[]: 8 bytes per instruction"
    (bpf,) = tmp_path.glob("*.bpf")
    assert seccomp.compiled(seccomp.DEFAULT_PROFILE, capabilities.DEFAULT, tmp_path) == first
    # Another capability set changes the rules (mount & co. with SYS_ADMIN): another filter.
    other = seccomp.compiled(seccomp.DEFAULT_PROFILE, capabilities.DEFAULT | {"CAP_SYS_ADMIN"}, tmp_path)
    assert other != first and len(list(tmp_path.glob("*.bpf"))) == 2
    # A cache entry whose recorded inputs do not match is never used.
    bpf.with_suffix(".key").write_bytes(b"something else")
    assert seccomp.compiled(seccomp.DEFAULT_PROFILE, capabilities.DEFAULT, tmp_path) == first


def test_unknown_syscall_names_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read", "no_such_call_in_any_kernel"], "action": "SCMP_ACT_ALLOW"}]}))
    assert seccomp.compiled(str(path), frozenset(), tmp_path / "cache")


@pytest.mark.parametrize(("content", "message"), [
    ("not json", "cannot read"),
    ("[]", "no defaultAction"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"]}]}', "names and an action"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", '
     '"args": [{"index": 0, "value": 1, "op": "SCMP_CMP_LIKE"}]}]}', "unknown operator"),
    ('{"defaultAction": "SCMP_ACT_NOTIFY"}', "not supported"),
])
def test_bad_profiles(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(MinirunError, match=message):
        seccomp.read_profile(str(path))


def test_parse_security_flags() -> None:
    default = parse_security([], [], [], False, [], None)
    assert default.seccomp_profile == seccomp.DEFAULT_PROFILE and not default.no_new_privileges
    assert (default.userns, default.userns_size) == ("auto", 65536) and default.mask_system_paths
    opts = ["seccomp=unconfined", "no-new-privileges", "systempaths=unconfined"]
    s = parse_security(["NET_ADMIN"], ["ALL"], opts, True, ["/tmp", "/run:size=1m"], "host")
    assert s.capabilities == {"CAP_NET_ADMIN"} and s.seccomp_profile is None and s.no_new_privileges
    assert s.read_only and s.tmpfs == {"/tmp": "", "/run": "size=1m"} and s.userns == "host"
    assert not s.mask_system_paths
    assert parse_security([], [], ["no-new-privileges=false"], False, [], None).no_new_privileges is False
    for bad in (["label=disable"], ["seccomp="], ["no-new-privileges=maybe"]):
        with pytest.raises(MinirunError):
            parse_security([], [], bad, False, [], None)
    with pytest.raises(MinirunError):
        parse_security([], [], [], False, ["/"], None)
    with pytest.raises(MinirunError):
        parse_security([], [], [], False, [], "keep-id")
    assert parse_userns("auto:size=1000") == ("auto", 1000) and parse_userns("shared") == ("shared", 65536)
    assert parse_userns("") == ("auto", 65536)
    for bad in ("auto:size=0", "auto:size=x", "auto:size=", "auto:uidmapping=0:1:1", "remap",
                "auto:size=2147483649"):
        with pytest.raises(MinirunError, match="--userns"):
            parse_userns(bad)
