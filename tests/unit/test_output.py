"""Table rendering: imgtool's own drawing of the plain formats is tabulate's, to the character."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st
from tabulate import tabulate

from imgtool.output import table

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
    rows = [["日本語", "x"], ["\x1b[32madded\x1b[0m", "y"]]
    assert table(rows, ["a", "b"]) == tabulate(rows, headers=["a", "b"], disable_numparse=True)
