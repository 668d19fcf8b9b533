"""The record file's format outlives the code that wrote it: a record written by an older minirun
(every field as `dataclasses.asdict` wrote it, before issue 14's start-up work) loads with this
one, and is written back with the same keys and values."""

import json
import os
from pathlib import Path

from minirun import state

ID = "4dc9db1a74e00cb75a6ae0358e2fcd77402e38ff23874e99690e3f7aaae167f2"

# A record of an exited container, as the @dataclass Record of 2026-11-30 wrote it.
WRITTEN_BY_THE_OLD_CODE = {
    "bundle": f"/var/lib/minirun/containers/{ID}", "cgroup_paths": [], "command": ["sh", "-c", "exit 3"],
    "config": {"Cmd": ["sh", "-c", "exit 3"], "Env": ["PATH=/bin"], "Hostname": ID[:12], "Image": "busybox",
               "OpenStdin": False, "StopSignal": "SIGTERM", "StopTimeout": 10, "Tty": False, "User": "",
               "WorkingDir": "/"},
    "create_args": ["--name", "web", "busybox", "sh", "-c", "exit 3"],
    "created": "2026-11-30T22:05:18.123456Z",
    "error": "", "exit_code": 3, "finished_at": "2026-11-30T22:05:18.323456Z",
    "host_config": {"AutoRemove": False, "Binds": [], "NetworkMode": "none"}, "id": ID,
    "id_range": [1065536, 1065536, 65536], "image": "busybox", "image_id": "sha256:" + "1" * 64,
    "monitor_pid": 0, "monitor_start": 0, "name": "web", "network_settings": {}, "oom_killed": False,
    "pid": 0, "pid_start": 0, "rootless": False,
    "started_at": "2026-11-30T22:05:18.223456Z", "status": "exited",
}


def test_a_record_written_by_the_old_code_loads_and_is_written_back_the_same(tmp_path: Path) -> None:
    path = tmp_path / f"{ID}.json"
    path.write_text(json.dumps(WRITTEN_BY_THE_OLD_CODE, indent=2, sort_keys=True))
    record = state.load(tmp_path, ID)
    assert record is not None
    assert (record.name, record.status, record.exit_code, record.id_range) == ("web", "exited", 3,
                                                                                [1065536, 1065536, 65536])
    assert record.config["Hostname"] == ID[:12] and record.create_args[:2] == ["--name", "web"]
    state.save(tmp_path, record)
    assert json.loads(path.read_text()) == WRITTEN_BY_THE_OLD_CODE


def test_a_record_from_before_id_ranges_loads_with_a_list_of_its_own(tmp_path: Path) -> None:
    """Fields added later (id_range, issue 12) take their defaults; a list default is never shared
    between records, so changing one record's list leaves every other record's alone."""
    older = {k: v for k, v in WRITTEN_BY_THE_OLD_CODE.items() if k not in ("id_range", "cgroup_paths")}
    other_id = "5" * 64
    (tmp_path / f"{ID}.json").write_text(json.dumps(older))
    (tmp_path / f"{other_id}.json").write_text(json.dumps({**older, "id": other_id, "name": "db"}))
    first, second = state.load(tmp_path, ID), state.load(tmp_path, other_id)
    assert first is not None and second is not None
    assert first.id_range == [] and first.cgroup_paths == []
    first.cgroup_paths.append("/sys/fs/cgroup/pids/minirun/x")
    assert second.cgroup_paths == [] and state.Record.cgroup_paths is not first.cgroup_paths


def test_a_record_missing_a_field_without_default_is_refused(tmp_path: Path) -> None:
    broken = {k: v for k, v in WRITTEN_BY_THE_OLD_CODE.items() if k != "image_id"}
    (tmp_path / f"{ID}.json").write_text(json.dumps(broken))
    assert state.load(tmp_path, ID) is None  # one warning line, as for any invalid record
    assert os.path.exists(tmp_path / f"{ID}.json")
