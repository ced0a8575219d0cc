"""cache info and cache prune: what the caches hold, what a prune removed (schema in docs/json.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imgtool.console.output import escape_text, human_size, table
from imgtool.console.render.common import json_text

if TYPE_CHECKING:
    from imgtool.console.caches import CacheUsage, Pruned
    from imgtool.console.params import ImageOptions


def cache_info(caches: list[CacheUsage], opts: ImageOptions) -> str:
    doc: list[dict[str, Any]] = [
        {
            "name": item.name,
            "directory": str(item.directory),
            "files": item.count,
            "size": item.size,
            "limit": item.limit,
        }
        for item in caches
    ]
    if opts.as_json:
        return json_text({"caches": doc})
    rows = [
        (
            entry["name"],
            entry["files"],
            human_size(entry["size"]),
            human_size(entry["limit"]) if entry["limit"] is not None else "-",
            escape_text(entry["directory"]),
        )
        for entry in doc
    ]
    return table(rows, ["cache", "files", "size", "limit", "directory"], opts.table_format) + "\n"


_ONE = {"blobs": "blob", "header indexes": "header index"}


def cache_pruned(pruned: list[Pruned]) -> str:
    said = [
        f"{item.count} {_ONE.get(item.name, item.name) if item.count == 1 else item.name} "
        f"({human_size(item.size)})"
        for item in pruned
    ]
    return f"removed {' and '.join(said)}\n"
