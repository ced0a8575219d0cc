"""diff layers and diff images: the changes, each layer's summary, the space wasted, as documents
and as tables."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imgtool.console.output import change_word, human_size, table
from imgtool.console.render.common import json_text, one_line, short
from imgtool.layers.paths import display
from imgtool.merge.changes import ChangeWord
from imgtool.ops.diff import ImageDiff, LayerChanges, LayerRange, PathChange

if TYPE_CHECKING:
    from imgtool.console.params import ImageOptions


def change_json(change: PathChange) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "path": display(change.path),
        "change": change.change,
        "type": change.kind,
        "size": change.size,
    }
    if change.change == ChangeWord.MODIFIED:
        doc["what"] = list(change.what)
    return doc


def changes_table(changes: list[PathChange], table_format: str, colour: bool) -> str:
    rows = [
        (
            change_word(c.change, colour),
            c.kind,
            human_size(c.size) if c.kind == "file" else "",
            ", ".join(c.what),
            display(c.path),
        )
        for c in changes
    ]
    return table(rows, ["change", "type", "size", "what", "path"], table_format) + "\n"


def diff_layers_json(result: LayerRange | LayerChanges) -> str:
    if isinstance(result, LayerRange):
        doc: Any = {
            "from": result.first,
            "to": result.second,
            "changes": [change_json(c) for c in result.changes],
        }
        return json_text(doc)
    layers = [
        {
            "index": s.index,
            "digest": s.digest,
            "created_by": s.created_by,
            "changes": [change_json(c) for c in s.changes],
            "summary": {
                "added": s.added,
                "modified": s.modified,
                "metadata_only": s.metadata_only,
                "deleted": s.deleted,
                "bytes_added": s.bytes_added,
                "bytes_unreachable": s.bytes_unreachable,
            },
        }
        for s in result.summaries
    ]
    waste = result.efficiency
    image = {
        "stored_bytes": waste.stored_bytes,
        "final_bytes": waste.final_bytes,
        "wasted_bytes": waste.wasted_bytes,
        "efficiency": round(waste.score, 6),
        "wasted_files": [
            {
                "path": display(w.path),
                "wasted_bytes": w.wasted_bytes,
                "versions_lost": w.versions_lost,
                "layers": w.layers,
            }
            for w in waste.wasted_files
        ],
    }
    return json_text({"layers": layers, "image": image})


def diff_layers_text(
    result: LayerRange | LayerChanges, verbose: bool, table_format: str, colour: bool
) -> str:
    if isinstance(result, LayerRange):
        if result.changes:
            return changes_table(result.changes, table_format, colour)
        return f"no changes from layer {result.first} to layer {result.second}\n"
    rows = [
        (
            s.index,
            one_line(s.created_by, 50),
            s.added,
            f"{s.modified} ({s.metadata_only} metadata only)" if s.metadata_only else s.modified,
            s.deleted,
            human_size(s.bytes_added),
            human_size(s.bytes_unreachable),
        )
        for s in result.summaries
    ]
    headers = ["#", "created_by", "added", "modified", "deleted", "bytes added", "bytes made unreachable"]
    out = [table(rows, headers, table_format) + "\n"]
    if verbose or result.only is not None:
        for s in result.summaries:
            out.append(f"\nlayer {s.index} ({short(s.digest)}): {one_line(s.created_by, 80)}\n")
            out.append(changes_table(s.changes, table_format, colour))
    if result.only is None:
        waste = result.efficiency
        stored, final, wasted = (
            human_size(n) for n in (waste.stored_bytes, waste.final_bytes, waste.wasted_bytes)
        )
        out.append(
            f"\nImage efficiency: {waste.score * 100:.1f}%  (layers store {stored}, "
            f"the final tree holds {final}, wasted {wasted})\n"
        )
        if waste.top_wasters:
            top_rows = [(human_size(b), n, display(p)) for p, b, n in waste.top_wasters]
            out.append(table(top_rows, ["wasted", "versions lost", "path"], table_format) + "\n")
    return "".join(out)


def diff_images_json(result: ImageDiff, first: str, second: str) -> str:
    return json_text(
        {
            "first": first,
            "second": second,
            "identical": result.identical,
            "shared_base_layers": result.shared_base_layers,
            "shared_diff_ids": result.shared_diff_ids,
            "changes": [change_json(c) for c in result.changes],
            "summary": result.counts(),
        }
    )


def diff_images_text(result: ImageDiff, table_format: str, colour: bool) -> str:
    counts = result.counts()
    out = changes_table(result.changes, table_format, colour) + "\n" if result.changes else ""
    shared = _shared_text(result.shared_base_layers, len(result.shared_diff_ids))
    return (
        out
        + f"{counts['added']} added, {counts['modified']} modified, {counts['deleted']} deleted; {shared}\n"
    )


def _shared_text(base: int, shared: int) -> str:
    """The layers two images have in common, said once when they are all the shared base."""

    def layers(count: int) -> str:
        return f"{count} layer{'' if count == 1 else 's'}"

    if shared == base:
        return f"{layers(base)} in common, all at the base" if base else "no layers in common"
    return f"{layers(shared)} in common, {base} of them at the base"


def diff_layers(result: LayerRange | LayerChanges, verbose: bool, opts: ImageOptions) -> str:
    if opts.as_json:
        return diff_layers_json(result)
    return diff_layers_text(result, verbose, opts.table_format, opts.colour)


def diff_images(result: ImageDiff, first: str, second: str, opts: ImageOptions) -> str:
    if opts.as_json:
        return diff_images_json(result, first, second)
    return diff_images_text(result, opts.table_format, opts.colour)
