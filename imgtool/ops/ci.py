"""``diff layers --ci``: dive's measures of the space an image wastes, and its CI rules.

dive rates an image per path across layers: every layer that puts something other than a directory
at a path, or removes it, holds one copy of that path, of the bytes the layer stores there (0 for a
removal, a symlink or a hardlink). Then

* efficiency = the sum over paths of their smallest copy / the sum over paths of all their copies
  (1 when the layers store nothing);
* wasted bytes = the sum of all the copies of every path held by two layers or more (the copy the
  image still shows included, as dive counts it);
* user wasted percent = wasted bytes / the bytes the layers above the first store (a ratio, as
  dive's threshold is).

The copies are read from the change log of :mod:`imgtool.merge.changes`, which applies the layers as
a union filesystem does: a removal (whiteout, opaque directory, replacement) is a 0-byte copy at
every path it removes, and a path is the one the layers' names resolve to. docs/json.md says where
that gives other numbers than dive's per-layer trees (deleted, hidden and replaced directories,
names through a symlinked directory), and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from imgtool.errors import UsageError
from imgtool.image.image import Image
from imgtool.layers.tarstream import KIND_NAMES, Kind
from imgtool.merge.changes import ChangeLog, ChangeWord
from imgtool.merge.view import MergedView
from imgtool.ops.common import Reading, merged
from imgtool.ops.diff import new_file_bytes, stored_file_bytes

# A threshold given as one of these words turns its rule off (dive's words, any case).
DISABLED_WORDS: Final = frozenset({"", "disabled", "off", "false"})
# A decimal number, as strconv.ParseFloat reads one (its hexadecimal, "inf" and "nan" forms left out:
# no threshold is either, and dive would take "nan" as a threshold no image fails).
_DECIMAL: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# go-humanize's ParseBytes, which dive uses: SI and IEC units, any case, "B" or nothing after them.
_UNITS: Final = {
    "": 1,
    "b": 1,
    **{f"{p}{suffix}": 1000**n for n, p in enumerate("kmgtpe", 1) for suffix in ("", "b")},
    **{f"{p}i{suffix}": 1024**n for n, p in enumerate("kmgtpe", 1) for suffix in ("", "b")},
}
_SIZE_NUMBER: Final = re.compile(r"[0-9.,]*")


class Rule(StrEnum):
    """dive's three rules, by the names of imgtool's options."""

    LOWEST_EFFICIENCY = "lowest-efficiency"
    HIGHEST_WASTED_BYTES = "highest-wasted-bytes"
    HIGHEST_USER_WASTED_PERCENT = "highest-user-wasted-percent"


class Status(StrEnum):
    PASS = "pass"  # noqa: S105 - a rule's result, not a password
    FAIL = "fail"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The rules' thresholds, None where a rule is disabled; the defaults are dive's."""

    lowest_efficiency: float | None = 0.9
    highest_wasted_bytes: int | None = None
    highest_user_wasted_percent: float | None = 0.1


def parse_ratio(text: str, option: str) -> float | None:
    """A ratio from 0 to 1 (``0.9``), or None for a disabled rule."""
    if text.strip().lower() in DISABLED_WORDS:
        return None
    if not _DECIMAL.fullmatch(text):
        raise UsageError(f"{option}: {text!r} is not a number (a ratio from 0 to 1, or 'disabled')")
    value = float(text)
    if not 0 <= value <= 1:
        raise UsageError(f"{option}: {text!r} is outside the range 0 to 1 (it is a ratio, not a percentage)")
    return value


def parse_size(text: str, option: str) -> int | None:
    """A number of bytes as go-humanize reads one (``20MB`` is 20,000,000, ``20MiB`` 20,971,520,
    ``1.5k`` 1500, ``1,000`` 1000), or None for a disabled rule."""
    if text.strip().lower() in DISABLED_WORDS:
        return None
    number = _SIZE_NUMBER.match(text)
    digits = number.group().replace(",", "") if number else ""
    unit = text[number.end() if number else 0 :].strip().lower()
    if not _DECIMAL.fullmatch(digits) or unit not in _UNITS:
        raise UsageError(
            f"{option}: {text!r} is not a size (a number of bytes, with a unit such as KB, MB, "
            "MiB or GiB, or 'disabled')"
        )
    value = float(digits) * _UNITS[unit]
    if value >= 2**64:
        raise UsageError(f"{option}: {text!r} is too large")
    return int(value)


def thresholds(
    lowest_efficiency: str | None, highest_wasted_bytes: str | None, highest_user_wasted_percent: str | None
) -> Thresholds:
    """The thresholds given as text (None: dive's default for that rule)."""
    default = Thresholds()
    return Thresholds(
        default.lowest_efficiency
        if lowest_efficiency is None
        else parse_ratio(lowest_efficiency, "--lowest-efficiency"),
        default.highest_wasted_bytes
        if highest_wasted_bytes is None
        else parse_size(highest_wasted_bytes, "--highest-wasted-bytes"),
        default.highest_user_wasted_percent
        if highest_user_wasted_percent is None
        else parse_ratio(highest_user_wasted_percent, "--highest-user-wasted-percent"),
    )


