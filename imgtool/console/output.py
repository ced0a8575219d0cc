"""Rendering primitives: tables through tabulate, JSON, colour and progress. With
:mod:`imgtool.console.render`, which builds each command's table and document from them, the only
place that knows formats.

Every string that came from an image (names, config fields, tags, media types, URLs, messages that
quote them) reaches the terminal only through this module or the CLI's error funnel, and never raw:
:func:`clean` turns control characters (C0, DEL, C1) and text that is not valid UTF-8 into escapes
(``\\x1b``, ``\\x9b``, ``\\n``), in the convention of :func:`imgtool.layers.paths.escape`, so that no escape
sequence of the image can move the cursor, recolour or retitle the terminal.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from typing import IO, Any, Final

from imgtool.layers.paths import escape
from imgtool.merge.changes import ChangeWord

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


_CONTROL_ESCAPES: Final = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
_SURROGATE_BYTES: Final = range(0xDC80, 0xDD00)  # bytes that are not UTF-8, as surrogateescape decodes them


def escape_text(text: str) -> str:
    """An image's string, shown as file names are shown (:func:`imgtool.layers.paths.escape`): control
    characters, text that is not valid UTF-8 (lone surrogates too) and backslashes escaped, so that
    what is shown is unambiguous."""
    if text.isprintable() and "\\" not in text:
        return text
    try:  # a name decoded with surrogateescape: its bytes again
        data = text.encode("utf-8", "surrogateescape")
    except (
        UnicodeEncodeError
    ):  # other lone surrogates (a JSON "\\ud800"): their bytes as UTF-8 would have them
        data = text.encode("utf-8", "surrogatepass")
    return escape(data)


def clean(text: str) -> str:
    """``text`` with every character the terminal would act on escaped: C0 controls (tab, newline and
    carriage return as ``\\t``, ``\\n``, ``\\r``), DEL, C1 controls and other unprintable characters
    as ``\\xNN``/``\\uNNNN``, bytes that are not UTF-8 (surrogate-escaped) as ``\\xNN``.

    Backslashes are left alone, so text that already went through :func:`escape_text` or
    :func:`imgtool.layers.paths.escape` (a file name in a message) comes out unchanged: this is the safety
    net for whole messages and table cells, not a replacement for escaping a name where it is shown."""
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable():
            out.append(char)
            continue
        code = ord(char)
        if code in _SURROGATE_BYTES:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char in _CONTROL_ESCAPES:
            out.append(_CONTROL_ESCAPES[char])
        else:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(out)


class Styled(str):
    """Text imgtool coloured itself (see :func:`style`): its escape sequences are its own, and
    :func:`table` passes it through as it is."""

    __slots__ = ()


def use_colour(stream: IO[str]) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def style(text: str, colour: str, enabled: bool) -> str:
    """``text`` (cleaned) in ``colour`` when colour is on."""
    codes = {"green": "32", "red": "31", "yellow": "33", "bold": "1", "dim": "2", "cyan": "36"}
    return Styled(f"\x1b[{codes[colour]}m{clean(text)}\x1b[0m") if enabled else clean(text)


CHANGE_COLOURS: Final = {
    ChangeWord.ADDED: "green",
    ChangeWord.MODIFIED: "yellow",
    ChangeWord.DELETED: "red",
    ChangeWord.HIDDEN: "red",
    ChangeWord.REPLACED: "red",
}


def change_word(word: ChangeWord, enabled: bool) -> str:
    """A change word (added, modified, deleted, ...) in its colour, when colour is on."""
    colour = CHANGE_COLOURS.get(word)
    return style(word, colour, enabled) if colour else word


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str], fmt: str = DEFAULT_TABLE_FORMAT) -> str:
    """The rows drawn in ``fmt``; every cell but :class:`Styled` text goes through :func:`clean`."""
    cells = [[cell if isinstance(cell, Styled) else clean(str(cell)) for cell in row] for row in rows]
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
    if body:  # column by column, at C speed: a listing can have a row per file of the image
        widths = [
            max(width, *map(len, column))
            for width, column in zip(widths, zip(*body, strict=True), strict=True)
        ]
    # The last column is not padded: one long cell there (a symlink target) must not cost every row.
    template = "  ".join([*(f"{{:<{width}}}" for width in widths[:-1]), "{}"])
    lines = [template.format(*head).rstrip()]
    if fmt == "simple":
        lines.append("  ".join("-" * width for width in widths))
    lines.extend(template.format(*row).rstrip() for row in body)
    return "\n".join(lines)


def to_json(value: Any) -> str:
    """Indented JSON, UTF-8 kept as it is; json.dumps escapes the C0 controls inside strings, and every
    other unprintable character (DEL, C1 controls, lone surrogates, line separators) is written as a
    ``\\uNNNN`` escape too, so the text parses to the same value and holds nothing a terminal acts on."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    if text.replace("\n", "").isprintable():
        return text
    # Outside strings, json.dumps writes only printable ASCII and the newlines of the indentation.
    return "".join(char if char == "\n" or char.isprintable() else _json_escape(char) for char in text)


def _json_escape(char: str) -> str:
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


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
