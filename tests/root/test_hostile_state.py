"""Issue 12, items 8 and 9: corrupt and hostile records. `rm` must not be a weapon (paths and
processes come from the container's id and the kernel, never from the record), and one bad
record must not break the CLI for every other container nor hide a running one.

Each test runs with a state directory of its own (MINIRUN_STATE): corrupt records in the
shared one would disturb everyone else's `ps` on this machine.
"""

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cgroup_helpers import pids_hierarchy
from helpers import IMAGE, Tier, one_line_error, process_exists, wait_for, wait_running

from minirun import cgroups, state


@contextlib.contextmanager
def private_state(tier: Tier) -> Iterator[Tier]:
    """The tier, with a state directory of its own; every container in it removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="mrt-state-"))
    os.chown(directory, tier.uid, tier.gid)
    if tier.rootless:  # setpriv ... env -i VAR=... python: the variable goes into env's list
        at = tier.prefix.index("-i") + 1
        prefix, env = [*tier.prefix[:at], f"MINIRUN_STATE={directory}", *tier.prefix[at:]], tier.env
    else:
        prefix, env = tier.prefix, {**tier.env, "MINIRUN_STATE": str(directory)}
    private = dataclasses.replace(tier, prefix=prefix, env=env, state_dir=directory, processes=[])
    try:
        yield private
    finally:
        private.kill_processes()
        for container_id in {p.name.removesuffix(".json") for p in directory.glob("*.json")}:
            private(["rm", "-f", container_id], timeout=60)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def private(minirun: Tier) -> Iterator[Tier]:
    with private_state(minirun) as tier:
        yield tier


@pytest.fixture
def root_private(root_minirun: Tier) -> Iterator[Tier]:
    with private_state(root_minirun) as tier:
        yield tier


def cgroup_dirs(container_id: str) -> list[str]:
    return [os.path.join(root, d) for top in Path("/sys/fs/cgroup").iterdir()
            for root, dirs, _ in os.walk(top) for d in dirs if d == container_id]


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr


# --- item 9: one corrupt record breaks nothing else --------------------------------------------


def test_a_record_of_wrong_types_breaks_nothing_else(private: Tier, names: Callable[[], str]) -> None:
    up, broken = names(), names()
    private(["run", "-d", "--name", up, "--network", "none", IMAGE, "sleep", "600"], check=0)
    private(["run", "--name", broken, "--network", "none", IMAGE, "true"], check=0)
    broken_id = private.inspect(broken)["Id"]
    path = private.state_dir / f"{broken_id}.json"
    raw = json.loads(path.read_text())
    raw["monitor_pid"] = "x"
    path.write_text(json.dumps(raw))

    for args in (["ps", "-a"], ["inspect", up], ["stats", "--no-stream", up]):
        result = private(args, check=0)
        no_traceback(result)
        assert up in result.stdout and broken not in result.stdout, result.stdout
        if args[0] == "ps":  # a list of every container: one line, naming the file it skips
            (warning,) = result.stderr.splitlines()
            assert str(path) in warning and "monitor_pid" in warning, warning
        else:  # up's record alone is read (state.find): nothing to say about another
            assert result.stderr == "", (args, result.stderr)
    missing = private(["inspect", broken], check=1)  # not found, and why
    assert missing.stdout.strip() == "[]" and str(path) in missing.stderr and "monitor_pid" in missing.stderr
    no_traceback(private(["rm", "-f", up], check=0))
    # The bad one itself: `rm ID` removes it through what the store and the kernel know
    # (and `prune` would have: see test_prune_sweeps_what_no_record_names).
    no_traceback(private(["rm", broken_id], check=0))
    no_traceback(private(["prune"], check=0))
    assert not path.exists()
    assert not (private.store_dir / "containers" / broken_id).exists()
    assert private(["ps", "-a", "-q"], check=0).stdout.split() == []


def running_with_record(tier: Tier, name: str) -> tuple[str, int, Path]:
    """A detached container to damage: its id, the host pid of its PID 1 and its record's path."""
    container_id = tier(["run", "-d", "--name", name, "--network", "none", IMAGE, "sleep", "600"],
                        check=0).stdout.strip()
    return container_id, tier.inspect(name)["State"]["Pid"], tier.state_dir / f"{container_id}.json"


