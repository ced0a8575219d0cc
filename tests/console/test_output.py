"""Table rendering: imgtool's own drawing of the plain formats is tabulate's, to the character."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tabulate import tabulate

from imgtool.console.output import clean, escape_text, style, table, to_json
from imgtool.layers.paths import escape

ascii_text = st.text(alphabet=string.ascii_letters + string.digits + " ./-_:=()+#", max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    columns=st.integers(min_value=1, max_value=6),
    fmt=st.sampled_from(["simple", "plain"]),
)
def test_plain_formats_match_tabulate(data: st.DataObject, columns: int, fmt: str) -> None:
    headers = data.draw(st.lists(ascii_text, min_size=columns, max_size=columns))
    rows = data.draw(st.lists(st.lists(ascii_text, min_size=columns, max_size=columns), max_size=8))
    assert table(rows, headers, fmt) == tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)


def test_other_text_goes_to_tabulate() -> None:
    rows = [["日本語", "x"], [style("added", "green", True), "y"]]
    assert table(rows, ["a", "b"]) == tabulate(rows, headers=["a", "b"], disable_numparse=True)


HOSTILE = "\x1b[31mred\x1b]0;title\x07\x9bC1\x7fDEL\rCR\bBS\t\n"


def test_table_cells_are_cleaned_and_only_imgtool_colours_pass() -> None:
    shown = "\\x1b[31mred\\x1b]0;title\\x07\\x9bC1\\x7fDEL\\rCR\\x08BS\\t\\n"
    green, red = style("added", "green", True), style(HOSTILE, "red", True)
    assert (green, red) == ("\x1b[32madded\x1b[0m", f"\x1b[31m{shown}\x1b[0m")
    rows = [[HOSTILE, green], ["a\\x1b", red]]
    want = [[shown, green], ["a\\x1b", red]]
    for fmt in ("plain", "simple", "grid"):
        assert table(rows, ["a", "b"], fmt) == tabulate(
            want, headers=["a", "b"], tablefmt=fmt, disable_numparse=True
        )


@pytest.mark.parametrize(
    ("text", "cleaned", "escaped"),
    [
        ("plain é 日本", "plain é 日本", "plain é 日本"),
        ("a\\b", "a\\b", "a\\\\b"),  # a backslash: kept by clean, doubled by escape_text
        ("\x00\x1b\x7f", "\\x00\\x1b\\x7f", "\\x00\\x1b\\x7f"),
        ("\x80\x9f\x85", "\\x80\\x9f\\x85", "\\x80\\x9f\\x85"),  # C1 controls, NEL among them
        ("\t\n\r\b", "\\t\\n\\r\\x08", "\\t\\n\\r\\x08"),
        ("\u2028\u200b", "\\u2028\\u200b", "\\u2028\\u200b"),
        ("\udc9b", "\\x9b", "\\x9b"),  # a byte that is not UTF-8, as surrogateescape decoded it
        ("\ud800", "\\ud800", "\\xed\\xa0\\x80"),  # a lone surrogate from a JSON escape
    ],
)
def test_clean_and_escape_text(text: str, cleaned: str, escaped: str) -> None:
    assert (clean(text), escape_text(text)) == (cleaned, escaped)


@given(st.binary(max_size=40))
def test_escape_text_is_the_file_name_escape(data: bytes) -> None:
    """An image string is shown as a file name of the same bytes is, and clean() leaves that alone."""
    text = data.decode("utf-8", "surrogateescape")
    assert escape_text(text) == escape(data)
    assert clean(escape(data)) == escape(data)
    assert clean(escape(data)).isprintable()


@given(
    st.recursive(
        st.text() | st.integers() | st.none(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    )
)
def test_to_json_round_trips_and_prints_nothing_a_terminal_acts_on(value: object) -> None:
    text = to_json(value)
    assert json.loads(text) == value
    assert text.replace("\n", "").isprintable()


def test_to_json_escapes_del_c1_and_surrogates() -> None:
    assert (
        to_json(["\x1b\x7f\x9b\ud800\U000e0001 é"])
        == '[\n  "\\u001b\\u007f\\u009b\\ud800\\udb40\\udc01 é"\n]'
    )
