"""The one thing every stream imgtool reads must do."""

from __future__ import annotations

from typing import Protocol


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...