@dataclass(frozen=True, slots=True)
class Copy:
    """One layer's copy of a path: the bytes it stores there, and what it did (diff's words:
    ``added``, ``modified``, or ``deleted`` for every removal)."""

    layer: int
    size: int
    change: ChangeWord


@dataclass(frozen=True, slots=True)
class WastedFile:
    """A path two layers or more hold copies of, and those copies, bottom first."""

    path: bytes
    copies: tuple[Copy, ...]

    @property
    def size(self) -> int:
        """dive's wasted bytes of the path: all its copies."""
        return sum(copy.size for copy in self.copies)


@dataclass(frozen=True, slots=True)
class Measures:
    efficiency: float
    wasted_bytes: int
    stored_bytes: int  # the file bytes all layers store
    user_bytes: int  # the file bytes the layers above the first store
    wasted_files: list[WastedFile]  # most bytes first, then by path; only those with bytes

    @property
    def user_wasted_ratio(self) -> float | None:
        """wasted / user bytes; 0 when nothing is wasted, None (infinite) when bytes are wasted
        although the layers above the first store none."""
        if self.user_bytes == 0:
            return 0.0 if self.wasted_bytes == 0 else None
        return self.wasted_bytes / self.user_bytes


def measure(view: MergedView, log: ChangeLog) -> Measures:
    """dive's measures of the layers ``view`` applied, whose changes ``log`` recorded."""
    added, modified, deleted = ChangeWord.ADDED, ChangeWord.MODIFIED, ChangeWord.DELETED
    directory = KIND_NAMES[Kind.DIR]
    copies: dict[bytes, dict[int, Copy]] = {}
    stored: set[tuple[int, int]] = set()  # files counted: one file, many names, is stored once
    for change in log.changes:
        word, layer = change.change, change.layer
        size = 0
        if change.kind == directory and (word is added or word is modified):
            # A directory is no copy (dive counts only what a layer's own tree has no children
            # below); one that took the place of something else removed that.
            if word is added or "type" not in change.what:
                continue
            word = deleted
        elif word is added or word is modified:
            size = new_file_bytes(layer, change, stored)
        else:
            word = deleted
        # A layer holds one copy of a path: what it did to it last.
        copies.setdefault(change.path, {})[layer] = Copy(layer, size, word)
    total = smallest = wasted = 0
    files: list[WastedFile] = []
    for path, held in copies.items():
        sizes = [copy.size for copy in held.values()]
        total += sum(sizes)
        smallest += min(sizes)
        if len(held) > 1:
            entry = WastedFile(path, tuple(sorted(held.values(), key=_by_layer)))
            wasted += entry.size
            if entry.size:
                files.append(entry)
    files.sort(key=lambda f: (-f.size, f.path))
    per_layer = [stored_file_bytes(index) for index in view.indexes]
    return Measures(
        efficiency=1.0 if total == 0 else smallest / total,
        wasted_bytes=wasted,
        stored_bytes=sum(per_layer),
        user_bytes=sum(per_layer[1:]),
        wasted_files=files,
    )


def _by_layer(copy: Copy) -> int:
    return copy.layer


@dataclass(frozen=True, slots=True)
class RuleResult:
    rule: Rule
    status: Status
    measured: float | int | None  # None: the user wasted ratio is infinite
    threshold: float | int | None  # None: the rule is disabled


@dataclass(frozen=True, slots=True)
class CiReport:
    measures: Measures
    results: list[RuleResult]

    @property
    def passed(self) -> bool:
        return all(result.status != Status.FAIL for result in self.results)


def evaluate(measures: Measures, limits: Thresholds) -> list[RuleResult]:
    """Each rule as dive decides it: a value equal to its threshold passes."""
    ratio = measures.user_wasted_ratio
    checks: list[tuple[Rule, float | int | None, float | int | None, bool]] = [
        (
            Rule.LOWEST_EFFICIENCY,
            measures.efficiency,
            limits.lowest_efficiency,
            limits.lowest_efficiency is not None and measures.efficiency < limits.lowest_efficiency,
        ),
        (
            Rule.HIGHEST_WASTED_BYTES,
            measures.wasted_bytes,
            limits.highest_wasted_bytes,
            limits.highest_wasted_bytes is not None and measures.wasted_bytes > limits.highest_wasted_bytes,
        ),
        (
            Rule.HIGHEST_USER_WASTED_PERCENT,
            ratio,
            limits.highest_user_wasted_percent,
            limits.highest_user_wasted_percent is not None
            and (ratio is None or ratio > limits.highest_user_wasted_percent),
        ),
    ]
    results = []
    for rule, value, limit, failed in checks:
        status = Status.DISABLED if limit is None else Status.FAIL if failed else Status.PASS
        results.append(RuleResult(rule, status, value, limit))
    return results


def rate_image(image: Image, reading: Reading, limits: Thresholds) -> CiReport:
    """Apply every layer, measure the space wasted as dive does, and judge it by ``limits``."""
    log = ChangeLog()
    view = merged(image, reading, recorder=log)
    measures = measure(view, log)
    return CiReport(measures, evaluate(measures, limits))
