"""The command line without containers: shared-namespace flags, management spellings, no
abbreviations, unknown flags, and `ps`'s filters and templates (minirun/cli.py, spec.py,
commands/ps.py)."""

import pytest

from minirun import cli
from minirun.commands import ps
from minirun.errors import MinirunError
from minirun.spec import check_share
from minirun.state import Record


def test_share_modes() -> None:
    assert check_share("pid", None) == "private"
    assert check_share("pid", "host") == "host"
    assert check_share("pid", "container:web") == "container:web"
    assert check_share("ipc", "shareable") == "shareable"
    assert check_share("uts", "host") == "host"
    for kind, bad in (("pid", "64"), ("pid", "container:"), ("ipc", "sharable"), ("uts", "container:web"),
                      ("pid", "shareable")):
        with pytest.raises(MinirunError):
            check_share(kind, bad)


def test_management_spellings() -> None:
    assert cli.management_command(["container", "ls", "-a"]) == ["ps", "-a"]
    assert cli.management_command(["container", "exec", "-it", "web", "sh"]) == ["exec", "-it", "web", "sh"]
    assert cli.management_command(["image", "rm", "busybox"]) == ["rmi", "busybox"]
    assert cli.management_command(["image", "inspect", "busybox"]) == ["image", "inspect", "busybox"]
    assert cli.management_command(["run", "container", "ls"]) == ["run", "container", "ls"]
    with pytest.raises(MinirunError, match="container nope"):
        cli.management_command(["container", "nope"])


def test_no_abbreviations_and_unknown_flags_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, flag in ((["run", "--pids", "5", "busybox", "true"], "--pids"),
                       (["run", "--restart=always", "busybox", "true"], "--restart"),
                       (["exec", "--privileged", "web", "sh"], "--privileged"),
                       (["ps", "--last", "3"], "--last")):
        assert cli.main(argv) == 125
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"unknown flag: {flag}" in err, err


def record(name: str, status: str, code: int = 0,
           ports: dict[str, list[dict[str, str]]] | None = None) -> Record:
    return Record(id=name * 8, name=name, image="busybox", image_id="x", command=["sleep", "300"],
                  created="2026-01-01T00:00:00Z", rootless=False, status=status, exit_code=code,
                  started_at="2026-01-01T00:00:00Z", finished_at="2026-01-01T00:00:00Z",
                  network_settings={"Ports": ports or {}})


def test_ps_filters_ports_and_templates() -> None:
    web = record("web", "running", ports={"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]})
    db = record("db", "exited", 3)
    assert ps.ports(web) == "0.0.0.0:8080->80/tcp"
    assert ps.status(db).startswith("Exited (3) ") and ps.status(db).endswith(" ago")
    assert ps.status(web).startswith("Up ")
    assert ps.status(record("new", "created")) == "Created"
    wanted = ps.parse_filters(["name=we", "status=running"])
    assert ps.matches(web, wanted) and not ps.matches(db, wanted)
    assert ps.matches(db, ps.parse_filters(["status=running", "status=exited"]))
    assert ps.matches(db, ps.parse_filters([f"id={'db' * 3}"]))
    assert ps.render("{{.Names}}:{{ .Ports }}", ps.fields(web, False)) == "web:0.0.0.0:8080->80/tcp"
    for bad in (["color=red"], ["status=dead"], ["name"]):
        with pytest.raises(MinirunError):
            ps.parse_filters(bad)
    with pytest.raises(MinirunError, match="Nope"):
        ps.render("{{.Nope}}", ps.fields(web, False))
