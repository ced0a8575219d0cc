"""ls: the entries of the tree, with the layer of each, as documents and as a table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imgtool.console.output import table
from imgtool.console.render.common import json_text
from imgtool.layers.paths import display
from imgtool.layers.tarstream import Kind
from imgtool.ops.listing import Listing, mode_string, rfc3339, time_string

if TYPE_CHECKING:
    from imgtool.console.params import ImageOptions


def ls_json(listing: Listing) -> str:
    docs = []
    for row in listing.rows:
        entry = row.entry
        docs.append(
            {
                "path": display(row.path),
                "type": row.kind,
                "mode": f"{entry.mode:04o}",
                "uid": entry.uid,
                "gid": entry.gid,
                "size": entry.size if entry.kind == Kind.FILE else 0,
                "mtime": rfc3339(entry.mtime_ns),
                "linkname": row.target,
                "layer": row.layer,
                "layer_digest": listing.digests[row.layer] if row.layer is not None else None,
            }
        )
    return json_text(docs)


def ls_text(listing: Listing, table_format: str) -> str:
    rows = []
    for row in listing.rows:
        entry = row.entry
        name = display(row.path)
        if row.kind in ("whiteout", "opaque"):
            name = f"{name} ({'deleted' if row.kind == 'whiteout' else 'opaque: lower contents hidden'})"
        elif row.target is not None:
            name = f"{name} {'->' if row.kind == 'symlink' else '=>'} {row.target}"
        rows.append(
            (
                mode_string(entry),
                f"{entry.uid}:{entry.gid}",
                str(entry.size) if entry.kind == Kind.FILE else "",
                time_string(entry.mtime_ns),
                "-" if row.layer is None else str(row.layer),
                name,
            )
        )
    return table(rows, ["mode", "owner", "size", "mtime", "layer", "path"], table_format) + "\n"


def ls(listing: Listing, opts: ImageOptions) -> str:
    return ls_json(listing) if opts.as_json else ls_text(listing, opts.table_format)
