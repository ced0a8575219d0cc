"""copy: what was copied, as a JSON document (--json) or one line."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from imgtool.console.output import human_size
from imgtool.console.render.common import json_text

if TYPE_CHECKING:
    from imgtool.console.params import ImageOptions
    from imgtool.ops.copy import CopyResult


def copy(result: CopyResult, opts: ImageOptions) -> str:
    return copy_json(result) if opts.as_json else copy_text(result)


def copy_json(result: CopyResult) -> str:
    doc = dataclasses.asdict(result)
    doc["blobs"] = [dataclasses.asdict(b) for b in result.blobs]
    doc["bytes_copied"] = result.bytes_copied
    if result.source_manifest_digest is None:  # present only where DEST rewrote the manifest
        del doc["source_manifest_digest"]
    return json_text(doc)


def copy_text(result: CopyResult) -> str:
    """The manifest's digest, how many blobs were sent and how many the destination already had."""
    counts = {
        status: sum(1 for b in result.blobs if b.status == status)
        for status in ("copied", "present", "foreign")
    }
    words = [f"{counts['copied']} blobs copied ({human_size(result.bytes_copied)})"]
    if counts["present"]:
        words.append(f"{counts['present']} already there")
    if counts["foreign"]:
        words.append(f"{counts['foreign']} foreign layers left out")
    if result.source_manifest_digest is not None:
        return (
            f"Copied {result.source_manifest_digest} to {result.destination}, stored there as "
            f"{result.manifest_digest} (layers uncompressed: another manifest): {', '.join(words)}\n"
        )
    return f"Copied {result.manifest_digest} to {result.destination}: {', '.join(words)}\n"
