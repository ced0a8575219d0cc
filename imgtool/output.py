"""Rendering: tables through tabulate, JSON, colour and progress. The only module that knows formats."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from typing import IO, Any, Final

DEFAULT_TABLE_FORMAT: Final = "simple"
# tabulate's formats, spelled out so that starting imgtool does not import tabulate (a test keeps
# this list equal to tabulate.tabulate_formats).
TABLE_FORMATS: Final = (
    "asciidoc",
    "colon_grid",
    "double_grid",
    "double_outline",
    "fancy_grid",
    "fancy_outline",
    "github",
    "grid",
    "heavy_grid",
    "heavy_outline",
    "html",
    "jira",
    "latex",
    "latex_booktabs",
    "latex_longtable",
    "latex_raw",
    "mediawiki",
    "mixed_grid",
    "mixed_outline",
    "moinmoin",
    "orgtbl",
    "outline",
    "pipe",
    "plain",
    "presto",
    "pretty",
    "psql",
    "rounded_grid",
    "rounded_outline",
    "rst",
    "simple",
    "simple_grid",
    "simple_outline",
    "textile",
    "tsv",
    "unsafehtml",
    "youtrack",
)


def use_colour(stream: IO[str]) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def style(text: str, colour: str, enabled: bool) -> str:
    codes = {"green": "32", "red": "31", "yellow": "33", "bold": "1", "dim": "2", "cyan": "36"}
    return f"\x1b[{codes[colour]}m{text}\x1b[0m" if enabled else text


CHANGE_COLOURS: Final = {
    "added": "green",
    "modified": "yellow",
    "deleted": "red",
    "hidden": "red",
    "replaced": "red",
}


def change_word(word: str, enabled: bool) -> str:
    """A change word (added, modified, deleted, ...) in its colour, when colour is on."""
    colour = CHANGE_COLOURS.get(word)
    return style(word, colour, enabled) if colour else word


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str], fmt: str = DEFAULT_TABLE_FORMAT) -> str:
    cells = [[str(cell) for cell in row] for row in rows]
    if fmt in _PLAIN_FORMATS and _plain_ascii(cells, headers):
        return _simple_table(cells, headers, fmt)
    from tabulate import tabulate  # noqa: PLC0415 - imported when a table is drawn, not at start-up

    return tabulate(cells, headers=list(headers), tablefmt=fmt, disable_numparse=True)


# tabulate spends most of its time guessing each cell's type; for the default formats and plain
# ASCII text, where the layout is simple, imgtool draws the same text itself (a test compares the
# two), so that `ls -R` of a large image stays fast.
_PLAIN_FORMATS: Final = frozenset({"simple", "plain"})


def _plain_ascii(cells: list[list[str]], headers: Sequence[str]) -> bool:
    text = "".join(headers) + "".join("".join(row) for row in cells)
    return text.isascii() and text.isprintable()


def _simple_table(cells: list[list[str]], headers: Sequence[str], fmt: str) -> str:
    head = list(headers)
    body = [[cell.strip() for cell in row] for row in cells]
    widths = [len(h) + 2 for h in head]
    for row in body:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(values: Sequence[str]) -> str:
        # The last column is not padded: one long cell there (a symlink target) must not cost every row.
        padded = [value.ljust(width) for value, width in zip(values[:-1], widths[:-1], strict=True)]
        return "  ".join([*padded, values[-1]]).rstrip()

    lines = [line(head)]
    if fmt == "simple":
        lines.append("  ".join("-" * width for width in widths))
    lines.extend(line(row) for row in body)
    return "\n".join(lines)


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


class TerminalProgress:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream or sys.stderr
        self._label = ""
        self._total = 0
        self._done = 0
        self._last = 0.0
        self._active = False

    def start(self, label: str, total: int) -> None:
        self._label, self._total, self._done, self._active = label, total, 0, True
        self._draw(force=True)

    def advance(self, amount: int) -> None:
        self._done += amount
        self._draw()

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self._active or (not force and now - self._last < 0.1):
            return
        self._last = now
        fraction = min(1.0, self._done / self._total) if self._total else 1.0
        width = 30
        filled = int(width * fraction)
        bar = "#" * filled + "-" * (width - filled)
        amounts = f"{human_size(self._done)} / {human_size(self._total)}"
        self._stream.write(f"\r{self._label:<16} [{bar}] {fraction * 100:5.1f}%  {amounts}")
        self._stream.flush()

    def finish(self) -> None:
        if self._active:
            self._done = self._total
            self._draw(force=True)
            self._stream.write("\n")
            self._stream.flush()
            self._active = False
