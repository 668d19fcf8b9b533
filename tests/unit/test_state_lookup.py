"""state.find and state.create without reading every record: the name's claim (STATE/names/NAME)
is the index by name, a full id is a file name, a prefix is matched against the file names. The
answers must be those of the full scan they replace, whatever the claims and records say."""

import os
from pathlib import Path

import pytest

from minirun import state
from minirun.errors import ContainerNotFound, MinirunError
from minirun.state import Record


def make(container_id: str, name: str) -> Record:
    return Record(id=container_id, name=name, image="busybox", image_id="sha256:0", command=["sh"],
                  created=state.now(), rootless=False)


def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The record files state.py reads from now on (a spy on `_load_file`, which still reads)."""
    seen: list[Path] = []
    real = state._load_file

    def spy(path: Path, warn: bool = True) -> Record | None:
        seen.append(path)
        return real(path, warn)

    monkeypatch.setattr(state, "_load_file", spy)
    return seen


def test_find_and_create_read_one_record_of_many(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = [state.create(tmp_path, make, f"c{i}") for i in range(50)]
    seen = reads(monkeypatch)
    target = records[17]
    for ref in ("c17", "/c17", target.id, target.id[:12]):
        seen.clear()
        assert state.find(tmp_path, ref).id == target.id, ref
        assert seen == [tmp_path / f"{target.id}.json"], ref
    seen.clear()
    state.create(tmp_path, make, "c50")
    state.create(tmp_path, make, None)
    with pytest.raises(MinirunError, match="already in use"):
        state.create(tmp_path, make, "c3")
    assert seen == [], "create read records"


def test_a_claim_naming_another_container_is_not_believed(tmp_path: Path) -> None:
    """STATE/names/alpha pointed at beta (a link anyone who can write the state directory can
    change): `find alpha` is alpha, or no container, never beta."""
    alpha = state.create(tmp_path, make, "alpha")
    beta = state.create(tmp_path, make, "beta")
    claim = tmp_path / "names" / "alpha"
    claim.unlink()
    claim.symlink_to(beta.id)
    assert state.find(tmp_path, "alpha").id == alpha.id  # by its record, as before the claims
    os.unlink(tmp_path / f"{alpha.id}.json")
    with pytest.raises(ContainerNotFound, match="no such container: alpha"):
        state.find(tmp_path, "alpha")
    assert state.find(tmp_path, "beta").id == beta.id


def test_a_claim_whose_record_is_gone_or_broken_finds_nothing(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    web = state.create(tmp_path, make, "web")
    path = tmp_path / f"{web.id}.json"
    path.write_text("{garbage")
    capsys.readouterr()
    with pytest.raises(ContainerNotFound, match="no such container: web"):
        state.find(tmp_path, "web")
    (line,) = capsys.readouterr().err.splitlines()  # why: the record is named, once
    assert str(path) in line and "invalid record" in line
    with pytest.raises(ContainerNotFound):
        state.find(tmp_path, "web", warn=False)
    assert capsys.readouterr().err == ""


def test_a_record_without_a_claim_is_still_found(tmp_path: Path) -> None:
    """A state directory of an older minirun, or a claim deleted by hand: the full scan finds it."""
    old = state.create(tmp_path, make, "old")
    other = state.create(tmp_path, make, "other")
    state.release_name(tmp_path, old.id)
    assert state.name_claims(tmp_path) == {"other": other.id}
    for ref in ("old", "/old", old.id, old.id[:8]):
        assert state.find(tmp_path, ref).id == old.id, ref
    (tmp_path / "names" / "old").symlink_to("not-an-id")  # a claim that names no id
    assert state.find(tmp_path, "old").id == old.id


def test_a_stale_claim_does_not_hold_its_name(tmp_path: Path) -> None:
    """A claim whose container has no record file and nothing else (`in_use`) is stale: a SIGKILL
    between the claim and the record left it. It gives the name away, and is replaced."""
    names = tmp_path / "names"
    names.mkdir(parents=True)
    gone = "ab" * 32
    (names / "web").symlink_to(gone)
    with pytest.raises(MinirunError, match="already in use"):
        state.create(tmp_path, make, "web", in_use=lambda cid: cid == gone)  # its cgroup, say
    web = state.create(tmp_path, make, "web")
    assert os.readlink(names / "web") == web.id
    (names / "junk").symlink_to("../../etc/passwd")  # not an id: no claim at all
    assert state.create(tmp_path, make, "junk").name == "junk"


def test_a_generated_name_that_is_held_is_drawn_again(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    held = state.create(tmp_path, make, "calm_knuth_0001")
    stale = "cd" * 32
    (tmp_path / "names" / "calm_knuth_0002").symlink_to(stale)
    drawn = iter(["calm_knuth_0001", "calm_knuth_0001", "calm_knuth_0002"])
    monkeypatch.setattr(state, "generate_name", lambda: next(drawn))
    made = state.create(tmp_path, make, None)
    assert made.name == "calm_knuth_0002" and made.id != held.id
    assert state.name_claims(tmp_path) == {"calm_knuth_0001": held.id, "calm_knuth_0002": made.id}


def test_a_name_that_is_another_containers_id_gives_the_older(tmp_path: Path) -> None:
    """Names may be 64 hex digits; as the full scan (oldest first), the older container wins."""
    first = state.create(tmp_path, make, None)
    named = state.create(tmp_path, make, first.id)
    assert state.find(tmp_path, first.id).id == first.id
    name = "ef" * 32
    older = state.create(tmp_path, make, name)
    state.save(tmp_path, make(name, "younger"))
    assert state.find(tmp_path, name).id == older.id
    assert state.find(tmp_path, "younger").id == name
    assert named.name == first.id


def test_a_prefix_counts_valid_records_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for suffix in ("1", "2", "3"):
        state.save(tmp_path, make("abcdef" + suffix * 58, f"c{suffix}"))
    with pytest.raises(MinirunError) as e:
        state.find(tmp_path, "abcdef")
    assert str(e.value) == "multiple containers match id prefix 'abcdef': be more specific"
    (tmp_path / f"abcdef{'2' * 58}.json").write_text("{garbage")
    (tmp_path / f"abcdef{'3' * 58}.json").unlink()
    (tmp_path / "abcdef-not-a-record.json").write_text("{}")
    capsys.readouterr()
    assert state.find(tmp_path, "abcdef").name == "c1"  # the broken one is no container
    assert capsys.readouterr().err == ""
    with pytest.raises(ContainerNotFound, match="no such container: abcdef9"):
        state.find(tmp_path, "abcdef9")


def test_a_claimless_name_wins_over_an_ambiguous_prefix(tmp_path: Path) -> None:
    for suffix in ("1", "2"):
        state.save(tmp_path, make("abcdef" + suffix * 58, f"c{suffix}"))
    state.save(tmp_path, make("9" * 64, "abcdef"))  # named like their prefix, and no claim
    assert state.find(tmp_path, "abcdef").id == "9" * 64


@pytest.mark.parametrize("ref", ["../x", "a/../../etc", "x" * 300, "", "/", "web\n", "ABCDEF"])
def test_odd_references_find_nothing(tmp_path: Path, ref: str) -> None:
    state.create(tmp_path, make, "web")
    with pytest.raises(ContainerNotFound):
        state.find(tmp_path, ref)


def test_no_state_directory_finds_nothing(tmp_path: Path) -> None:
    for ref in ("web", "ab" * 32, "abc"):
        with pytest.raises(ContainerNotFound):
            state.find(tmp_path / "missing", ref)


def test_delete_releases_the_claim_by_its_name_or_else_every_claim_of_the_id(tmp_path: Path) -> None:
    web = state.create(tmp_path, make, "web")
    db = state.create(tmp_path, make, "db")
    state.delete(tmp_path, web)
    assert state.name_claims(tmp_path) == {"db": db.id}
    (tmp_path / "names" / "db").rename(tmp_path / "names" / "moved")  # its claim, under another name
    state.delete(tmp_path, db)
    assert state.name_claims(tmp_path) == {}
    other = state.create(tmp_path, make, "other")
    state.release_name(tmp_path, web.id, "other")  # not web's claim: left alone
    assert state.name_claims(tmp_path) == {"other": other.id}


def test_a_names_entry_that_is_no_directory_stops_no_removal(tmp_path: Path) -> None:
    """STATE/names replaced by a file (by hand, or a broken disk): rm, prune and the monitor's
    --rm remove containers still (state.delete), and a create says what is wrong in one line.
    (atk20; failed before: NotADirectoryError out of name_claims after the record was deleted,
    so rm stopped half way: 125, and the container's id range was never given back; every prune
    failed the same way.)"""
    web = state.create(tmp_path, make, "web")
    for entry in (tmp_path / "names").iterdir():
        entry.unlink()
    (tmp_path / "names").rmdir()
    (tmp_path / "names").write_text("not a directory")
    state.delete(tmp_path, web)
    assert not (tmp_path / f"{web.id}.json").exists()
    assert state.name_claims(tmp_path) == {}
    with pytest.raises(MinirunError, match="names is not a directory"):
        state.create(tmp_path, make, "db")


def test_rm_f_of_a_name_whose_claim_names_another_container_removes_nothing(tmp_path: Path) -> None:
    """STATE/names/web pointed at the container db (which has a valid record, a directory: it
    exists): `find web` does not believe it (above), and neither may `rm -f web`'s way to an
    orphan (container.orphan_id, a container whose record is broken): db has its own record
    and its own name. (atk20; failed before: orphan_id gave db's id, and rm -f web removed db.)"""
    from minirun import container

    states, store = tmp_path / "state", tmp_path / "store"
    db = state.create(states, make, "db")
    (store / "containers" / db.id).mkdir(parents=True)  # it exists (container.in_use)
    (states / "names" / "web").symlink_to(db.id)
    with pytest.raises(ContainerNotFound):
        state.find(states, "web")
    assert container.orphan_id(states, store, "web") is None
    assert container.orphan_id(states, store, "db") is None  # found by find, not an orphan either
    os.unlink(states / f"{db.id}.json")  # now it is an orphan: rm -f db still reaches it
    assert container.orphan_id(states, store, "db") == db.id
