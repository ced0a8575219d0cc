"""Paths inside an image: the canonical form of archive names, and how paths are shown.

Every name read from a layer goes through :func:`clean_path` once, at the edge: ``./a``,
``/a`` and ``a/`` are the path ``a``; ``a/../b`` is ``b``; a name that climbs above the
root is refused. Paths are bytes throughout (names need not be UTF-8); :func:`display`
turns one into text for messages, tables and JSON.
"""

from __future__ import annotations

from typing import Final

from imgtool.errors import UnsafePathError

_SLASH: Final = ord("/")
_ESCAPES: Final = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def display(path: bytes) -> str:
    """A path for messages, tables and JSON: rooted at ``/``, and unambiguous (see :func:`escape`)."""
    return "/" + escape(path)


def escape(data: bytes) -> str:
    """Bytes as printable text: those that are not UTF-8 as ``\\xNN``; backslash, tab, newline and
    other control characters escaped too, so every line of output holds one whole name."""
    text = data.decode("utf-8", "surrogateescape")
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif not char.isprintable():
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def clean_path(raw: bytes) -> bytes:
    """The canonical form of an archive path, or UnsafePathError if it leaves the root."""
    name = raw[:-1] if raw.endswith(b"/") else raw  # a directory's trailing slash
    if (
        name
        and name[0] != _SLASH
        and name[-1] != _SLASH
        and b"//" not in name
        and (b"." not in name or _dots_are_names(name))
        and b"\x00" not in name
    ):
        return name
    parts: list[bytes] = []
    for component in raw.split(b"/"):
        if component in (b"", b"."):
            continue
        if component == b"..":
            if not parts:
                raise UnsafePathError(f"path '{escape(raw)}' escapes the root")
            parts.pop()
            continue
        if b"\x00" in component:
            raise UnsafePathError(f"path '{escape(raw)}' contains a NUL byte")
        parts.append(component)
    return b"/".join(parts)


def _dots_are_names(name: bytes) -> bool:
    """Whether every ``.`` in ``name`` is part of a name, not a ``.`` or ``..`` component."""
    return not (
        name in (b".", b"..")
        or name.startswith((b"./", b"../"))
        or name.endswith((b"/.", b"/.."))
        or b"/./" in name
        or b"/../" in name
    )


def split_path(path: bytes) -> tuple[bytes, bytes]:
    """(parent, basename) of a canonical path."""
    cut = path.rfind(b"/")
    if cut < 0:
        return b"", path
    return path[:cut], path[cut + 1 :]


def join_path(parent: bytes, name: bytes) -> bytes:
    return parent + b"/" + name if parent else name
