"""diff layers --ci: the files that waste space and each rule's result, as a document and as tables."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imgtool.console.output import human_size, style, table
from imgtool.console.render.common import json_text
from imgtool.layers.paths import display
from imgtool.ops.ci import CiReport, Rule, RuleResult, Status

if TYPE_CHECKING:
    from imgtool.console.params import ImageOptions

_WORDS = {Status.PASS: ("PASS", "green"), Status.FAIL: ("FAIL", "red"), Status.DISABLED: ("SKIP", "dim")}


def ci_report_json(report: CiReport) -> str:
    m = report.measures
    return json_text(
        {
            "passed": report.passed,
            "efficiency": m.efficiency,
            "wasted_bytes": m.wasted_bytes,
            "user_wasted_ratio": m.user_wasted_ratio,
            "stored_bytes": m.stored_bytes,
            "user_bytes": m.user_bytes,
            "rules": [
                {
                    "rule": r.rule,
                    "status": r.status,
                    "measured": r.measured,
                    "threshold": r.threshold,
                }
                for r in report.results
            ],
            "wasted_files": [
                {
                    "path": display(f.path),
                    "wasted_bytes": f.size,
                    "copies": [{"layer": c.layer, "size": c.size, "change": c.change} for c in f.copies],
                }
                for f in m.wasted_files
            ],
        }
    )


def _value(rule: Rule, value: float | None) -> str:
    if value is None:
        return "infinite"  # bytes wasted, none stored above the first layer
    if rule is Rule.HIGHEST_WASTED_BYTES:
        return f"{int(value)} ({human_size(int(value))})"
    return f"{value:.4f}"


def _threshold(result: RuleResult) -> str:
    if result.threshold is None:
        return "disabled"
    if result.rule is Rule.HIGHEST_WASTED_BYTES:
        return f"{int(result.threshold)} ({human_size(int(result.threshold))})"
    return f"{result.threshold:g}"


def ci_report_text(report: CiReport, top: int, table_format: str, colour: bool) -> str:
    out: list[str] = []
    files = report.measures.wasted_files
    shown = files[: max(top, 0)]
    if shown:
        rows = [
            (human_size(f.size), ", ".join(str(c.layer) for c in f.copies), display(f.path)) for f in shown
        ]
        out.append(table(rows, ["wasted", "layers", "path"], table_format) + "\n")
    if len(files) > len(shown):
        out.append(f"({len(files) - len(shown)} more wasted files; --top shows more, --json all)\n")
    if files:
        out.append("\n")
    results = [
        (
            str(r.rule),
            style(_WORDS[r.status][0], _WORDS[r.status][1], colour),
            _value(r.rule, r.measured),
            _threshold(r),
        )
        for r in report.results
    ]
    out.append(table(results, ["rule", "result", "measured", "threshold"], table_format) + "\n")
    counts = {status: sum(1 for r in report.results if r.status == status) for status in Status}
    verdict = "PASS" if report.passed else "FAIL"
    out.append(
        f"\n{verdict}: {counts[Status.PASS]} passed, {counts[Status.FAIL]} failed, "
        f"{counts[Status.DISABLED]} disabled\n"
    )
    return "".join(out)


def ci_report(report: CiReport, top: int, opts: ImageOptions) -> str:
    if opts.as_json:
        return ci_report_json(report)
    return ci_report_text(report, top, opts.table_format, opts.colour)
