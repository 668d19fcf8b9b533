"""minirun/spec.py: every flag of `minirun run` is checked before anything is created."""

import os
from pathlib import Path

import pytest

from minirun.errors import RUNTIME_ERROR, MinirunError
from minirun.spec import (
    BindMount,
    check_hostname,
    check_network,
    check_user,
    check_workdir,
    parse_bind,
    parse_env,
)


def test_bind_read_write_and_read_only(tmp_path: Path) -> None:
    assert parse_bind(f"{tmp_path}:/data") == BindMount(str(tmp_path), "/data", False)
    assert parse_bind(f"{tmp_path}:/data:ro") == BindMount(str(tmp_path), "/data", True)
    assert parse_bind(f"{tmp_path}:/data:rw") == BindMount(str(tmp_path), "/data", False)


def test_bind_paths_are_normalised(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    bind = parse_bind(f"{tmp_path}/link/:/a/./b/../c/")
    assert bind.source == str(tmp_path / "real"), "the host side is resolved once, at parse time"
    assert bind.target == "/a/c"


@pytest.mark.parametrize("value", [
    "relative/path:/data",          # named volumes are not supported: host paths only
    "{tmp}:relative",               # the container side must be absolute too
    "{tmp}/does-not-exist:/data",   # a typo must not create a directory on the host
    "{tmp}:/data:rx",               # unknown mode
    "{tmp}:/data:ro:extra",
    "{tmp}",                        # no container path
    "{tmp}:/",                      # over the container's root
    "{tmp}:/a/..",                  # the same, disguised
    "",
])
def test_bad_bind_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(MinirunError) as e:
        parse_bind(value.format(tmp=tmp_path))
    assert e.value.code == RUNTIME_ERROR
    assert "\n" not in str(e.value), "errors are one line"


def test_env_sets_and_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIRUN_TEST_FROM_HOST", "host value")
    monkeypatch.delenv("MINIRUN_TEST_UNSET", raising=False)
    assert parse_env(["A=1", "B=", "C=x=y", "MINIRUN_TEST_FROM_HOST", "MINIRUN_TEST_UNSET"]) == [
        "A=1", "B=", "C=x=y", "MINIRUN_TEST_FROM_HOST=host value"]


@pytest.mark.parametrize("value", ["=value", "", "A B=1", "TAB\tX=1", " =1"])
def test_bad_env_is_refused(value: str) -> None:
    with pytest.raises(MinirunError, match="invalid environment variable"):
        parse_env(["OK=1", value])


@pytest.mark.parametrize("value", ["root", "1000", "1000:1000", "nobody:nogroup", "user:1000", "0:0",
                                   str(2**32 - 2)])
def test_good_user(value: str) -> None:
    assert check_user(value) == value
    assert check_user(None) is None


@pytest.mark.parametrize("value", ["", ":", ":1000", "1000:", "a b", "1000 :1", str(2**32 - 1),
                                   f"0:{2**32}"])
def test_bad_user_is_refused(value: str) -> None:
    with pytest.raises(MinirunError, match="invalid user"):
        check_user(value)


@pytest.mark.parametrize("value", ["box", "web-1", "a.b.c", "x" * 63, "A1"])
def test_good_hostname(value: str) -> None:
    assert check_hostname(value) == value


@pytest.mark.parametrize("value", ["", "-box", "box-", "a_b", "a..b", "x" * 64, "a b", "a/b", "ä", "box\n"])
def test_bad_hostname_is_refused(value: str) -> None:
    with pytest.raises(MinirunError, match="invalid hostname"):
        check_hostname(value)


def test_network_modes() -> None:
    assert check_network("none") == "none"
    assert check_network("host") == "host"
    assert check_network("bridge") == "bridge"
    assert check_network("container:abc") == "container:abc"
    with pytest.raises(MinirunError, match="invalid --network"):
        check_network("container:")


def test_workdir_must_be_absolute() -> None:
    assert check_workdir("/srv") == "/srv"
    assert check_workdir(None) is None
    for bad in ("srv", "", "./x"):
        with pytest.raises(MinirunError, match="absolute"):
            check_workdir(bad)


def test_parse_env_does_not_change_the_environment() -> None:
    before = dict(os.environ)
    parse_env(["A=1", "HOME"])
    assert dict(os.environ) == before


def test_sizes_are_exact_and_bounded() -> None:
    from minirun.spec import MAX_BYTES, parse_size

    assert parse_size("-m", "1.5g") == 3 << 29 and parse_size("-m", "0.5k") == 512
    assert parse_size("-m", "8388607t") < MAX_BYTES  # just under 8 EiB
    for value in ("99999999999999999999g", "8589934592g"):  # 2^63 and beyond: what the kernel wrapped
        with pytest.raises(MinirunError, match="too large"):
            parse_size("-m", value)


@pytest.mark.parametrize("options", ["", "size=64m", "size=50%,mode=1777", "ro,exec,suid,dev,uid=1000,gid=0",
                                     "nr_inodes=10k,nr_blocks=100"])
def test_tmpfs_options_that_tmpfs_accepts(options: str) -> None:
    from minirun.spec import check_tmpfs_options

    assert check_tmpfs_options(f"/t:{options}", options) == options


@pytest.mark.parametrize("options", ["size=zz", "size=", "mode=999", "uid=-1", "bogus", "size=1g,x=y",
                                     "exec=1"])
def test_tmpfs_options_refused_before_the_container(options: str) -> None:
    from minirun.spec import check_tmpfs_options

    with pytest.raises(MinirunError, match="invalid --tmpfs"):
        check_tmpfs_options(f"/t:{options}", options)


def test_volumes_are_nosuid_and_nodev_unless_asked(tmp_path: Path) -> None:
    plain = parse_bind(f"{tmp_path}:/data")
    assert (plain.nosuid, plain.nodev, plain.noexec, plain.readonly) == (True, True, False, False)
    asked = parse_bind(f"{tmp_path}:/data:ro,suid,dev,noexec")
    assert (asked.nosuid, asked.nodev, asked.noexec, asked.readonly) == (False, False, True, True)
    with pytest.raises(MinirunError, match="unknown option 'rx'"):
        parse_bind(f"{tmp_path}:/data:ro,rx")
