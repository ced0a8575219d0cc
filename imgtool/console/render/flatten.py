"""flatten's notes on stderr: what --safe changed, and what was written."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imgtool.console.output import human_size

if TYPE_CHECKING:
    from imgtool.flatten.api import FlattenResult


def flatten_notes(result: FlattenResult, output: str) -> list[str]:
    """flatten's lines on stderr: what --safe left out or changed (if anything), what it wrote."""
    notes = []
    stats = result.safe
    if stats is not None:
        changed = [
            f"left out {stats.devices} device nodes" if stats.devices else "",
            f"cleared setuid/setgid bits of {stats.setid} entries" if stats.setid else "",
            f"dropped {stats.xattrs} extended attributes" if stats.xattrs else "",
        ]
        if any(changed):
            notes.append("imgtool: --safe: " + ", ".join(word for word in changed if word))
    dest = "stdout" if output == "-" else output
    notes.append(
        f"imgtool: wrote {result.paths} paths ({human_size(result.data_bytes)} of file data) to {dest}"
    )
    return notes
