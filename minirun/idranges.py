"""Per-container id ranges: which rootful container holds which host uids and gids.

By default every rootful container gets host ids of its own (podman's `--userns=auto`): its
root is host uid U, its uid N is U+N, and no other container has any of them. With one range
shared by all (docker's userns-remap, `--userns=shared` here), container A's root *is*
container B's root on the host: a setuid program A leaves in a volume, run by a host user,
reads B's 0600 files (issue 12). With ranges of their own, A's ids own nothing of B's.

Where the ids come from: root's subordinate ids (subuid(5), subgid(5)). The first 65536 of
root's first line are the shared range (`--userns=shared`, 1000000-1065535 with install.sh's
line: what the labs show); the rest of root's lines are the pool. Without more than that one
line, minirun uses a default pool (DEFAULT_POOL: 655360000-2147418111) and `minirun doctor` says
so; install.sh writes that default into /etc/subuid and /etc/subgid. Every other user's
lines are left out of the pool: their rootless containers run there.

The book: one JSON file for the host (the initial user namespace, whatever MINIRUN_STATE says,
as the address book is one per network namespace), read and rewritten under flock(2) on a lock
file of its own. A claim names the range and its holders: the container (state directory + id)
and those that joined its namespaces (sharing.py), who share its range. The claim is written
under the state directory's lock in the same step as the record ("record before you create":
a SIGKILL between the two leaves a claim whose record is missing, which `prune` reclaims); it
goes when its last holder is removed (rm, --rm, prune).
"""

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from minirun.errors import MinirunError
from minirun.fsutil import atomic_write_json, locked, remove_abandoned_tmp

BOOK_DIR = Path("/run/minirun/idranges")  # root's; /run is emptied at boot with the containers
SHARED_SIZE = 65536  # --userns=shared, and the default size of a range of its own (podman's)
DEFAULT_ROOT = (1000000, 65536)  # root's range without a line (install.sh writes it)
# Without a second range for root: 22767 ranges of 65536, above every range useradd hands out
# (SUB_UID_MAX, login.defs(5): 600100000) and below 2^31, where tools that print ids as signed
# ints (procps's `ps -o uid`) show negative numbers, and where podman's `containers` range begins.
DEFAULT_POOL = (655360000, 22767 * 65536)
MAX_ID = 2**32 - 2  # (uid_t)-1 is "no id" to chown(2) and setresuid(2): never map it
SUBID_FILES = {"uid": ("MINIRUN_SUBUID", "/etc/subuid"), "gid": ("MINIRUN_SUBGID", "/etc/subgid")}


class IdRange(NamedTuple):
    """Container ids 0..count-1 are host uids uid.. and gids gid.."""

    uid: int
    gid: int
    count: int  # type: ignore[assignment]  # hides tuple.count(), which nothing here calls

    def as_list(self) -> list[int]:
        return [self.uid, self.gid, self.count]

    def maps(self) -> dict[str, list[str]]:
        """podman inspect's HostConfig.IDMappings."""
        return {"UidMap": [f"0:{self.uid}:{self.count}"], "GidMap": [f"0:{self.gid}:{self.count}"]}


# --- where the ids come from: root's lines in /etc/subuid and /etc/subgid ------------------------


def subid_file(kind: str) -> str:
    """/etc/subuid or /etc/subgid; MINIRUN_SUBUID / MINIRUN_SUBGID name another file (tests)."""
    variable, default = SUBID_FILES[kind]
    return os.environ.get(variable) or default


def read_lines(path: str) -> list[tuple[str, int, int]]:
    """Every `user:start:count` line of a subordinate id file (subuid(5)); none if it is missing."""
    lines = []
    try:
        with open(path) as f:
            for line in f:
                fields = line.strip().split(":")
                if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit() and int(fields[2]) > 0:
                    lines.append((fields[0], int(fields[1]), int(fields[2])))
    except OSError:
        return []
    return lines


def _is_root(user: str) -> bool:
    return user in ("root", "0")