@pytest.mark.parametrize("damage", ["garbage", "empty", "deleted"])
def test_a_broken_record_does_not_hide_a_running_container(private: Tier, names: Callable[[], str],
                                                           damage: str) -> None:
    name = names()
    container_id, pid, path = running_with_record(private, name)
    if damage == "deleted":
        path.unlink()
    else:
        path.write_text("" if damage == "empty" else '{"id": ')

    again = private(["run", "--name", name, "--network", "none", IMAGE, "true"], check=125)
    assert "already in use" in again.stderr, again.stderr  # no second container with that name
    no_traceback(private(["rm", "-f", name], check=0))
    wait_for(lambda: not process_exists(pid), timeout=30, what="the container's PID 1 to die")
    assert not path.exists()
    assert not (private.store_dir / "containers" / container_id).exists()
    assert not cgroup_dirs(container_id)
    private(["run", "--rm", "--name", name, "--network", "none", IMAGE, "true"], check=0)  # free again
    assert private(["ps", "-a", "-q"], check=0).stdout.split() == []


# --- item 8: rm never trusts paths or pids in the record ------------------------------------------


def plant(tier: Tier, name: str, **fields: Any) -> str:
    """Write a hostile record into the tier's state directory; its id."""
    container_id = secrets.token_hex(32)
    record = {"id": container_id, "name": name, "image": IMAGE, "image_id": "sha256:0", "command": ["sh"],
              "created": state.now(), "rootless": tier.rootless, **fields}
    path = tier.state_dir / f"{container_id}.json"
    path.write_text(json.dumps(record))
    os.chown(path, tier.uid, tier.gid)
    return container_id


