"""verify: each blob's check, as a list of documents and as a table."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from imgtool.console.output import style, table
from imgtool.console.render.common import json_text
from imgtool.ops.verify import Finding

if TYPE_CHECKING:
    from imgtool.console.params import ImageOptions


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


def verify(findings: list[Finding], opts: ImageOptions) -> str:
    return verify_json(findings) if opts.as_json else verify_text(findings, opts.table_format, opts.colour)
