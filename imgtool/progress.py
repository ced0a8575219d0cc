"""Progress reporting as a protocol: the library reports bytes, the CLI decides how to show them."""

from __future__ import annotations

import threading
from typing import Protocol


class Progress(Protocol):
    def start(self, label: str, total: int) -> None: ...
    def advance(self, amount: int) -> None: ...
    def finish(self) -> None: ...


class NoProgress:
    def start(self, label: str, total: int) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass

    def finish(self) -> None:
        pass


class LockedProgress:
    """Makes any Progress safe to advance from several threads."""

    def __init__(self, inner: Progress) -> None:
        self._inner = inner
        self._lock = threading.Lock()

    def start(self, label: str, total: int) -> None:
        with self._lock:
            self._inner.start(label, total)

    def advance(self, amount: int) -> None:
        with self._lock:
            self._inner.advance(amount)

    def finish(self) -> None:
        with self._lock:
            self._inner.finish()