def test_rm_does_not_remove_the_bundle_a_record_names(root_private: Tier, names: Callable[[], str],
                                                      tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    (victim / "upper").mkdir(parents=True)
    (victim / "upper" / "keep").write_text("precious")
    container_id = plant(root_private, names(), status="exited", bundle=str(victim))
    root_private(["rm", container_id], check=0)
    assert (victim / "upper" / "keep").read_text() == "precious"
    assert not (root_private.state_dir / f"{container_id}.json").exists()


@pytest.fixture
def victim_cgroup() -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """A cgroup that is not minirun's (PARENT/child, where the pids controller is: its v1 hierarchy
    or the v2 tree), with a process in it."""
    parent = pids_hierarchy() / f"mrtvictim-{secrets.token_hex(3)}"
    child = parent / "child"
    child.mkdir(parents=True)
    proc = subprocess.Popen(["sleep", "600"])
    try:
        (child / "cgroup.procs").write_text(str(proc.pid))
        yield child, proc
    finally:
        proc.kill()
        proc.wait()
        for path in (child, parent):
            for _ in range(100):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    wait_for(lambda: True, timeout=1)


Victim = tuple[Path, "subprocess.Popen[bytes]"]


def test_rm_does_not_touch_the_cgroup_a_record_names(root_private: Tier, names: Callable[[], str],
                                                     victim_cgroup: Victim) -> None:
    cgroup, proc = victim_cgroup
    container_id = plant(root_private, names(), status="exited", cgroup_paths=[str(cgroup)])
    root_private(["rm", container_id], check=0)
    assert cgroup.is_dir() and cgroup.parent.is_dir(), "rm removed a cgroup that is not its container's"
    assert proc.poll() is None, "rm killed a process in a cgroup that is not its container's"


@pytest.mark.parametrize("claim", ["another", "none"])
def test_exec_joins_the_containers_cgroup_not_the_one_its_record_names(
        root_private: Tier, names: Callable[[], str], victim_cgroup: Victim, claim: str) -> None:
    """exec took its cgroup from record.cgroup_paths as written (atk18): an edited record put the
    exec'd process in any cgroup (a frozen one: exec hangs; the root: out of every limit) or, with
    [], in none of the container's. Seen from inside, it must be in PID 1's cgroups, every one."""
    cgroup, _ = victim_cgroup
    name = names()
    _, _, path = running_with_record(root_private, name)
    raw = json.loads(path.read_text())
    raw["cgroup_paths"] = [str(cgroup)] if claim == "another" else []
    path.write_text(json.dumps(raw))
    out = root_private(["exec", name, "sh", "-c", "cat /proc/1/cgroup; echo --; cat /proc/self/cgroup"],
                       check=0, timeout=60).stdout
    pid1_view, exec_view = out.split("--\n")
    assert exec_view == pid1_view, f"exec'd process not in PID 1's cgroups:\n{out}"


@pytest.mark.parametrize("verb", [["rm", "-f"], ["kill"], ["stop", "-t", "1"]])
def test_no_verb_signals_an_unrelated_process_a_record_names(root_private: Tier, names: Callable[[], str],
                                                             verb: list[str]) -> None:
    """pid and start time right, "monitor" alive (this test, the process's real parent): still
    not the container's, since it is in no container cgroup and is not PID 1 of a namespace."""
    proc = subprocess.Popen(["sleep", "600"])
    try:
        container_id = plant(root_private, names(), status="running", pid=proc.pid,
                             pid_start=state.process_start_time(proc.pid), monitor_pid=os.getpid(),
                             monitor_start=state.process_start_time(os.getpid()))
        no_traceback(root_private([*verb, container_id], timeout=30))
        assert proc.poll() is None, f"`minirun {' '.join(verb)}` killed a process that is not the container's"
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("pid", [-1, 1])
def test_rm_f_of_a_record_naming_pid_minus_1_or_1_kills_nothing(root_private: Tier, names: Callable[[], str],
                                                                pid: int) -> None:
    proc = subprocess.Popen(["sleep", "600"])
    try:
        container_id = plant(root_private, names(), status="running", pid=pid, pid_start=0,
                             monitor_pid=os.getpid(), monitor_start=state.process_start_time(os.getpid()))
        no_traceback(root_private(["rm", "-f", container_id], check=0))
        assert proc.poll() is None, "rm -f signalled every process (kill(-1))"
        assert not (root_private.state_dir / f"{container_id}.json").exists()
    finally:
        proc.kill()
        proc.wait()


def test_rm_does_not_delete_links_or_files_the_network_settings_name(
        root_private: Tier, names: Callable[[], str], tmp_path: Path) -> None:
    netns = root_private.netns
    link = f"mrtv{secrets.token_hex(3)}"
    subprocess.run(["ip", "-n", netns, "link", "add", link, "type", "bridge"], check=True)
    victim = tmp_path / "victim.sock"
    victim.write_text("precious")
    try:
        bridge = plant(root_private, names(), status="exited", network_settings={
            "Mode": "bridge", "Bridge": link, "HostVeth": link, "IPAddress": "10.209.0.9", "IPPrefixLen": 16})
        slirp = plant(root_private, names(), status="exited", network_settings={
            "Mode": "slirp4netns", "Slirp4netnsSocket": str(victim), "Slirp4netnsPid": 0})
        root_private(["rm", bridge, slirp], check=0)
        shown = subprocess.run(["ip", "-n", netns, "link", "show", link], capture_output=True, check=False)
        assert shown.returncode == 0, "rm deleted a link the record named"
        assert victim.read_text() == "precious", "rm deleted a file the record named"
    finally:
        subprocess.run(["ip", "-n", netns, "link", "del", link], capture_output=True, check=False)


# --- item 11: prune sweeps what a SIGKILL at the wrong moment left ---------------------------------


def test_prune_sweeps_what_no_record_names(root_private: Tier, tmp_path: Path) -> None:
    state_dir, store = root_private.state_dir, root_private.store_dir
    ids = [secrets.token_hex(32) for _ in range(6)]
    # Killed in a removal, after the bundle went: where minirun puts containers (v1: in each
    # hierarchy, this one the pids one; v2: the one tree).
    cgroup = next(p for p in cgroups.planned(ids[0], cgroups.find_places(rootless=False))
                  if p.is_relative_to(pids_hierarchy()))
    cgroup.mkdir(parents=True)
    mine, foreign = store / "containers" / ids[1], store / "containers" / ids[2]
    ownerless = store / "containers" / secrets.token_hex(32)  # its state directory was removed
    for bundle, owner in ((mine, state_dir), (foreign, tmp_path), (ownerless, tmp_path / "gone")):
        (bundle / "upper").mkdir(parents=True)
        (bundle / f"{bundle.name}-json.log").write_text("{}\n")
        os.symlink(str(owner), bundle / "state")
    dead = subprocess.Popen(["true"])
    dead.wait()
    abandoned = state_dir / f".{ids[3]}.json.{dead.pid}.k2j4h1.tmp"
    live = state_dir / f".{ids[3]}.json.{os.getpid()}.z9y8x7.tmp"  # a live writer's: kept
    sockets = [state_dir / f"{ids[4][:12]}.attach", state_dir / f"slirp4netns-{ids[5][:12]}.sock"]
    for path in (abandoned, live, *sockets):
        path.write_text("")
    garbage = state_dir / f"{ids[4]}.json"
    garbage.write_text("{")
    try:
        result = root_private(["prune"], check=0)
        no_traceback(result)
        assert not cgroup.exists(), "prune left a cgroup no record names"
        assert not mine.exists(), "prune left a container directory of this state dir"
        assert foreign.exists(), "prune removed a container directory of another state dir"
        assert not ownerless.exists(), "prune left a container directory whose state dir is gone"
        assert not abandoned.exists() and live.exists()
        assert not [p for p in sockets if p.exists()], "prune left monitor/slirp4netns sockets"
        assert not garbage.exists(), "prune left an unreadable record of a stopped container"
        assert {ids[0], ids[1], ids[4]} <= set(result.stdout.split())
    finally:
        with contextlib.suppress(FileNotFoundError):
            cgroup.rmdir()
        shutil.rmtree(mine, ignore_errors=True)
        shutil.rmtree(foreign, ignore_errors=True)
        shutil.rmtree(ownerless, ignore_errors=True)
        live.unlink()


# --- item 12: a full state directory loses no exit code -----------------------------------------


@pytest.fixture
def tiny_state(minirun: Tier) -> Iterator[Tier]:
    """The tier with MINIRUN_STATE on a 256 KiB tmpfs of its own."""
    with private_state(minirun) as tier:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=256k,mode=0700,uid={tier.uid},gid={tier.gid}",
                        "mrt-tiny-state", str(tier.state_dir)], check=True)
        try:
            yield tier
        finally:
            tier.kill_processes()
            for path in tier.state_dir.glob("fill*"):
                path.unlink()
            for container_id in {p.name.removesuffix(".json") for p in tier.state_dir.glob("*.json")}:
                tier(["rm", "-f", container_id], timeout=60)
            subprocess.run(["umount", str(tier.state_dir)], check=True)


