"""What a terminal would act on: the bytes no output of imgtool may hold (file data aside)."""

from __future__ import annotations

import re
from typing import Final

# C0 controls but newline, DEL, C1 controls (U+0080-U+009F in UTF-8), and lone surrogates in their
# UTF-8 form (ED A0-BF xx).
RAW_CONTROL: Final = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xed[\xa0-\xbf]")


def raw_controls(data: bytes) -> list[bytes]:
    """The distinct control sequences in ``data`` (empty when it is safe to show)."""
    return sorted({match.group() for match in RAW_CONTROL.finditer(data)})
