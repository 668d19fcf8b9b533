"""config.json into minirun-oci's frozen plan (minirun/oci/config.py), and mount options
(minirun/oci/child.py): no privilege, nothing created. What the plan does in a container is
tested in tests/root/test_oci.py and by the validation suite."""

import json
from pathlib import Path
from typing import Any

import pytest

from minirun import kernel
from minirun.errors import MinirunError
from minirun.oci import cgroup, config
from minirun.oci.child import MS_SLAVE, parse_options
from minirun.oci.features import default_spec


def write(tmp_path: Path, raw: dict[str, Any]) -> Path:
    (tmp_path / "rootfs").mkdir(exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(raw))
    return tmp_path


def test_the_default_spec_is_a_valid_plan(tmp_path: Path) -> None:
    cfg = config.load(str(write(tmp_path, default_spec())))
    assert cfg.root == str(tmp_path / "rootfs") and cfg.root_readonly
    assert cfg.process.args == ["sh"] and cfg.process.rlimits == [(7, 1024, 1024)]
    assert cfg.process.capabilities is not None and "CAP_SYS_ADMIN" not in cfg.process.capabilities.bounding
    flags = cfg.clone_flags()
    assert flags & kernel.CLONE_NEWPID and flags & kernel.CLONE_NEWNS and not flags & kernel.CLONE_NEWCGROUP
    assert cfg.has_process


@pytest.mark.parametrize(("change", "message"), [
    ({"ociVersion": "invalid"}, "unsupported ociVersion"),
    ({"process": {"args": "sh"}}, "process.args"),
    ({"process": {"args": []}}, "must not be empty"),
    ({"process": {"args": ["sh"], "cwd": "relative"}}, "absolute"),
    ({"process": {"args": ["sh"], "capabilities": {"bounding": ["CAP_NOPE"]}}}, "unknown capability"),
    ({"process": {"args": ["sh"], "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}]}},
     "soft <= hard"),
    ({"linux": {"namespaces": [{"type": "time2"}]}}, "unknown namespace"),
    ({"linux": {"namespaces": [{"type": "pid"}, {"type": "pid"}]}}, "twice"),
    ({"linux": {"uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}}, "need a user namespace"),
    ({"mounts": [{"destination": "relative"}]}, "must be absolute"),
    ({"hooks": {"prestart": [{"path": "relative"}]}}, "absolute path"),
    ({"linux": {"rootfsPropagation": "sideways"}}, "rootfsPropagation"),
])
def test_bad_configs_fail_with_one_line(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    raw = default_spec()
    linux = {**raw["linux"], **change.pop("linux", {})}  # type: ignore[dict-item]
    raw = {**raw, **change, "linux": linux}
    with pytest.raises(MinirunError, match=message):
        config.load(str(write(tmp_path, raw)))


def test_a_config_without_process_is_created_but_marked(tmp_path: Path) -> None:
    raw = default_spec()
    del raw["process"]
    assert not config.load(str(write(tmp_path, raw))).has_process


def test_namespaces_by_path_are_joined_not_created(tmp_path: Path) -> None:
    raw = {**default_spec(), "hostname": None,
           "linux": {"namespaces": [{"type": "network", "path": "/proc/1/ns/net"}, {"type": "mount"}]}}
    cfg = config.load(str(write(tmp_path, raw)))
    assert cfg.namespaces == {"network": "/proc/1/ns/net", "mount": ""}
    assert cfg.clone_flags() == kernel.CLONE_NEWNS


def test_mount_options_split_into_flags_propagation_and_data() -> None:
    words = ["nosuid", "ro", "rw", "rslave", "mode=755", "size=1m", "tmpcopyup"]
    flags, propagation, data = parse_options(words)
    assert flags == kernel.MS_NOSUID  # rw undoes ro; the last word wins, as mount(8)
    assert propagation == MS_SLAVE | kernel.MS_REC
    assert data == "mode=755,size=1m"  # tmpcopyup is an engine's hint, not a mount option


@pytest.mark.parametrize(("given", "path"), [
    ("machine.slice:libpod:abc", "machine.slice/libpod-abc.scope"),  # podman's, as root
    ("user-1000.slice:minirun:x", "user.slice/user-1000.slice/minirun-x.scope"),  # a dash is a level
    ("a-b-c.slice:p:n", "a.slice/a-b.slice/a-b-c.slice/p-n.scope"),
    (":crio:n", "system.slice/crio-n.scope"),  # no slice: system.slice
    ("-:p:n", "p-n.scope"),  # the root slice
    ("machine.slice::n", "machine.slice/n.scope"),  # no prefix
    ("machine.slice:p:sub.slice", "machine.slice/sub.slice"),  # a name that is a slice: as it is
    (None, "system.slice/minirun-oci-ID.scope"),  # no cgroupsPath
])
def test_systemd_cgroups_path_is_the_path_systemd_would_give_the_scope(given: str | None, path: str) -> None:
    assert cgroup.systemd_path(given, "ID") == path


@pytest.mark.parametrize("given", ["/machine.slice/x", "a:b", "machine:p:n", "a/b.slice:p:n", "-a.slice:p:n",
                                   "a--b.slice:p:n", "machine.slice:p:", "machine.slice:p:a/b",
                                   "machine.slice:p:.."])
def test_bad_systemd_cgroups_paths_are_refused(given: str) -> None:
    with pytest.raises(MinirunError, match="--systemd-cgroup"):
        cgroup.systemd_path(given, "ID")
