"""inspect: the image's manifest, config, platform and layers, as a document and as text."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from imgtool.console.output import clean, escape_text, human_size, table
from imgtool.console.render.common import json_text, one_line, short, short_layer_type
from imgtool.image.model import IndexInfo
from imgtool.ops.summary import ImageSummary

if TYPE_CHECKING:
    from imgtool.console.params import ImageOptions


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
        "exposed_ports": list(summary.exposed_ports),
        "volumes": list(summary.volumes),
        "stop_signal": summary.stop_signal,
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
        *_set_fields(doc),
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


def _set_fields(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """Ports, volumes, stop signal and labels, each only where the image sets it."""
    labels = [f"{escape_text(name)}={escape_text(value)}" for name, value in doc["labels"].items()]
    fields = [
        ("Ports", ", ".join(escape_text(str(port)) for port in doc["exposed_ports"])),
        ("Volumes", "\n".join(escape_text(str(volume)) for volume in doc["volumes"])),
        ("StopSignal", escape_text(doc["stop_signal"] or "")),
        ("Labels", "\n".join(labels)),
    ]
    return [(name, value) for name, value in fields if value]


def _command_text(value: Any) -> str:
    if not value:
        return "-"
    if isinstance(value, list):
        return " ".join(escape_text(str(v)) for v in value)
    return escape_text(str(value))


def inspect(summary: ImageSummary, no_trunc: bool, opts: ImageOptions) -> str:
    doc = inspect_json(summary)
    return json_text(doc) if opts.as_json else inspect_text(doc, no_trunc, opts.table_format)
