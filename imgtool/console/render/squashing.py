"""squash: what was written, as a JSON document (--json) or one line."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

from imgtool.console.output import human_size
from imgtool.console.render.common import json_text
from imgtool.console.render.copying import copy_json, copy_text

if TYPE_CHECKING:
    from imgtool.console.params import ImageOptions
    from imgtool.ops.squash import SquashResult


def squash(result: SquashResult, opts: ImageOptions) -> str:
    return squash_json(result) if opts.as_json else squash_text(result)


def squash_json(result: SquashResult) -> str:
    doc = dataclasses.asdict(result)
    doc["copy"] = json.loads(copy_json(result.copy))
    return json_text(doc)


def squash_text(result: SquashResult) -> str:
    """Which layers became which, then the copy's line."""
    layer = result.layer
    span = f"layer {result.first}" if result.first == result.last else f"layers {result.first}-{result.last}"
    return (
        f"Squashed {span} of {result.layers_before} into layer {layer.index} ({layer.digest}, "
        f"{human_size(layer.size)}, {human_size(layer.uncompressed_size)} uncompressed)\n"
        + copy_text(result.copy)
    )
