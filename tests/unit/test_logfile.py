"""Reading the json-file log back: a chunk of lines is decoded in one json.loads (logfile.decode),
and must give exactly what the per-line rule (logfile.parse) gives, line by line, whatever the
file holds: a line torn by a crash with the next entry appended to it, a torn last line, lines
that are JSON only together. Logs are written by the real Writer, then damaged by hand."""

import random
from pathlib import Path

import pytest

from minirun import logfile

T = "2026-12-01T16:54:30.350745515Z"


def entry(log: str, stream: str = "stdout") -> bytes:
    return b'{"log":"%s","stream":"%s","time":"%s"}' % (log.encode(), stream.encode(), T.encode())


def line_by_line(block: bytes) -> list[logfile.Entry]:
    """The reference: parse, one line at a time (what `minirun logs` did before batches)."""
    return [e for line in block.split(b"\n") if (e := logfile.parse(line)) is not None]


def decoded(block: bytes) -> list[logfile.Entry]:
    batch = logfile.decode(block)
    return [logfile.Entry(*row) for row in zip(*batch, strict=True)]


def written(tmp_path: Path, *lines: bytes) -> Path:
    """A log the real Writer wrote, one entry per line of text."""
    path = tmp_path / "c-json.log"
    writer = logfile.Writer(str(path), logfile.Options())
    for text in lines:
        writer.write("stdout", text)
    writer.close()
    return path


def test_a_corrupt_line_in_the_middle_of_a_chunk_loses_only_itself(tmp_path: Path) -> None:
    path = written(tmp_path, b"one\ntwo\nthree\n")
    good = path.read_bytes().splitlines()
    # The monitor died mid-write, a restart appended the next entry to the torn one.
    torn = good[1][:20] + good[1]
    block = b"\n".join([good[0], torn, good[2], entry("four\\n", "stderr")])
    assert [e.log for e in decoded(block)] == ["one\n", "three\n", "four\n"]
    assert decoded(block) == line_by_line(block)
    # Not valid UTF-8, NUL bytes (a block of a crashed file system), an empty line, a BOM:
    for bad in (b"\xff" + good[1], b"\0" * 40, b"", b"\xef\xbb\xbf" + good[1]):
        block = b"\n".join([good[0], bad, good[2]])
        assert decoded(block) == line_by_line(block), bad


def test_lines_that_are_json_only_together_are_each_skipped() -> None:
    """Each line below is not one JSON value, and `parse` skips it; joined into one array they
    would read as entries (or as the wrong ones). The batch must see that and fall back."""
    a, b, c = entry("a"), entry("b"), entry("c")
    not_theirs = [a[:-1] + b',"z":[{}', b"{}]}", b + b"," + c]  # 3 lines, 3 objects: none its line's
    cases = [
        not_theirs,
        [a + b"," + b, c],  # two objects on one line
        [a + b",", b, c], [a, b"," + b, c],  # a comma of the array's on a line
        [a[:-1] + b",", b'"x":1}', c],  # one object over two lines
        [b'{"log":"x}', b'{","stream":"stdout","time":"t"}', c],  # a string over two lines
        [b"[" + a, b + b"]", c],
    ]
    for lines in cases:
        block = b"\n".join(lines)
        assert decoded(block) == line_by_line(block), lines
    assert decoded(b"\n".join(not_theirs)) == []


@pytest.mark.parametrize("odd", [
    b'{"log":5,"stream":"stdout","time":"%s"}' % T.encode(),  # str() of a number, as parse
    b'{"log":"x\\n","stream":"stdout"}',  # no time: skipped
    b'{"log":"x\\n","stream":"stdout","time":"%s","attrs":{"a":"b"}}' % T.encode(),  # docker's attrs
    b'{"log":"x\\n","stream":null,"time":"%s"}' % T.encode(),
    b'{"log":"\\u00e9\\n","stream":"stderr","time":"%s"}' % T.encode(),
    b'{"log":"x\\n","log":"y\\n","stream":"stdout","time":"%s"}' % T.encode(),  # the last one wins
    b'"just a string"', b"[1, 2]", b'  {"log":"x\\n","stream":"stdout","time":"t"}  ',
])
def test_odd_but_valid_lines_read_as_parse_reads_them(odd: bytes) -> None:
    block = b"\n".join([entry("before\\n"), odd, entry("after\\n")])
    assert decoded(block) == line_by_line(block)


