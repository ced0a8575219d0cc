"""Which layer supplied each path of a merged view, written as TSV or JSON."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from imgtool.errors import OutputError
from imgtool.paths import display
from imgtool.view import MergedView


def provenance_rows(view: MergedView) -> list[dict[str, Any]]:
    """One row per path of the merged view: the layer that supplied it (None for the bare root).

    A layer is named by its diff_id, the digest of its uncompressed tar, which is the same
    in every format of the image (the blob digest changes with the compression)."""
    rows = []
    for path, node in view.tree.walk():
        supplied = node.layer >= 0
        rows.append(
            {
                "path": display(path),
                "layer": node.layer if supplied else None,
                "diff_id": str(view.image.layers[node.layer].diff_id) if supplied else None,
            }
        )
    return rows


def write_provenance(view: MergedView, dest: str) -> None:
    """TSV (``path<TAB>layer<TAB>diff_id``, escaped) or, for a ``.json`` name, a JSON list."""
    rows = provenance_rows(view)
    if dest.endswith(".json"):
        text = json.dumps(rows, indent=1, ensure_ascii=False) + "\n"
    else:
        lines = ["path\tlayer\tdiff_id"]
        for row in rows:
            layer = "-" if row["layer"] is None else str(row["layer"])
            lines.append(f"{row['path']}\t{layer}\t{row['diff_id'] or '-'}")
        text = "\n".join(lines) + "\n"
    directory = os.path.dirname(os.path.abspath(dest))
    try:
        fd, staging = tempfile.mkstemp(prefix=".imgtool-", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(staging, dest)
    except OSError as exc:
        raise OutputError(f"cannot write {dest}: {exc.strerror or exc}") from exc
