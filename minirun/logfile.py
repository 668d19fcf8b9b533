"""A container's stdout and stderr on disk, in docker's json-file format, and reading them back.

One JSON object a line, as docker's json-file driver writes them (and `docker logs` reads):

    {"log":"hello\\n","stream":"stdout","time":"2026-11-30T18:20:54.123456789Z"}

A line longer than 16 KiB is cut into entries of 16 KiB, the last one ending in "\\n" (docker
does the same: its logger's buffer is 16 KiB). An unfinished line is kept until its newline
arrives, or written as it is when the container ends.

Rotation (`--log-opt max-size=10m --log-opt max-file=3`): when the next write would take
ID-json.log over max-size, it becomes ID-json.log.1 (the .1 becomes .2 ..., beyond max-file
files the oldest goes), as docker does. Without max-size the log grows without a cap, as
docker's json-file default.

The monitor writes the log (writer below), `minirun logs` reads it (snapshot, follow). Both
ways a chunk of many lines goes through a handful of C-level calls, never one Python call per
line: the writer is on the monitor's hot path (`yes` prints 2-byte lines), and `logs` of a
million lines took ~5 s when each was its own json.loads.
"""

import contextlib
import json
import operator
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO, Literal, NamedTuple

# How much of a log file is read (and decoded) at a time: 128 KiB decoded a million lines ~20%
# faster than 1 MiB here (the text, its copy as an array and its objects stay in the caches).
CHUNK = 128 * 1024

Stream = Literal["stdout", "stderr"]
MAX_LINE = 16 * 1024


class Options(NamedTuple):
    """`--log-driver` and `--log-opt`, decided before the container starts."""

    driver: Literal["json-file", "none"] = "json-file"
    max_size: int = 0  # bytes; 0: no cap
    max_files: int = 1


def parse_options(driver: str, opts: list[str]) -> Options:
    """docker's --log-driver json-file|none and --log-opt max-size=10m, max-file=3."""
    from minirun.errors import MinirunError
    from minirun.spec import parse_size

    if driver not in ("json-file", "none"):
        raise MinirunError(f"--log-driver {driver!r}: minirun knows json-file (default) and none")
    max_size, max_files = 0, 1
    for opt in opts:
        key, sep, value = opt.partition("=")
        if not sep:
            raise MinirunError(f"--log-opt {opt!r}: expected KEY=VALUE")
        if key == "max-size":
            max_size = parse_size("--log-opt max-size", value)
        elif key == "max-file":
            if not value.isdigit() or not 1 <= int(value) <= 100:
                raise MinirunError(f"--log-opt max-file={value!r}: a number of files from 1 to 100")
            max_files = int(value)
        else:
            raise MinirunError(f"--log-opt {key!r}: minirun knows max-size and max-file")
    if opts and driver == "none":
        raise MinirunError("--log-opt has no meaning with --log-driver none")
    return Options(driver, max_size, max_files)  # type: ignore[arg-type]


def timestamp(ns: int | None = None) -> str:
    """RFC 3339 with nanoseconds, UTC, as docker writes "time"."""
    ns = time.time_ns() if ns is None else ns
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


