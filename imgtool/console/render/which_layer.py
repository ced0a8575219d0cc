"""which-layer: each path's answer (the layer that supplies it, symlinks followed, its history),
as documents and as text."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imgtool.console.output import change_word, escape_text, human_size, table
from imgtool.console.render.common import json_text, one_line, short
from imgtool.layers.paths import display, escape
from imgtool.layers.tarstream import Entry, Kind
from imgtool.merge.changes import ChangeWord
from imgtool.ops.common import LayerRef
from imgtool.ops.which import Answer, WhichResult

if TYPE_CHECKING:
    from imgtool.console.params import ImageOptions


def which_json(result: WhichResult) -> str:
    return json_text([_answer_json(result.layers, a) for a in result.answers])


def _layer_ref(layers: list[LayerRef], index: int) -> dict[str, Any] | None:
    if index < 0:
        return None
    layer = layers[index]
    return {"index": index, "digest": layer.digest, "created_by": layer.created_by}


def _answer_json(layers: list[LayerRef], item: Answer) -> dict[str, Any]:
    node = item.node
    content = node.content if node is not None else None
    entry = node.entry if node is not None else None
    return {
        "path": None if item.unmatched_pattern else display(item.path),
        "query": escape(item.asked.encode("utf-8", "surrogateescape")),
        "exists": node is not None,
        "layer": _layer_ref(layers, node.layer) if node is not None else None,
        "type": (entry.kind_name if entry is not None else "dir") if node is not None else None,
        "size": content.size if content is not None and content.kind == Kind.FILE else (0 if node else None),
        "mode": f"{content.mode:04o}" if content is not None else ("0755" if node else None),
        "uid": content.uid if content is not None else (0 if node else None),
        "gid": content.gid if content is not None else (0 if node else None),
        "linkname": _linkname_text(entry) if entry is not None and entry.link else None,
        "via": [
            {
                "symlink": display(step.path),
                "target": escape(step.target),
                "layer": _layer_ref(layers, step.layer),
            }
            for step in item.via
        ],
        "history": [
            {
                "index": change.layer,
                "digest": layers[change.layer].digest,
                "change": change.change,
                "what": list(change.what),
                "type": change.kind,
                "size": change.size,
            }
            for change in item.history
        ],
    }


def _linkname_text(entry: Entry) -> str:
    return escape(entry.link) if entry.kind == Kind.SYMLINK else display(entry.link)


def which_text(result: WhichResult, table_format: str, colour: bool) -> str:
    lines: list[str] = []
    for number, item in enumerate(result.answers):
        if number:
            lines.append("")
        lines.extend(_answer_lines(result.layers, item, table_format, colour))
    return "".join(line + "\n" for line in lines)


def _answer_lines(layers: list[LayerRef], item: Answer, table_format: str, colour: bool) -> list[str]:
    if item.unmatched_pattern:
        return [f"{escape_text(item.asked)}: no path in the image matches"]
    name = display(item.path)
    node = item.node
    lines = []
    if item.not_a_directory:
        lines.append(f"{escape_text(item.asked)}: not a directory")
    elif node is None:
        removed = item.removed_by
        if removed is not None:
            digest = short(layers[removed.layer].digest)
            lines.append(f"{name}: not in the image: {removed.change} by layer {removed.layer} ({digest})")
        else:
            lines.append(f"{name}: not in the image: no layer ever had it")
    else:
        layer_text = "the base (implied root)" if node.layer < 0 else f"layer {node.layer}"
        lines.append(f"{name}")
        lines.extend(
            f"  via symlink {display(step.path)} -> {escape(step.target)} (layer {step.layer})"
            for step in item.via
        )
        if node.layer >= 0:
            layer = layers[node.layer]
            lines.append(
                f"  supplied by {layer_text}  {short(layer.digest)}  {one_line(layer.created_by, 70)}"
            )
        content = node.content
        if content is None:
            lines.append("  dir  0755  0:0  (implied by entries below it)")
        else:
            entry = node.entry
            kind = entry.kind_name if entry is not None else "dir"
            size = human_size(content.size) if content.kind == Kind.FILE else "-"
            link = f"  -> {_linkname_text(entry)}" if entry is not None and entry.link else ""
            lines.append(f"  {kind}  {size}  {content.mode:04o}  {content.uid}:{content.gid}{link}")
    if item.history:
        rows = [
            (
                c.layer,
                short(layers[c.layer].digest),
                change_word(c.change, colour),
                ", ".join(c.what) or ("unchanged" if c.change == ChangeWord.MODIFIED else "-"),
                c.kind,
            )
            for c in item.history
        ]
        lines.append("  history:")
        history = table(rows, ["layer", "digest", "change", "what", "type"], table_format)
        lines.extend(f"    {line}" for line in history.splitlines())
    return lines


def which(result: WhichResult, opts: ImageOptions) -> str:
    return which_json(result) if opts.as_json else which_text(result, opts.table_format, opts.colour)
