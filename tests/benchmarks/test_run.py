"""The benchmark runner's own logic (benchmarks/run.py), without running a benchmark: row groups,
ratios to each row's peer, and the Markdown table with the fetched-bytes column."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from benchmarks.run import GROUPS, ROW_BY_KEY, ImageInfo, Result, Sample, markdown, parse_keys, ratio_to

FACTS = {
    "date": "2026-12-01 12:00 UTC", "cpu": "cpu", "cores": "2", "ram": "1 GiB", "kernel": "Linux",
    "filesystem": "ext4", "umoci": "umoci 0.4.7", "tar": "tar 1.34", "imgtool": "imgtool 0.1.0",
    "python": "CPython 3.11", "peers": "skopeo version 1.9.3",
}  # fmt: skip


def _result(key: str, seconds: list[float], fetched: list[int | None] | None = None) -> Result:
    got = fetched or [None] * len(seconds)
    return Result(
        ROW_BY_KEY[key], samples=[Sample(s, 2048, 0.5, f) for s, f in zip(seconds, got, strict=True)]
    )


def _table(results: dict[str, Result]) -> list[str]:
    image = ImageInfo(Path("/img"), "bench", "sha256:" + "a" * 64, [], None)
    args = argparse.Namespace(rounds=3, sync=True, cleanup_each=False)
    text = markdown(results, FACTS, image, args, [], gnu_time="/usr/bin/time")
    return [line for line in text.splitlines() if line.startswith("|")]


def test_groups_name_the_new_rows() -> None:
    assert GROUPS == {
        "registry": ["pull-skopeo", "pull-imgtool", "reg-which", "reg-pull-which", "reg-cat", "reg-pull-cat"],
        "docker": ["store-export", "store-flatten", "store-save-flatten", "store-which", "store-save-which"],
    }
    assert parse_keys("umoci, registry") == ["umoci", *GROUPS["registry"]]
    assert parse_keys(None) == []
    with pytest.raises(SystemExit, match=r"^unknown row\(s\) nosuch; known: umoci, .* and the groups"):
        parse_keys("docker,nosuch")


def test_every_peer_is_a_row_and_ratios_divide_by_it() -> None:
    assert {row.versus for row in ROW_BY_KEY.values()} - {None} <= set(ROW_BY_KEY)
    results = {
        "store-export": _result("store-export", [2.0, 4.0, 3.0]),
        "store-flatten": _result("store-flatten", [1.0, 6.0, 1.5]),
        "store-save-flatten": _result("store-save-flatten", []),
        "store-which": _result("store-which", [1.0]),  # its peer is not in this run
    }
    assert ratio_to(results, results["store-flatten"]) == (0.5, "store-export")
    assert ratio_to(results, results["store-export"]) == (None, "")  # a peer has no ratio
    assert ratio_to(results, results["store-save-flatten"]) == (None, "")  # no samples
    assert ratio_to(results, results["store-which"]) == (None, "")


def test_table_escapes_pipes_and_shows_fetched_bytes_only_when_counted() -> None:
    lines = _table(
        {
            "store-export": _result("store-export", [2.0, 4.0, 3.0]),
            "store-flatten": _result("store-flatten", [1.5]),
        }
    )
    assert lines == [
        "| Row | What | Median s | Min s | Max s | CPU s (median) | Peak RSS MiB | Ratio | Status |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
        "| docker create + docker export \\| tar -x | the image's tree from the engine: a container created, "
        "exported and extracted: the peer | 3.00 | 2.00 | 4.00 | 0.500 | 2 |  | ok |",
        "| imgtool flatten docker-storage: -o DIR | flatten the image in place from Docker's data root to a "
        "fresh directory (empty cache) | 1.50 | 1.50 | 1.50 | 0.500 | 2 | 0.50 x store-export | ok |",
    ]
    lines = _table(
        {
            "umoci": _result("umoci", [10.0]),
            "pull-skopeo": _result("pull-skopeo", [2.0], [1_000_000]),
            "pull-imgtool": _result("pull-imgtool", [1.0, 3.0, 2.5], [2_000_000, 2_500_000, 1_000_000]),
        }
    )
    assert lines[0] == (
        "| Row | What | Median s | Min s | Max s | CPU s (median) | Peak RSS MiB | Fetched MB (median) | "
        "Ratio | Status |"
    )
    assert lines[1] == "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
    assert [line.split(" | ")[-3:] for line in lines[2:]] == [
        ["-", "", "ok |"],
        ["1.0", "", "ok |"],
        ["2.0", "1.25 x pull-skopeo", "ok |"],
    ]