class Writer:
    """Appends entries to one container's log, rotating it by size."""

    def __init__(self, path: str, options: Options) -> None:
        self.path = path
        self.options = options
        self.pending: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.size = os.fstat(self.fd).st_size

    def write(self, stream: Stream, data: bytes) -> None:
        data = self.pending[stream] + data
        cut = data.rfind(b"\n")
        complete, rest = (data[:cut], data[cut + 1:]) if cut >= 0 else (None, data)
        out = self._encode(complete, stream, complete=True) if complete is not None else []
        while len(rest) >= MAX_LINE:  # a very long line: 16 KiB entries without "\n"
            out += self._encode(rest[:MAX_LINE], stream, complete=False)
            rest = rest[MAX_LINE:]
        self.pending[stream] = rest
        if out:
            self._append(out)

    def close(self) -> None:
        """The container ended: its unfinished lines are written as they are."""
        for stream in ("stdout", "stderr"):
            if self.pending[stream]:
                self._append(self._encode(self.pending[stream], stream, complete=False))
                self.pending[stream] = b""
        os.close(self.fd)

    @staticmethod
    def _encode(text: bytes, stream: str, complete: bool) -> list[bytes]:
        """Lines (without their final "\\n") as JSON objects, without a Python loop per line.

        Without a backslash in the text, the only "\\n" in the JSON-encoded text is an
        escaped newline: one replace() ends an entry there and starts the next. With one, the
        list of lines is encoded with a raw newline as the separator: inside the encoded
        strings every newline is escaped, so each '"<raw newline>"' is a line boundary."""
        tail = f'","stream":"{stream}","time":"{timestamp()}"}}\n'.encode()
        last = (b"\\n" if complete else b"") + tail
        decoded = text.decode("utf-8", "replace")
        if b"\\" not in text:
            body = json.dumps(decoded).encode()[:-1]  # '"a\\nb' (closing quote dropped)
            return [b'{"log":', body.replace(b"\\n", b"\\n" + tail + b'{"log":"'), last]
        lines = json.dumps(decoded.split("\n"), separators=("\n", ":")).encode()[1:-2]
        return [b'{"log":', lines.replace(b'"\n"', b"\\n" + tail + b'{"log":"'), last]

    def _append(self, parts: list[bytes]) -> None:
        """Pieces go out with one writev(2): joining megabytes first would copy them again."""
        size = sum(len(p) for p in parts)
        limit = self.options.max_size
        if limit and self.size + size > limit:
            self._append_rotating(b"".join(parts), limit)
            return
        written = os.writev(self.fd, parts)
        if written < size:  # a short write (a full disk, a signal): the rest, the slow way
            view = memoryview(b"".join(parts))[written:]
            while view:
                view = view[os.write(self.fd, view):]
        self.size += size

    def _append_rotating(self, out: bytes, limit: int) -> None:
        """Fill the file up to max-size with whole entries, rotate, go on (an entry longer than
        max-size alone goes into a file of its own)."""
        while out:
            room = limit - self.size
            cut = out.rfind(b"\n", 0, max(room, 0)) + 1 if room > 0 else 0
            if cut == 0 and self.size == 0:
                cut = out.find(b"\n") + 1 or len(out)
            if cut == 0:
                self._rotate()
                continue
            view = memoryview(out)[:cut]
            while view:
                view = view[os.write(self.fd, view):]
            self.size += cut
            out = out[cut:]

    def _rotate(self) -> None:
        os.close(self.fd)
        files = self.options.max_files
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{self.path}.{files - 1}" if files > 1 else self.path)
        for n in range(files - 2, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                os.rename(f"{self.path}.{n}", f"{self.path}.{n + 1}")
        if files > 1:
            os.rename(self.path, f"{self.path}.1")
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.size = 0


# --- reading it back (`minirun logs`) -------------------------------------------------------------
#
# A million-line log is a million JSON objects: one json.loads per line (plus the encoding it
# detects in bytes) took ~5 s. A chunk of lines is decoded in one json.loads as one JSON array
# instead, and handed on as columns (Batch), so that nothing runs a line of Python per entry.
# The per-line rule (parse) stays the reference: a chunk the one-call path cannot prove it read
# exactly as parse would (a corrupt or torn line, an odd field) is decoded line by line by it.


class Entry(NamedTuple):
    log: str
    stream: str
    time: str


class Batch(NamedTuple):
    """Entries one after the other, as columns: entry i is (logs[i], streams[i], times[i])."""

    logs: Sequence[str]
    streams: Sequence[str]
    times: Sequence[str]


FIELDS = tuple(operator.itemgetter(key) for key in ("log", "stream", "time"))


def files(path: str) -> list[str]:
    """The log and its rotated files, oldest first."""
    rotated = []
    n = 1
    while os.path.exists(f"{path}.{n}"):
        rotated.append(f"{path}.{n}")
        n += 1
    return [*reversed(rotated), *([path] if os.path.exists(path) else [])]


def parse(line: bytes) -> Entry | None:
    try:
        value = json.loads(line)
        return Entry(str(value["log"]), str(value["stream"]), str(value["time"]))
    except (ValueError, KeyError, TypeError):
        return None  # a line cut by a crash mid-write: skipped, as docker does


def decode(block: bytes) -> Batch:
    """The entries of `block.split(b"\n")` (complete lines, joined by their newlines), as
    parse reads them: a line it rejects is skipped."""
    batch = _decode_at_once(block)
    if batch is not None:
        return batch
    entries = [entry for line in block.split(b"\n") if (entry := parse(line)) is not None]
    logs, streams, times = zip(*entries, strict=True) if entries else ((), (), ())
    return Batch(logs, streams, times)


def _decode_at_once(block: bytes) -> Batch | None:
    """The lines as one JSON array in one json.loads, or None where that could differ from
    parse, line by line. It is the same when every line is one object {"log": str, "stream":
    str, "time": str} and nothing else, which is checked without a loop per line:
    - every line starts with "{" and ends with "}", and the raw newlines stay between them (a
      JSON string holds no raw newline, so neither brace is inside a string): a line starts
      an object and ends one;
    - the array has as many objects as there are lines, each with exactly those three string
      fields (so no object holds another): no line holds two objects, none spans two lines.
    A torn or corrupt line (a crash mid-write, then the next entry appended to it) fails one of
    these or json.loads itself."""
    try:
        text = block.decode("utf-8", "surrogatepass")  # as json.loads decodes bytes
    except UnicodeDecodeError:
        return None
    array = text.replace("}\n{", "},\n{")  # the raw newline stays (no string spans two lines)
    lines = text.count("\n") + 1
    if not (text.startswith("{") and text.endswith("}") and len(array) - len(text) == lines - 1):
        return None  # a newline without "}" before it and "{" after it
    try:
        values = json.loads("[" + array + "]")
        logs, streams, times = (list(map(field, values)) for field in FIELDS)  # KeyError, TypeError
    except (ValueError, KeyError, TypeError):
        return None
    if len(values) != lines or set(map(len, values)) != {3}:
        return None
    if {*map(type, logs), *map(type, streams), *map(type, times)} != {str}:
        return None
    return Batch(logs, streams, times)


def snapshot(path: str, tail: int | None = None) -> tuple[Iterator[Batch], int]:
    """The entries so far, oldest first, and where in the current file they end (to follow on).
    With `tail`, only the last `tail` lines of them, read from the end backwards (as docker
    does): `--tail 10` of a huge log reads a chunk, not the log. The container decides how big
    its log grows, so the files are read a chunk at a time and at most `tail` lines are held
    (`logs --tail 1` of a 100 MB log took 733 MB before: attack review of issue 11)."""
    end = _complete_lines_end(path)
    if tail is None:
        return map(decode, _blocks(path, end)), end
    lines: list[bytes] = []
    for name in reversed(files(path)):
        if len(lines) >= tail:
            break
        lines = _last_lines(name, end if name == path else None, tail - len(lines)) + lines
    return map(decode, [b"\n".join(lines)] if lines else []), end


def _last_lines(name: str, limit: int | None, count: int) -> list[bytes]:
    """The last `count` complete lines of one file (of its first `limit` bytes), read backwards
    a chunk at a time until count + 1 newlines (the one before the first line) or the start."""
    chunks: list[bytes] = []
    try:
        with open(name, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            at = size if limit is None else min(limit, size)
            newlines = 0
            while at > 0 and newlines <= count:
                start = max(0, at - CHUNK)
                f.seek(start)
                chunks.append(f.read(at - start))
                newlines += chunks[-1].count(b"\n")
                at = start
    except FileNotFoundError:
        return []
    # After the last newline: mid-write. Short of the start, the first line began before what
    # was read (count + 1 newlines: one line too many).
    lines = b"".join(reversed(chunks)).split(b"\n")[:-1]
    return lines[-count:] if count > 0 else []


def _complete_lines_end(path: str) -> int:
    """Where the last complete line of the current file ends now (what follows is mid-write)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            at = size
            while at > 0:
                start = max(0, at - CHUNK)
                f.seek(start)
                newline = f.read(at - start).rfind(b"\n")
                if newline >= 0:
                    return start + newline + 1
                at = start
    except FileNotFoundError:
        pass
    return 0


def _blocks(path: str, end: int) -> Iterator[bytes]:
    """Every complete line of the rotated files and of the current one up to `end`, in order, a
    chunk at a time: each block is whole lines joined by their newlines (the last one's cut)."""
    for name in files(path):
        limit = end if name == path else None
        try:
            f = open(name, "rb")  # noqa: SIM115 (a generator: closed in finally)
        except FileNotFoundError:
            continue
        try:
            read, begun = 0, []  # begun: a line's start, from earlier chunks (linear however long)
            while limit is None or read < limit:
                chunk = f.read(CHUNK if limit is None else min(CHUNK, limit - read))
                if not chunk:
                    break
                read += len(chunk)
                cut = chunk.rfind(b"\n")
                if cut < 0:
                    begun.append(chunk)
                    continue
                yield b"".join([*begun, chunk[:cut]])
                begun = [chunk[cut + 1:]]
        finally:
            f.close()


def follow(path: str, offset: int, still_running: Callable[[], bool],
           interval: float = 0.1) -> Iterator[Batch]:
    """New entries of the current file from `offset` on (a batch a read), until the container has ended and
    the file is read to its end. A rotation (the file replaced) starts again at the new file."""
    f = None
    buffer = b""
    try:
        while True:
            if f is None:
                try:
                    f = open(path, "rb")  # noqa: SIM115 (closed in finally, reopened on rotation)
                    f.seek(offset)
                except FileNotFoundError:
                    f = None
            running = still_running()  # asked before reading: what was written before it ended is read
            chunk = f.read() if f is not None else b""
            if chunk:
                buffer += chunk
                cut = buffer.rfind(b"\n")
                if cut >= 0:
                    yield decode(buffer[:cut])
                    buffer = buffer[cut + 1:]
                continue
            if not running:
                return
            if f is not None and _rotated(f, path):
                f.close()
                f, offset, buffer = None, 0, b""
                continue
            time.sleep(interval)
    finally:
        if f is not None:
            f.close()


def _rotated(f: BinaryIO, path: str) -> bool:
    try:
        return os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
        return True