def test_random_damage_reads_as_line_by_line() -> None:
    """Lines cut, joined, dropped at random points of a real log: every block reads the same."""
    rng = random.Random(4)
    lines = [entry(f"line {i}\\n", rng.choice(["stdout", "stderr"])) for i in range(200)]
    for _ in range(300):
        damaged = list(lines)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(damaged))
            cut = rng.randrange(len(damaged[i]) + 1)
            choice = rng.randrange(3)
            if choice == 0:
                damaged[i] = damaged[i][:cut]  # torn
            elif choice == 1 and i + 1 < len(damaged):
                damaged[i:i + 2] = [damaged[i][:cut] + damaged[i + 1]]  # torn, the next appended
            else:
                damaged[i:i + 1] = [damaged[i][:cut], damaged[i][cut:]]  # a newline inside
        block = b"\n".join(damaged)
        assert decoded(block) == line_by_line(block)


def test_a_torn_last_line_is_not_shown_until_it_is_complete(tmp_path: Path) -> None:
    path = written(tmp_path, b"one\ntwo\n")
    rotated = Path(f"{path}.1")
    path.rename(rotated)
    with rotated.open("ab") as f:
        f.write(entry("torn\\n")[:25])  # the rotated file ends mid-entry
    path.write_bytes(entry("three\\n") + b"\n" + entry("four\\n")[:30])  # and so does the current one
    batches, offset = logfile.snapshot(str(path))
    shown = [log for batch in batches for log in batch.logs]
    assert shown == ["one\n", "two\n", "three\n"]
    assert offset == len(entry("three\\n")) + 1
    tail = [log for batch in logfile.snapshot(str(path), tail=2)[0] for log in batch.logs]
    assert tail == ["two\n", "three\n"]
    # -f: the rest of the entry arrives, then the container ends.
    with path.open("ab") as f:
        f.write(entry("four\\n")[30:] + b"\n" + entry("five\\n")[:10])
    followed = logfile.follow(str(path), offset, lambda: False, interval=0.01)
    assert [log for batch in followed for log in batch.logs] == ["four\n"]


def test_a_chunk_of_the_writers_lines_reads_back_in_one_call(tmp_path: Path) -> None:
    """What the Writer writes (escapes, a 16 KiB line cut into entries, both streams) takes the
    one-call path, and reads back as written."""
    path = tmp_path / "c-json.log"
    writer = logfile.Writer(str(path), logfile.Options())
    text = 'quote " backslash \\ tab \t é {"json": [1]}\n'
    writer.write("stdout", text.encode() * 3)
    writer.write("stderr", b"x" * (logfile.MAX_LINE + 10))  # a 16 KiB entry, 10 bytes pending
    writer.write("stderr", b"\n")
    writer.close()
    block = path.read_bytes().rstrip(b"\n")
    batch = logfile._decode_at_once(block)
    assert batch is not None, "the writer's own lines fall back to the slow path"
    assert "".join(batch.logs) == text * 3 + "x" * (logfile.MAX_LINE + 10) + "\n"
    assert list(batch.streams) == ["stdout"] * 3 + ["stderr"] * 2
    assert decoded(block) == line_by_line(block)


def test_tail_reads_backwards_the_lines_a_full_read_ends_with(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`--tail N` reads from the end: the same last N lines (a skipped one counts, as before)
    as reading every file from the start, over rotated files with torn ends, with small chunks."""
    rng = random.Random(7)
    path = tmp_path / "c-json.log"
    contents = []
    for n in range(3):  # .2, .1, the current file
        count = rng.randrange(0, 30)
        lines = [entry(f"{n}-{i}\\n") if rng.random() > 0.1 else b"{torn" for i in range(count)]
        contents.append(b"".join(line + b"\n" for line in lines) + rng.choice([b"", b'{"log":"mid-wri']))
    for name, content in zip([f"{path}.2", f"{path}.1", str(path)], contents, strict=True):
        Path(name).write_bytes(content)
    every = [line for content in contents for line in content.split(b"\n")[:-1]]
    for chunk in (5, 64, logfile.CHUNK):  # lines longer than a chunk, chunks of many lines
        monkeypatch.setattr(logfile, "CHUNK", chunk)
        batches, _ = logfile.snapshot(str(path))  # and all of it, from the start
        shown = [logfile.Entry(*row) for batch in batches for row in zip(*batch, strict=True)]
        assert shown == line_by_line(b"\n".join(every)), chunk
        for tail in range(len(every) + 3):
            batches, _ = logfile.snapshot(str(path), tail)
            shown = [logfile.Entry(*row) for batch in batches for row in zip(*batch, strict=True)]
            assert shown == line_by_line(b"\n".join(every[-tail:] if tail else [])), (chunk, tail)
