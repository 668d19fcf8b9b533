"""What a pull shows while it works: one line per layer.

On a terminal the lines are redrawn in place (ANSI "cursor up" and "erase line", ECMA-48), with
bytes done/total while a layer downloads; a layer is downloaded and extracted in one stream, so
"Extracting" is shown only for the moment between its last byte and its commit. When the output
is not a terminal (a log file, CI) each layer prints one line when it is finished, and nothing is
redrawn. Quiet prints nothing.
"""

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

REDRAW_INTERVAL = 0.1  # seconds: a terminal redraw per chunk would cost more than the download


def human(size: int) -> str:
    """3 significant digits, decimal units: 4260000 -> "4.26MB" (go-units HumanSize, as docker)."""
    value, units = float(size), ["B", "kB", "MB", "GB", "TB", "PB"]
    unit = 0
    while value >= 999.5 and unit < len(units) - 1:
        value /= 1000
        unit += 1
    return f"{value:.3g}{units[unit]}"


@dataclass
class Progress:
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    quiet: bool = False
    tty: bool = False
    lines: list[str] = field(default_factory=list)  # what each layer's line says now
    drawn: int = 0  # how many lines are on the screen
    last_draw: float = 0.0

    @classmethod
    def to(cls, stream: TextIO, quiet: bool = False) -> "Progress":
        return cls(stream=stream, quiet=quiet, tty=stream.isatty())

    def message(self, text: str) -> None:
        """A line that is not about one layer (e.g. "Pulling from library/alpine")."""
        if not self.quiet:
            self._redraw(force=True)
            self.stream.write(text + "\n")
            self.stream.flush()
            self.lines, self.drawn = [], 0

    def add_layer(self, digest: str) -> int:
        self.lines.append(f"{short(digest)}: Waiting")
        return len(self.lines) - 1

    def downloading(self, layer: int, done: int, total: int) -> None:
        self.lines[layer] = f"{self.lines[layer].split(':')[0]}: Downloading {human(done)}/{human(total)}"
        self._redraw(force=False)

    def status(self, layer: int, text: str, final: bool = False) -> None:
        self.lines[layer] = f"{self.lines[layer].split(':')[0]}: {text}"
        if self.tty:
            self._redraw(force=True)
        elif final and not self.quiet:
            self.stream.write(self.lines[layer] + "\n")
            self.stream.flush()

    def _redraw(self, force: bool) -> None:
        if self.quiet or not self.tty:
            return
        now = time.monotonic()
        if not force and now - self.last_draw < REDRAW_INTERVAL:
            return
        self.last_draw = now
        # Up to the first layer line, then rewrite every line: "\x1b[NA" cursor up, "\x1b[2K" erase.
        out = f"\x1b[{self.drawn}A" if self.drawn else ""
        out += "".join(f"\r\x1b[2K{line}\n" for line in self.lines)
        self.stream.write(out)
        self.stream.flush()
        self.drawn = len(self.lines)


def short(digest: str) -> str:
    """The first 12 hex digits, as docker names layers in its progress display."""
    return digest.removeprefix("sha256:")[:12]
