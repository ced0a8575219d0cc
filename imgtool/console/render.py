"""What each command prints: its table or its JSON document, made from the data the operation
returned (schemas in docs/json.md). Every function returns the whole text, newline-terminated;
the CLI writes it."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Final

from imgtool.console.output import change_word, clean, escape_text, human_size, style, table, to_json
from imgtool.image.model import IndexInfo
from imgtool.layers.paths import display, escape
from imgtool.layers.tarstream import Entry, Kind
from imgtool.merge.changes import ChangeWord
from imgtool.ops.common import LayerRef
from imgtool.ops.diff import ImageDiff, LayerChanges, LayerRange, PathChange
from imgtool.ops.listing import Listing, mode_string, rfc3339, time_string
from imgtool.ops.summary import ImageSummary
from imgtool.ops.verify import Finding
from imgtool.ops.which import Answer, WhichResult

if TYPE_CHECKING:
    from imgtool.console.params import ImageOptions
    from imgtool.flatten.api import FlattenResult


_LAYER_TYPE_PREFIXES: Final = (
    ("application/vnd.oci.image.layer.nondistributable.v1.", "oci foreign "),
    ("application/vnd.oci.image.layer.v1.", "oci "),
    ("application/vnd.docker.image.rootfs.foreign.diff.", "docker foreign "),
    ("application/vnd.docker.image.rootfs.diff.", "docker "),
)


def short_layer_type(media_type: str) -> str:
    """A layer media type for a narrow column: ``oci tar+gzip``, ``docker tar.gzip``; others in full."""
    for prefix, label in _LAYER_TYPE_PREFIXES:
        if media_type.startswith(prefix):
            return label + media_type[len(prefix) :]
    return media_type


def short(digest: object, full: bool = False) -> str:
    text = str(digest)
    return text if full or ":" not in text else text[: text.index(":") + 13]


def one_line(text: str | None, limit: int | None) -> str:
    """``text`` (a layer's created_by) on one line: whitespace runs as one space, the rest escaped as
    file names are, cut to ``limit`` characters."""
    if not text:
        return "-"
    flat = escape_text(" ".join(text.split()))
    if limit is not None and len(flat) > limit:
        return flat[: limit - 3] + "..."
    return flat


def json_text(value: Any) -> str:
    return to_json(value) + "\n"


# -- inspect -----------------------------------------------------------------------------------


def inspect_json(summary: ImageSummary) -> dict[str, Any]:
    """The inspect document (schema in docs/json.md)."""
    config = summary.config
    return {
        "reference": summary.reference,
        "transport": summary.transport,
        "manifest_digest": summary.manifest_digest,
        "manifest_media_type": summary.manifest_media_type,
        "manifest_synthesized": summary.manifest_synthesized,
        "index": _index_json(summary.index),
        "config_digest": summary.config_digest,
        "platform": str(config.platform),
        "created": config.created,
        "tags": list(summary.tags),
        "entrypoint": list(config.entrypoint) if config.entrypoint is not None else None,
        "cmd": list(config.cmd) if config.cmd is not None else None,
        "env": list(config.env),
        "working_dir": config.working_dir,
        "user": config.user,
        "labels": dict(config.labels),
        "layers": [dataclasses.asdict(layer) for layer in summary.layers],
        "history": [
            {
                "created": h.created,
                "created_by": h.created_by,
                "comment": h.comment,
                "empty_layer": h.empty_layer,
            }
            for h in config.history
        ],
        "warnings": list(summary.warnings),
    }


def _index_json(index: IndexInfo | None) -> dict[str, Any] | None:
    """The image index the manifest was chosen from, every entry listed."""
    if index is None:
        return None
    return {
        "digest": str(index.digest) if index.digest is not None else None,
        "media_type": index.media_type,
        "manifests": [
            {
                "digest": str(entry.digest),
                "media_type": entry.media_type,
                "size": entry.size,
                "platform": str(entry.platform) if entry.platform else None,
                "chosen": entry.chosen,
                "attestation": entry.attestation,
            }
            for entry in index.entries
        ],
    }


def inspect_text(doc: dict[str, Any], no_trunc: bool, table_format: str) -> str:
    fields = [
        ("Reference", doc["reference"]),
        (
            "Manifest",
            f"{doc['manifest_digest'] or '(none)'} ({doc['manifest_media_type']}"
            + (", derived from manifest.json as skopeo derives it)" if doc["manifest_synthesized"] else ")"),
        ),
        *_index_fields(doc["index"]),
        ("Config", doc["config_digest"]),
        ("Platform", escape_text(doc["platform"])),
        ("Created", escape_text(doc["created"] or "-")),
        ("Tags", ", ".join(escape_text(str(tag)) for tag in doc["tags"]) or "-"),
        ("Entrypoint", _command_text(doc["entrypoint"])),
        ("Cmd", _command_text(doc["cmd"])),
        ("WorkingDir", escape_text(str(doc["working_dir"] or "-"))),
        ("User", escape_text(str(doc["user"] or "-"))),
        ("Env", "\n".join(escape_text(str(var)) for var in doc["env"]) or "-"),
    ]
    out = []
    for name, value in fields:
        lines = [clean(line) for line in str(value).split("\n")]
        out.append(f"{name + ':':<12} {lines[0]}")
        out.extend(f"{'':<12} {line}" for line in lines[1:])
    rows = [
        (
            layer["index"],
            short(layer["digest"], no_trunc),
            short(layer["diff_id"], no_trunc),
            human_size(layer["size"]),
            layer["media_type"] if no_trunc else short_layer_type(layer["media_type"]),
            layer["compression"],
            one_line(layer["created_by"], None if no_trunc else 60),
        )
        for layer in doc["layers"]
    ]
    headers = ["#", "digest", "diff_id", "size", "type", "compression", "created_by"]
    out += ["", table(rows, headers, table_format)]
    return "\n".join(out) + "\n"


def _index_fields(index: dict[str, Any] | None) -> list[tuple[str, str]]:
    """inspect's lines for the image index the manifest was chosen from: its digest, every entry."""
    if index is None:
        return []
    entries = index["manifests"]
    platforms = [escape_text(entry["platform"] or "-") for entry in entries]
    width = max(len(platform) for platform in platforms)
    lines = [
        f"{platform:<{width}}  {entry['digest']}"
        + (" (this image)" if entry["chosen"] else " (attestation)" if entry["attestation"] else "")
        for platform, entry in zip(platforms, entries, strict=True)
    ]
    shown = index["digest"] or "index.json"
    return [("Index", f"{shown} ({escape_text(index['media_type'])})"), ("Platforms", "\n".join(lines))]


def _command_text(value: Any) -> str:
    if not value:
        return "-"
    if isinstance(value, list):
        return " ".join(escape_text(str(v)) for v in value)
    return escape_text(str(value))


# -- verify ------------------------------------------------------------------------------------


def verify_json(findings: list[Finding]) -> str:
    return json_text([dataclasses.asdict(f) for f in findings])


def verify_text(findings: list[Finding], table_format: str, colour: bool) -> str:
    rows = [
        (
            f.blob,
            f.kind,
            f.expected,
            style(f.status, "green" if f.status == "ok" else "red", colour),
            f.detail,
        )
        for f in findings
    ]
    return table(rows, ["blob", "kind", "expected", "status", "detail"], table_format) + "\n"


# -- which-layer -------------------------------------------------------------------------------


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
    if node is None:
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


# -- ls ----------------------------------------------------------------------------------------


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


# -- diff --------------------------------------------------------------------------------------


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
    docs = [
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
    return json_text(docs)


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


# -- flatten -----------------------------------------------------------------------------------


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


# -- each command's output, as its options ask ------------------------------------------------


def inspect(summary: ImageSummary, no_trunc: bool, opts: ImageOptions) -> str:
    doc = inspect_json(summary)
    return json_text(doc) if opts.as_json else inspect_text(doc, no_trunc, opts.table_format)


def verify(findings: list[Finding], opts: ImageOptions) -> str:
    return verify_json(findings) if opts.as_json else verify_text(findings, opts.table_format, opts.colour)


def which(result: WhichResult, opts: ImageOptions) -> str:
    return which_json(result) if opts.as_json else which_text(result, opts.table_format, opts.colour)


def ls(listing: Listing, opts: ImageOptions) -> str:
    return ls_json(listing) if opts.as_json else ls_text(listing, opts.table_format)


def diff_layers(result: LayerRange | LayerChanges, verbose: bool, opts: ImageOptions) -> str:
    if opts.as_json:
        return diff_layers_json(result)
    return diff_layers_text(result, verbose, opts.table_format, opts.colour)


def diff_images(result: ImageDiff, first: str, second: str, opts: ImageOptions) -> str:
    if opts.as_json:
        return diff_images_json(result, first, second)
    return diff_images_text(result, opts.table_format, opts.colour)
