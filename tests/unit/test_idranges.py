"""The arithmetic of per-container id ranges (minirun/idranges.py): where the pool is, and the
first free range in it. The book itself, its lock and its life are tested with real containers
in tests/root/test_userns_auto.py."""

from pathlib import Path

import pytest

from minirun import idranges


def test_first_fit_skips_what_is_taken() -> None:
    free = [(100, 200), (300, 400)]
    assert idranges.first_fit(free, [], 50) == 100
    assert idranges.first_fit(free, [(100, 150)], 50) == 150
    assert idranges.first_fit(free, [(120, 130)], 50) == 130
    assert idranges.first_fit(free, [(100, 160)], 50) == 300, "no room left in the first interval"
    assert idranges.first_fit(free, [(100, 200), (300, 351)], 50) is None
    assert idranges.first_fit(free, [(0, 1000)], 1) is None
    assert idranges.first_fit(free, [(150, 160), (100, 110)], 40) == 110, "taken in any order"


def test_subtract() -> None:
    assert idranges._subtract([(0, 100)], [(10, 20), (50, 60)]) == [(0, 10), (20, 50), (60, 100)]
    assert idranges._subtract([(0, 100)], [(0, 100)]) == []


@pytest.fixture
def subids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for kind, variable in (("subuid", "MINIRUN_SUBUID"), ("subgid", "MINIRUN_SUBGID")):
        monkeypatch.setenv(variable, str(tmp_path / kind))
    return tmp_path


def write(directory: Path, text: str) -> None:
    for kind in ("subuid", "subgid"):
        (directory / kind).write_text(text)


def test_the_pool_is_root_s_lines_after_the_shared_range(subids: Path) -> None:
    write(subids, "root:1000000:65536\nalice:100000:65536\nroot:5000000:131072\n")
    assert idranges.shared_range("uid") == (1000000, 65536)
    pool = idranges.pool()
    assert pool.uids == [(5000000, 5131072)] and pool.gids == pool.uids and not pool.default
    write(subids, "root:1000000:200000\n")
    assert idranges.pool().uids == [(1065536, 1200000)], "the rest of a long first line"


def test_without_a_second_range_the_default_pool_minus_other_users(subids: Path) -> None:
    start, count = idranges.DEFAULT_POOL
    write(subids, f"root:1000000:65536\nbob:{start + 65536}:65536\n")
    pool = idranges.pool()
    assert pool.default and "default pool" in pool.describe()
    assert pool.uids == [(start, start + 65536), (start + 131072, start + count)], "bob's ids are bob's"
    assert start + count < 2**31, "ids below 2^31: ps prints larger ones as negative numbers"
    write(subids, "")
    assert idranges.shared_range("uid") == idranges.DEFAULT_ROOT and idranges.pool().default


def test_allocate_and_release_in_a_book(subids: Path, tmp_path: Path) -> None:
    write(subids, "root:1000000:196608\n")
    book = tmp_path / "book"
    first = idranges.allocate(tmp_path, "a" * 64, 65536, tmp_path, book_dir=book)
    second = idranges.allocate(tmp_path, "b" * 64, 65536, tmp_path, book_dir=book)
    assert (first.uid, second.uid) == (1065536, 1131072)
    with pytest.raises(idranges.MinirunError, match="no free range of 65536 ids"):
        idranges.allocate(tmp_path, "c" * 64, 65536, tmp_path, book_dir=book)
    freed: list[idranges.Claim] = []
    idranges.release(tmp_path, "a" * 64, freed.append, book_dir=book)
    assert [c.uid for c in freed] == [first.uid]
    assert idranges.allocate(tmp_path, "c" * 64, 65536, tmp_path, book_dir=book).uid == first.uid, "reused"


def test_a_corrupt_book_gives_out_nothing(subids: Path, tmp_path: Path) -> None:
    write(subids, "root:1000000:196608\n")
    book = tmp_path / "book"
    book.mkdir()
    (book / "book.json").write_text('{"claims": [{"uid": "x"}]}')
    with pytest.raises(idranges.MinirunError, match=r"book.json is corrupt"):
        idranges.allocate(tmp_path, "a" * 64, 65536, tmp_path, book_dir=book)
    claim = '{"uid": "x", "gid": 1, "count": 1, "store": "/s", "holders": []}'
    (book / "book.json").write_text(f'{{"claims": [{claim}]}}')
    with pytest.raises(idranges.MinirunError, match=r"a bad claim"):
        idranges.allocate(tmp_path, "a" * 64, 65536, tmp_path, book_dir=book)