def shared_range(kind: str) -> tuple[int, int]:
    """The start and size of `--userns=shared`: the first 65536 ids of root's first line."""
    start, count = next(((s, c) for u, s, c in read_lines(subid_file(kind)) if _is_root(u)), DEFAULT_ROOT)
    return start, min(count, SHARED_SIZE)


class Pool(NamedTuple):
    """The host ids per-container ranges are cut from, as [start, end) intervals, per kind."""

    uids: list[tuple[int, int]]
    gids: list[tuple[int, int]]
    default: bool  # root has no range beyond the shared one: DEFAULT_POOL

    def describe(self) -> str:
        shown = ", ".join(f"{s}-{e - 1}" for s, e in self.uids) or "none"
        return f"uids {shown}" + (" (the default pool: root has no second range in /etc/subuid)"
                                  if self.default else "")


def pool() -> Pool:
    """Root's lines minus the shared range, or the default pool; minus every other user's lines."""
    kinds: dict[str, list[tuple[int, int]]] = {}
    default = False
    for kind in ("uid", "gid"):
        lines = read_lines(subid_file(kind))
        start, count = shared_range(kind)
        shared = [(start, start + count)]
        mine = _subtract([(s, s + c) for u, s, c in lines if _is_root(u)], shared)
        if not mine:
            mine, default = [(DEFAULT_POOL[0], DEFAULT_POOL[0] + DEFAULT_POOL[1])], True
        others = [(s, s + c) for u, s, c in lines if not _is_root(u)]
        kinds[kind] = _subtract(mine, others + shared + [(MAX_ID + 1, 2**33)])
    return Pool(kinds["uid"], kinds["gid"], default)


