"""minirun/state.py: container records, names, lookups and the records of dead monitors."""

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from minirun import state
from minirun.errors import ContainerNotFound, MinirunError
from minirun.state import Record


def maker(**fields: object) -> Callable[[str, str], Record]:
    """A make_record callback whose monitor is this (living) test process."""

    def make(container_id: str, name: str) -> Record:
        return Record(id=container_id, name=name, image="busybox", image_id="sha256:0", command=["sh"],
                      created=state.now(), rootless=False, monitor_pid=os.getpid(),
                      monitor_start=state.process_start_time(os.getpid()) or 0, **fields)  # type: ignore[arg-type]

    return make


@pytest.mark.parametrize("name", ["web", "web-1", "a_b.c", "A1", "/web", "x" * 64])
def test_name_rule_accepts_docker_names(name: str) -> None:
    assert re.fullmatch(state.NAME_RULE, name)


@pytest.mark.parametrize("name", ["", "a", "-web", "_web", ".web", "we b", "a/b", "wéb", "web!", "//web",
                                  "web\n"])
def test_name_rule_refuses(name: str) -> None:
    assert not re.fullmatch(state.NAME_RULE, name)


def test_create_writes_a_private_record(tmp_path: Path) -> None:
    record = state.create(tmp_path / "state", maker(), "web")
    assert record.name == "web"
    assert len(record.id) == 64 and int(record.id, 16) >= 0
    path = tmp_path / "state" / f"{record.id}.json"
    assert json.loads(path.read_text())["name"] == "web"
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    assert not [p for p in (tmp_path / "state").iterdir() if p.name.endswith(".tmp")], "no temp files left"


def test_create_generates_distinct_names(tmp_path: Path) -> None:
    records = [state.create(tmp_path, maker(), None) for _ in range(20)]
    assert len({r.name for r in records}) == 20
    assert all(re.fullmatch(state.NAME_RULE, r.name) for r in records)
    assert len({r.id for r in records}) == 20


def test_create_refuses_a_taken_or_invalid_name(tmp_path: Path) -> None:
    state.create(tmp_path, maker(), "web")
    with pytest.raises(MinirunError, match="already in use") as e:
        state.create(tmp_path, maker(), "web")
    assert e.value.code == 125
    with pytest.raises(MinirunError, match="already in use"):
        state.create(tmp_path, maker(), "/web")  # docker's leading slash is the same name
    with pytest.raises(MinirunError, match="invalid container name"):
        state.create(tmp_path, maker(), "bad name")
    assert len(state.all_records(tmp_path)) == 1


def test_concurrent_creates_with_one_name_give_one_container(tmp_path: Path) -> None:
    outcomes: list[str] = []

    def attempt() -> None:
        try:
            state.create(tmp_path, maker(), "race")
            outcomes.append("created")
        except MinirunError:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["created"] + ["refused"] * 7


def test_find_by_name_id_and_prefix(tmp_path: Path) -> None:
    a = state.create(tmp_path, maker(), "alpha")
    b = state.create(tmp_path, maker(), "beta")
    assert state.find(tmp_path, "alpha").id == a.id
    assert state.find(tmp_path, "/alpha").id == a.id
    assert state.find(tmp_path, b.id).name == "beta"
    assert state.find(tmp_path, a.id[:12]).name == "alpha"
    # The shortest prefix that is unique works too.
    n = next(n for n in range(1, 64) if a.id[:n] != b.id[:n])
    assert state.find(tmp_path, a.id[:n]).name == "alpha"
    with pytest.raises(ContainerNotFound):
        state.find(tmp_path, "gamma")
    with pytest.raises(ContainerNotFound):
        state.find(tmp_path, "")


def test_find_ambiguous_prefix(tmp_path: Path) -> None:
    for suffix in ("1", "2"):
        record = maker()("abcdef" + suffix * 58, f"c{suffix}")
        state.save(tmp_path, record)
    with pytest.raises(MinirunError, match="multiple containers"):
        state.find(tmp_path, "abcdef")
    assert state.find(tmp_path, "abcdef1").name == "c1"


