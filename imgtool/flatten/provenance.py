"""Which layer supplied each path of a merged view, written as TSV or JSON."""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

from imgtool.errors import OutputError
from imgtool.layers.paths import display
from imgtool.merge.view import MergedView
from imgtool.system.staging import Claim, make_file, no_space, output_path


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


def provenance_text(view: MergedView, dest: str) -> str:
    """TSV (``path<TAB>layer<TAB>diff_id``, escaped) or, for a ``.json`` name, a JSON list."""
    rows = provenance_rows(view)
    if dest.endswith(".json"):
        return json.dumps(rows, indent=1, ensure_ascii=False) + "\n"
    lines = ["path\tlayer\tdiff_id"]
    for row in rows:
        layer = "-" if row["layer"] is None else str(row["layer"])
        lines.append(f"{row['path']}\t{layer}\t{row['diff_id'] or '-'}")
    return "\n".join(lines) + "\n"


def check_provenance_destination(dest: str) -> str:
    """Check a provenance file may be written at DEST (replacing a file, never through a symlink)."""
    target = output_path(dest)
    if os.path.isdir(target):
        raise OutputError(f"{dest}: is a directory")
    return target


class StagedProvenance:
    """The provenance file, written in full to a claimed staging sibling; :meth:`commit` puts it in
    place (a rename), :meth:`discard` removes it. So a full disk is found before the output is."""

    def __init__(self, view: MergedView, dest: str) -> None:
        self.dest = dest
        self.target = check_provenance_destination(dest)
        directory = os.path.dirname(self.target)
        self._staging: str | None = None
        self._claim: Claim | None = None
        try:
            fd, self._staging, self._claim = make_file(directory, os.path.basename(self.target))
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(provenance_text(view, dest))
        except OSError as exc:
            self.discard()
            full = no_space(exc, directory, "writing the provenance file", "choose another --provenance")
            raise full or OutputError(f"cannot write {dest}: {exc.strerror or exc}") from exc

    def commit(self, written: str | None = None) -> None:
        """Rename the staged file into place; ``written`` names the output already in place, if any."""
        assert self._staging is not None
        try:
            os.replace(self._staging, self.target)
        except OSError as exc:
            self.discard()
            done = f"output written to {written}, but " if written else ""
            raise OutputError(f"{done}cannot write {self.dest}: {exc.strerror or exc}") from exc
        self._staging = None
        self.discard()

    def discard(self) -> None:
        if self._staging is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._staging)
            self._staging = None
        if self._claim is not None:
            self._claim.release()
            self._claim = None