def _subtract(have: list[tuple[int, int]], minus: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """[start, end) intervals of `have` that are in none of `minus`."""
    result = sorted(have)
    for low, high in minus:
        result = [piece for start, end in result
                  for piece in ((start, min(end, low)), (max(start, high), end)) if piece[0] < piece[1]]
    return sorted(result)


def first_fit(free: list[tuple[int, int]], taken: list[tuple[int, int]], size: int) -> int | None:
    """The lowest start of `size` ids inside `free` that overlaps nothing `taken`."""
    for start, end in free:
        cursor = start
        for low, high in sorted(taken):
            if high <= cursor:
                continue
            if low >= cursor + size:
                break
            cursor = max(cursor, high)
        if cursor + size <= end:
            return cursor
    return None


# --- the book: claims, under its lock ------------------------------------------------------------


class Claim(NamedTuple):
    uid: int
    gid: int
    count: int  # type: ignore[assignment]  # hides tuple.count(), as IdRange's
    store: str  # where its shifted layer copies are (userns.layer_dirs), removed with the range
    holders: list[list[str]]  # [state directory, container id]; changed in place, under the book's lock

    @property
    def range(self) -> IdRange:
        return IdRange(self.uid, self.gid, self.count)


@contextlib.contextmanager
def opened(book_dir: Path = BOOK_DIR) -> Iterator[list[Claim]]:
    """Hold the book's lock, lend its claims, write them back (remove the file when empty)."""
    book_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = book_dir / "book.json"
    with locked(book_dir / "book.lock"):
        claims: list[Claim] = []
        with contextlib.suppress(FileNotFoundError):
            try:
                claims = [Claim(**c) for c in json.loads(path.read_text())["claims"]]
                for c in claims:
                    if not all(isinstance(n, int) and n >= 0 for n in (c.uid, c.gid, c.count)) or not all(
                            isinstance(h, list) and len(h) == 2 and all(isinstance(x, str) for x in h)
                            for h in c.holders) or not isinstance(c.store, str):
                        raise ValueError(f"a bad claim: {c._asdict()}")
            except (ValueError, TypeError, KeyError) as e:
                # Never hand out ids that may be in use: a broken book stops allocation, with its path.
                raise MinirunError(f"the id range book {path} is corrupt ({e}): remove it when no "
                                   "rootful container runs") from None
        yield claims
        if claims:
            atomic_write_json(path, {"claims": [c._asdict() for c in claims]}, mode=0o600)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def holder(state_dir: Path, container_id: str) -> list[str]:
    return [os.path.abspath(state_dir), container_id]


def allocate(state_dir: Path, container_id: str, size: int, store: Path,
             book_dir: Path = BOOK_DIR) -> IdRange:
    """A range of `size` ids that no claim overlaps, claimed for the container. Called under the
    state directory's lock, in the same step as its record (runtime.create_record)."""
    free = pool()
    with opened(book_dir) as claims:
        uid = first_fit(free.uids, [(c.uid, c.uid + c.count) for c in claims], size)
        gid = first_fit(free.gids, [(c.gid, c.gid + c.count) for c in claims], size)
        if uid is None or gid is None:
            raise MinirunError(f"no free range of {size} ids left for a container of its own in root's "
                               f"subordinate ids ({free.describe()}; {len(claims)} held): remove "
                               "containers, give root more in /etc/subuid and /etc/subgid, or use "
                               "--userns=auto:size=N with a smaller N, or --userns=shared")
        claims.append(Claim(uid, gid, size, str(store), [holder(state_dir, container_id)]))
        return IdRange(uid, gid, size)


def join(state_dir: Path, container_id: str, id_range: IdRange, book_dir: Path = BOOK_DIR) -> None:
    """A container that joins another's user namespace holds its range too: the range stays
    claimed while either of them exists (its processes use those ids as long as it runs)."""
    with opened(book_dir) as claims:
        for claim in claims:
            if claim.range == id_range and holder(state_dir, container_id) not in claim.holders:
                claim.holders.append(holder(state_dir, container_id))


def release(state_dir: Path, container_id: str, before_free: Callable[[Claim], None],
            book_dir: Path = BOOK_DIR) -> None:
    """The container is gone: drop it from its claim, and free a claim it held last
    (`before_free` runs first, while nobody else can be given those ids)."""
    if not (book_dir / "book.json").exists():
        return
    gone = holder(state_dir, container_id)
    _drop(book_dir, lambda h: h == gone, before_free)


def sweep(state_dir: Path, before_free: Callable[[Claim], None], book_dir: Path = BOOK_DIR) -> int:
    """prune: drop every holder whose record is gone (a SIGKILL between claim and record, or a
    record removed by hand). Ours are judged under our state lock, which prune holds; another
    state directory's only if its lock is free now (else it may be between claim and record),
    or if that directory is gone altogether. Returns how many holders went."""
    mine = os.path.abspath(state_dir)

    def stale(h: list[str]) -> bool:
        directory, container_id = Path(h[0]), h[1]
        if h[0] == mine:
            return not (directory / f"{container_id}.json").exists()
        if not directory.is_dir():
            return True
        try:
            fd = os.open(directory / "containers.lock", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return not (directory / f"{container_id}.json").exists()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # let go when fd is closed
            return not (directory / f"{container_id}.json").exists()
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    if not book_dir.is_dir():
        return 0
    remove_abandoned_tmp(book_dir)  # a writer SIGKILLed half-way
    return _drop(book_dir, stale, before_free)


def _drop(book_dir: Path, which: Callable[[list[str]], bool], before_free: Callable[[Claim], None]) -> int:
    dropped = 0
    with opened(book_dir) as claims:
        for claim in list(claims):
            kept = [h for h in claim.holders if not which(h)]
            dropped += len(claim.holders) - len(kept)
            if kept:
                claim.holders[:] = kept
                continue
            before_free(claim)
            claims.remove(claim)
    return dropped


def claims_of(container_id: str, book_dir: Path = BOOK_DIR) -> list[dict[str, Any]]:
    """The claims a container holds (for tests and `doctor`), read without the lock."""
    try:
        raw = json.loads((book_dir / "book.json").read_text())["claims"]
    except (OSError, ValueError, KeyError):
        return []
    return [c for c in raw if any(h[1] == container_id for h in c["holders"])]