def fill(directory: Path) -> None:
    """Fill the file system up to the last byte."""
    with contextlib.suppress(OSError), open(directory / "fill", "wb", buffering=0) as f:
        while True:
            f.write(b"\0" * 4096)
    with contextlib.suppress(OSError), open(directory / "fill-tail", "wb", buffering=0) as f:
        for _ in range(4096):
            f.write(b"\0")


def test_a_full_state_dir_keeps_the_exit_code(tiny_state: Tier, names: Callable[[], str]) -> None:
    name = names()
    proc = tiny_state.popen(["run", "--name", name, "--network", "none", IMAGE, "sh", "-c",
                             "trap 'exit 7' TERM; while :; do sleep 0.1; done"])
    pid = wait_running(tiny_state, name, proc)["State"]["Pid"]
    fill(tiny_state.state_dir)
    os.kill(pid, signal.SIGTERM)  # PID 1's trap: exit 7, with no room left for the record
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 7, f"minirun run: {proc.returncode}\n{err}"
    assert "Traceback" not in err, err
    assert str(tiny_state.state_dir) in err, f"the error names no path: {err}"
    state_ = tiny_state.inspect(name)["State"]
    assert (state_["Status"], state_["ExitCode"]) == ("exited", 7), state_


# Values of the right JSON type at the top but odd inside, or out of range: each crashed a verb
# with a traceback (OverflowError from pidfd_open, TypeError in exec, AttributeError in ps,
# port and logs, ValueError from ps's date). Attack review of issues 11 and 12.
ODD_VALUES = {
    "pid": ("pid", 10**30),
    "monitor_start": ("monitor_start", 2**70),
    "exit_code": ("exit_code", 10**9),
    "created": ("created", "garbage"),
    "env": ("config", {"Env": 5, "Tty": [1], "User": 7}),
    "log_config": ("host_config", {"LogConfig": 5, "Capabilities": 7}),
    "ports": ("network_settings", {"Ports": 5}),
}


@pytest.mark.parametrize("odd", sorted(ODD_VALUES))
def test_a_record_with_odd_values_gets_one_line_never_a_traceback(private: Tier, names: Callable[[], str],
                                                                  odd: str) -> None:
    name = names()
    container_id, pid, path = running_with_record(private, name)
    raw = json.loads(path.read_text())
    field, value = ODD_VALUES[odd]
    raw[field] = {**raw[field], **value} if isinstance(value, dict) else value
    path.write_text(json.dumps(raw))
    verbs = (["ps", "-a"], ["inspect", name], ["logs", name], ["port", name], ["exec", name, "true"],
             ["kill", name], ["stop", "-t", "1", name], ["start", name], ["attach", name], ["wait", name])
    for args in verbs:
        result = private(args, timeout=30)
        no_traceback(result)
        assert result.returncode in (0, 1, 125), (args, result.returncode, result.stderr)
        assert str(path) in result.stderr, (args, result.stderr)  # the one invalid record, named
        assert len(result.stderr.splitlines()) <= 2, (args, result.stderr)
    assert process_exists(pid), "nothing acted on the odd record's values"
    no_traceback(private(["rm", "-f", container_id], check=0))  # through what the kernel knows
    wait_for(lambda: not process_exists(pid), timeout=30, what="the container's PID 1 to die")


