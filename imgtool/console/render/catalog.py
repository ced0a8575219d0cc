"""images: every image of an archive or layout, as a table and as JSON (schema in docs/json.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imgtool.console.output import escape_text, human_size, table
from imgtool.console.render.common import json_text
from imgtool.sources.catalog import ListedImage

if TYPE_CHECKING:
    from imgtool.console.params import ImageOptions


def images_json(listed: list[ListedImage]) -> list[dict[str, Any]]:
    return [
        {
            "name": item.name,
            "reference": item.reference,
            "names": list(item.names),
            "platform": str(item.platform),
            "manifest_digest": str(item.manifest_digest) if item.manifest_digest else None,
            "index_digest": str(item.index_digest) if item.index_digest else None,
            "size": item.size,
            "created": item.created,
        }
        for item in listed
    ]


def images(listed: list[ListedImage], opts: ImageOptions) -> str:
    doc = images_json(listed)
    if opts.as_json:
        return json_text(doc)
    rows = [
        (
            escape_text(item["name"] or "(unnamed)"),
            escape_text(item["platform"]),
            item["manifest_digest"] or "-",
            human_size(item["size"]),
            escape_text(item["created"] or "-"),
        )
        for item in doc
    ]
    return table(rows, ["name", "platform", "manifest", "size", "created"], opts.table_format) + "\n"
