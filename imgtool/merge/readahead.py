"""Read a stream ahead in a worker thread, so decompression and hashing overlap with writing.

zlib, isal, zstandard and hashlib release the GIL on large buffers, so a
second thread turns the second core into the decompressor while the first
writes files.
"""

from __future__ import annotations

import queue
import threading
from typing import Final

from imgtool.image.compression import CHUNK
from imgtool.image.readable import Readable

_STOP: Final = object()


class ReadAhead:
    """``read(n)`` over chunks produced by a worker thread; errors surface in the reader."""

    def __init__(self, source: Readable, chunk: int = CHUNK, depth: int = 8) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._cancel = threading.Event()
        self._buf = b""
        self._pos = 0
        self._done = False
        self._thread = threading.Thread(target=self._run, args=(source, chunk), daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._cancel.is_set():
            try:
                self._queue.put(item, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def _run(self, source: Readable, chunk: int) -> None:
        try:
            while not self._cancel.is_set():
                data = source.read(chunk)
                if not data:
                    break
                if not self._put(data):
                    return
        except BaseException as exc:  # handed to the reading thread, raised there
            self._put(exc)
            return
        self._put(_STOP)

    def read(self, n: int = -1) -> bytes:
        if self._pos >= len(self._buf):
            if self._done:
                return b""
            item = self._queue.get()
            if item is _STOP:
                self._done = True
                return b""
            if isinstance(item, BaseException):
                self._done = True
                raise item
            assert isinstance(item, bytes)
            self._buf, self._pos = item, 0
        if n < 0 or (self._pos == 0 and n >= len(self._buf)):
            data = self._buf[self._pos :] if self._pos else self._buf
            self._buf, self._pos = b"", 0
            return data
        data = self._buf[self._pos : self._pos + n]
        self._pos += len(data)
        return data

    def close(self) -> None:
        self._cancel.set()
        self._thread.join()