def test_a_name_wins_over_an_id_prefix(tmp_path: Path) -> None:
    a = state.create(tmp_path, maker(), None)
    named = state.create(tmp_path, maker(), a.id[:6])  # a container named like another's id prefix
    assert state.find(tmp_path, a.id[:6]).id == named.id


def test_update_and_delete(tmp_path: Path) -> None:
    record = state.create(tmp_path, maker(), "web")
    state.update(tmp_path, record, status="exited", exit_code=3)
    again = state.find(tmp_path, "web")
    assert (again.status, again.exit_code) == ("exited", 3)
    state.delete(tmp_path, record)
    state.delete(tmp_path, record)  # idempotent
    assert state.all_records(tmp_path) == []


def test_records_are_listed_oldest_first_and_junk_is_ignored(tmp_path: Path) -> None:
    first = state.create(tmp_path, maker(), "first")
    second = state.create(tmp_path, maker(), "second")
    (tmp_path / "junk.json").write_text("{not json")
    (tmp_path / "other.json").write_text('{"unrelated": 1}')
    assert [r.id for r in state.all_records(tmp_path)] == [first.id, second.id]
    assert state.all_records(tmp_path / "missing") == []


def dead_monitor() -> tuple[int, int]:
    """The pid and start time of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    start = state.process_start_time(proc.pid)
    proc.wait(timeout=30)
    return proc.pid, start or 1


def test_a_running_record_whose_monitor_died_is_exited(tmp_path: Path) -> None:
    pid, start = dead_monitor()
    record = state.create(tmp_path, maker(), "orphan")
    state.update(tmp_path, record, status="running", pid=12345, monitor_pid=pid, monitor_start=start)
    seen = state.find(tmp_path, "orphan")
    assert seen.status == "exited"
    assert seen.exit_code == state.EXIT_KILLED_WITH_MONITOR == 137
    assert "monitor" in seen.error


def test_a_reused_pid_is_not_the_monitor(tmp_path: Path) -> None:
    # Same pid, other start time: a new process that happens to have the old monitor's pid.
    record = state.create(tmp_path, maker(), "reused")
    state.update(tmp_path, record, status="running",
                 monitor_start=(state.process_start_time(os.getpid()) or 0) + 1)
    assert state.find(tmp_path, "reused").status == "exited"
    state.update(tmp_path, record, monitor_start=state.process_start_time(os.getpid()) or 0)
    assert state.find(tmp_path, "reused").status == "running"


def test_an_exited_record_keeps_its_code(tmp_path: Path) -> None:
    pid, start = dead_monitor()
    record = state.create(tmp_path, maker(), "done")
    state.update(tmp_path, record, status="exited", exit_code=0, monitor_pid=pid, monitor_start=start)
    seen = state.find(tmp_path, "done")
    assert (seen.status, seen.exit_code, seen.error) == ("exited", 0, "")


def test_process_start_time() -> None:
    assert state.process_start_time(os.getpid()) == state.process_start_time(os.getpid())
    assert state.process_start_time(os.getpid()) > 0  # type: ignore[operator]
    assert state.process_start_time(2**22 + 1) is None  # above pid_max: never exists


def test_a_planted_tmp_state_dir_is_refused(tmp_path: Path) -> None:
    """/tmp/minirun-UID made by someone else (or open to others) must not hold our records."""
    from minirun.paths import private_tmp_dir

    planted = tmp_path / "planted"
    planted.mkdir()
    planted.chmod(0o777)
    with pytest.raises(MinirunError, match="not a private directory"):
        private_tmp_dir(planted)
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    with pytest.raises(MinirunError, match="not a private directory"):
        private_tmp_dir(link)
    mine = private_tmp_dir(tmp_path / "mine")
    assert mine.is_dir() and (mine.stat().st_mode & 0o777) == 0o700
    assert private_tmp_dir(mine) == mine  # a second call accepts our own directory


# --- issue 12, item 9: a corrupt record is skipped with a warning, never a crash ----------------


@pytest.mark.parametrize("field,value", [("monitor_pid", "x"), ("pid", -1), ("exit_code", True),
                                         ("command", "sh"), ("config", []), ("status", "zombie"),
                                         ("id", "0" * 64), ("name", "a/b"), ("cgroup_paths", [1])])
def test_a_record_with_a_wrong_field_is_skipped_with_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: object) -> None:
    good = state.create(tmp_path, maker(), "good")
    bad = state.create(tmp_path, maker(), "bad")
    path = tmp_path / f"{bad.id}.json"
    raw = json.loads(path.read_text())
    raw[field] = value
    path.write_text(json.dumps(raw))
    capsys.readouterr()
    assert [r.id for r in state.all_records(tmp_path)] == [good.id]
    assert state.find(tmp_path, "good").id == good.id  # (reads good's record alone: no warning)
    for ref in ("bad", bad.id, bad.id[:12]):  # not found, and why
        with pytest.raises(ContainerNotFound):
            state.find(tmp_path, ref)
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 4 and all(str(path) in w and field in w for w in warnings), warnings


@pytest.mark.parametrize("content", ["", "{garbage", "[]", '{"unrelated": 1}'])
def test_garbage_and_empty_records_are_skipped_with_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str) -> None:
    bad = state.create(tmp_path, maker(), "bad")
    (tmp_path / f"{bad.id}.json").write_text(content)
    assert state.all_records(tmp_path) == []
    (line,) = capsys.readouterr().err.splitlines()
    assert f"{bad.id}.json" in line and line.startswith("minirun: warning:")


@pytest.mark.parametrize("damage", ["garbage", "empty", "deleted"])
def test_a_broken_record_keeps_its_name_while_the_container_exists(tmp_path: Path, damage: str) -> None:
    """The name's claim (STATE/names/NAME) outlives the record while something of the
    container exists (`in_use`: its directory or cgroup, which container.py checks)."""
    web = state.create(tmp_path, maker(), "web")
    path = tmp_path / f"{web.id}.json"
    if damage == "deleted":
        path.unlink()
    else:
        path.write_text("" if damage == "empty" else "{garbage")
    with pytest.raises(MinirunError, match="already in use"):
        state.create(tmp_path, maker(), "web", in_use=lambda cid: cid == web.id)
    assert state.name_claims(tmp_path) == {"web": web.id}
    if damage != "deleted":
        with pytest.raises(MinirunError, match="already in use"):  # the record file alone holds it
            state.create(tmp_path, maker(), "web")
        state.delete_id(tmp_path, web.id)
    # Once nothing of it is left, the name is free again (the stale claim is replaced).
    again = state.create(tmp_path, maker(), "web")
    assert state.name_claims(tmp_path) == {"web": again.id}
    state.delete(tmp_path, again)
    assert state.name_claims(tmp_path) == {}


# --- issue 12, item 12: an interrupted start, and an exit code kept in reserved space -----------


def test_an_interrupted_start_stays_created(tmp_path: Path) -> None:
    """minirun died (SIGKILL, full disk) while starting: the container never ran, so it is
    "Created" with why, never "Exited (137) ... monitor died"."""
    pid, start = dead_monitor()
    record = state.create(tmp_path, maker(), "interrupted")
    state.update(tmp_path, record, monitor_pid=pid, monitor_start=start)
    seen = state.find(tmp_path, "interrupted")
    assert seen.status == "created" and seen.exit_code != 137 and "starting" in seen.error


def test_a_dead_monitor_s_exit_file_gives_the_code(tmp_path: Path) -> None:
    pid, start = dead_monitor()
    record = state.create(tmp_path, maker(), "full")
    state.reserve_exit_file(tmp_path, record.id)
    assert state.exit_path(tmp_path, record.id).stat().st_blocks > 0, "space reserved up front"
    state.update(tmp_path, record, status="running", pid=12345, monitor_pid=pid, monitor_start=start)
    state.write_exit_file(tmp_path, record.id, 7)
    seen = state.find(tmp_path, "full")
    assert (seen.status, seen.exit_code) == ("exited", 7)
    state.delete(tmp_path, record)
    assert not state.exit_path(tmp_path, record.id).exists()