def test_a_record_that_lies_about_its_monitor_does_not_make_rm_leave_it_running(
        private: Tier, names: Callable[[], str]) -> None:
    """A record whose monitor_start names no live process looks "dead" (exited, its monitor
    gone): `rm` removed its directory and reported success while the container ran on, and
    rootless (no cgroup to kill) nothing could find it afterwards. The kernel knows better: its
    detached monitor (container.find_detached_monitor) still runs."""
    name = names()
    container_id, pid, path = running_with_record(private, name)
    raw = json.loads(path.read_text())
    raw["monitor_start"] += 1
    path.write_text(json.dumps(raw))
    refused = private(["rm", name], check=1)
    assert "running" in refused.stderr, refused.stderr
    assert (private.store_dir / "containers" / container_id).exists(), "rm removed a running one's files"
    no_traceback(private(["rm", "-f", name], check=0))
    wait_for(lambda: not process_exists(pid), timeout=30, what="the container's PID 1 to die")
    assert not (private.store_dir / "containers" / container_id).exists()


def test_a_link_planted_as_the_exit_code_file_is_never_written_through(private: Tier,
                                                                      names: Callable[[], str]) -> None:
    """Attack review of issues 11/12: STATE/ID.exit replaced by a symbolic link (rootless the state
    directory is in the user's $XDG_RUNTIME_DIR: any process of the user can) made the monitor
    write the exit code into the file it names, and a start (O_TRUNC) empty it. Never followed
    now (O_NOFOLLOW): the target stays as it was, the record keeps the code, a start says why not."""
    where = Path(tempfile.mkdtemp(prefix="mrt-victim-"))
    try:
        os.chmod(where, 0o755)
        victim = where / "precious"
        victim.write_text("precious\n")
        os.chown(victim, private.uid, private.gid)  # the tier's user could write it: only the link stops it
        name = names()
        container_id, _, _ = running_with_record(private, name)
        exit_file = private.state_dir / f"{container_id}.exit"
        exit_file.unlink()
        exit_file.symlink_to(victim)
        private(["kill", name], check=0)
        exited = wait_for(lambda: (s := private.inspect(name)["State"])["Status"] == "exited" and s,
                          timeout=30, what="the exit recorded")
        assert exited["ExitCode"] == 137, exited
        assert victim.read_text() == "precious\n", "the monitor wrote through the link"
        again = private(["start", name], check=1)  # (docker start's code for a start that fails)
        assert "symbolic link" in one_line_error(again)
        assert victim.read_text() == "precious\n", "the start truncated through the link"
        assert exit_file.is_symlink()
        private(["rm", "-f", name], check=0)
        assert victim.read_text() == "precious\n" and not exit_file.is_symlink()
    finally:
        shutil.rmtree(where, ignore_errors=True)


def test_a_link_planted_as_the_lock_or_a_record_is_never_followed(private: Tier,
                                                                  names: Callable[[], str]) -> None:
    """The other files of the state directory (the same attack review): the lock, opened with
    O_CREAT, made the file a planted link named (as the user, or as root); a record that is a link
    was read from wherever it pointed. Now ELOOP: one line and 125, or the record is skipped."""
    where = Path(tempfile.mkdtemp(prefix="mrt-victim-"))
    try:
        os.chmod(where, 0o777)
        lock = private.state_dir / "containers.lock"
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
        lock.symlink_to(where / "created-through-the-lock")
        refused = private(["run", "--rm", "--name", names(), "--network", "none", IMAGE, "true"], check=125)
        assert "containers.lock" in one_line_error(refused)
        assert not (where / "created-through-the-lock").exists()
        lock.unlink()
        name = names()
        container_id, _, record = running_with_record(private, name)
        elsewhere = where / "record.json"
        shutil.copy(record, elsewhere)
        record.unlink()
        record.symlink_to(elsewhere)
        listed = private(["ps", "-a", "--format", "{{.Names}}"], check=0)
        assert name not in listed.stdout and "ignoring the invalid record" in listed.stderr, listed
        private(["rm", "-f", container_id], check=0)
        assert elsewhere.exists(), "what the link named is not removed"
    finally:
        shutil.rmtree(where, ignore_errors=True)
