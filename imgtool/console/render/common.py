"""What every command's rendering shares: short digests, a layer's command on one line, a layer
media type for a narrow column, and JSON text."""

from __future__ import annotations

from typing import Any, Final

from imgtool.console.output import escape_text, to_json


def short(digest: object, full: bool = False) -> str:
    text = str(digest)
    return text if full or ":" not in text else text[: text.index(":") + 13]


def one_line(text: str | None, limit: int | None) -> str:
    """``text`` (a layer's created_by) on one line: whitespace runs as one space, the rest escaped as
    file names are, cut to ``limit`` characters."""
    if not text:
        return "-"
    flat = escape_text(" ".join(text.split()))
    if limit is not None and len(flat) > limit:
        return flat[: limit - 3] + "..."
    return flat


def json_text(value: Any) -> str:
    return to_json(value) + "\n"


_LAYER_TYPE_PREFIXES: Final = (
    ("application/vnd.oci.image.layer.nondistributable.v1.", "oci foreign "),
    ("application/vnd.oci.image.layer.v1.", "oci "),
    ("application/vnd.docker.image.rootfs.foreign.diff.", "docker foreign "),
    ("application/vnd.docker.image.rootfs.diff.", "docker "),
)


def short_layer_type(media_type: str) -> str:
    """A layer media type for a narrow column: ``oci tar+gzip``, ``docker tar.gzip``; others in full."""
    for prefix, label in _LAYER_TYPE_PREFIXES:
        if media_type.startswith(prefix):
            return label + media_type[len(prefix) :]
    return media_type
