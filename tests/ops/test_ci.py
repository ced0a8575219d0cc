"""diff layers --ci: dive's measures on hand-made images, computed by hand with dive's formula, its
three rules passing, failing and disabled, thresholds parsed as dive parses them, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from imgtool.errors import UsageError
from imgtool.ops import ci
from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import (
    Dir,
    Entry,
    File,
    Hardlink,
    ImageSpec,
    Opaque,
    Symlink,
    Whiteout,
    make_layer,
    write_oci_layout,
)
from tests.helpers.slowpipe import read_slowly

# Copies of each path, per dive (the bytes each layer stores there):
#   /etc/base     [1000]           min 1000  all 1000
#   /etc/conf     [100, 120, 80]   min 80    all 300   overwritten twice: wasted
#   /etc/gone     [300, 0]         min 0     all 300   deleted: wasted
#   /etc/mode     [50, 50]         min 50    all 100   chmod stores the file again: wasted
#   /etc/big      [10000]          min 10000 all 10000
#   /etc/new      [400]            min 400   all 400
#   /etc/newlink  [0]              a hardlink stores no bytes
# efficiency = (1000+80+0+50+10000+400) / (1000+300+300+100+10000+400) = 11530 / 12100
# wasted bytes = 300 + 300 + 100 = 700 (every copy of a path held twice or more, as dive counts)
# the layers above the first store 120+50+10000+400 + 80 = 10650 bytes: user wasted = 700 / 10650
WASTEFUL = [
    make_layer(
        [
            Dir("etc/"),
            File("etc/base", b"b" * 1000),
            File("etc/conf", b"c" * 100),
            File("etc/gone", b"g" * 300),
            File("etc/mode", b"m" * 50),
        ]
    ),
    make_layer(
        [
            File("etc/conf", b"C" * 120),
            File("etc/mode", b"m" * 50, mode=0o600),
            File("etc/big", b"B" * 10000),
            File("etc/new", b"n" * 400),
            Hardlink("etc/newlink", "etc/new"),
        ]
    ),
    make_layer([Whiteout("etc/gone"), File("etc/conf", b"c" * 80)]),
]
EFFICIENCY = 11530 / 12100
USER_WASTED = 700 / 10650


def _image(tmp_path: Path, layers: list[bytes], name: str = "img") -> str:
    return write_oci_layout(tmp_path / name, [Entry(ImageSpec(layers), ref="v1")]).reference("v1")


@pytest.fixture
def wasteful(tmp_path: Path) -> str:
    return _image(tmp_path, WASTEFUL)


def _doc(imgtool_cli: ImgtoolCli, *args: str, code: int = 0) -> Any:
    run = imgtool_cli("diff", "layers", *args, "--ci", "--json")
    assert (run.code, run.stderr) == (code, "")
    return json.loads(run.stdout)


def _statuses(doc: Any) -> list[tuple[str, str]]:
    return [(r["rule"], r["status"]) for r in doc["rules"]]


def test_measures_and_wasted_files_as_dive_counts_them(wasteful: str, imgtool_cli: ImgtoolCli) -> None:
    doc = _doc(imgtool_cli, wasteful)
    assert doc == {
        "passed": True,
        "efficiency": EFFICIENCY,
        "wasted_bytes": 700,
        "user_wasted_ratio": USER_WASTED,
        "stored_bytes": 12100,
        "user_bytes": 10650,
        "rules": [
            {"rule": "lowest-efficiency", "status": "pass", "measured": EFFICIENCY, "threshold": 0.9},
            {"rule": "highest-wasted-bytes", "status": "disabled", "measured": 700, "threshold": None},
            {
                "rule": "highest-user-wasted-percent",
                "status": "pass",
                "measured": USER_WASTED,
                "threshold": 0.1,
            },
        ],
        "wasted_files": [
            {
                "path": "/etc/conf",
                "wasted_bytes": 300,
                "copies": [
                    {"layer": 0, "size": 100, "change": "added"},
                    {"layer": 1, "size": 120, "change": "modified"},
                    {"layer": 2, "size": 80, "change": "modified"},
                ],
            },
            {
                "path": "/etc/gone",
                "wasted_bytes": 300,
                "copies": [
                    {"layer": 0, "size": 300, "change": "added"},
                    {"layer": 2, "size": 0, "change": "deleted"},
                ],
            },
            {
                "path": "/etc/mode",
                "wasted_bytes": 100,
                "copies": [
                    {"layer": 0, "size": 50, "change": "added"},
                    {"layer": 1, "size": 50, "change": "modified"},
                ],
            },
        ],
    }


def test_the_report_lists_wasted_files_and_each_rule(wasteful: str, imgtool_cli: ImgtoolCli) -> None:
    run = imgtool_cli("diff", "layers", wasteful, "--ci")
    assert (run.code, run.stderr) == (0, "")
    assert run.stdout == (
        "wasted    layers    path\n"
        "--------  --------  ---------\n"
        "300 B     0, 1, 2   /etc/conf\n"
        "300 B     0, 2      /etc/gone\n"
        "100 B     0, 1      /etc/mode\n"
        "\n"
        "rule                         result    measured     threshold\n"
        "---------------------------  --------  -----------  -----------\n"
        "lowest-efficiency            PASS      0.9529       0.9\n"
        "highest-wasted-bytes         SKIP      700 (700 B)  disabled\n"
        "highest-user-wasted-percent  PASS      0.0657       0.1\n"
        "\n"
        "PASS: 2 passed, 0 failed, 1 disabled\n"
    )
    run = imgtool_cli("diff", "layers", wasteful, "--ci", "--top", "1", "--highest-wasted-bytes", "699")
    assert (run.code, run.stderr) == (1, "")
    assert run.stdout == (
        "wasted    layers    path\n"
        "--------  --------  ---------\n"
        "300 B     0, 1, 2   /etc/conf\n"
        "(2 more wasted files; --top shows more, --json all)\n"
        "\n"
        "rule                         result    measured     threshold\n"
        "---------------------------  --------  -----------  -----------\n"
        "lowest-efficiency            PASS      0.9529       0.9\n"
        "highest-wasted-bytes         FAIL      700 (700 B)  699 (699 B)\n"
        "highest-user-wasted-percent  PASS      0.0657       0.1\n"
        "\n"
        "FAIL: 2 passed, 1 failed, 0 disabled\n"
    )
    run = imgtool_cli("diff", "layers", wasteful, "--ci", "--top", "0")
    assert (run.code, run.stderr) == (0, "")
    assert run.stdout.startswith("(3 more wasted files; --top shows more, --json all)\n\nrule ")


@pytest.mark.parametrize(
    ("option", "value", "rule", "status"),
    [
        ("--lowest-efficiency", repr(EFFICIENCY), "lowest-efficiency", "pass"),  # equal passes
        ("--lowest-efficiency", "0.96", "lowest-efficiency", "fail"),
        ("--lowest-efficiency", "1", "lowest-efficiency", "fail"),
        ("--lowest-efficiency", "0", "lowest-efficiency", "pass"),
        ("--highest-wasted-bytes", "700", "highest-wasted-bytes", "pass"),  # equal passes
        ("--highest-wasted-bytes", "0.7kB", "highest-wasted-bytes", "pass"),
        ("--highest-wasted-bytes", "699", "highest-wasted-bytes", "fail"),
        ("--highest-wasted-bytes", "0.699KB", "highest-wasted-bytes", "fail"),
        ("--highest-wasted-bytes", "20MB", "highest-wasted-bytes", "pass"),
        ("--highest-user-wasted-percent", repr(USER_WASTED), "highest-user-wasted-percent", "pass"),
        ("--highest-user-wasted-percent", "0.065", "highest-user-wasted-percent", "fail"),
        ("--highest-user-wasted-percent", "0", "highest-user-wasted-percent", "fail"),
        ("--lowest-efficiency", "disabled", "lowest-efficiency", "disabled"),
        ("--lowest-efficiency", "OFF", "lowest-efficiency", "disabled"),
        ("--highest-user-wasted-percent", "false", "highest-user-wasted-percent", "disabled"),
        ("--highest-user-wasted-percent", "", "highest-user-wasted-percent", "disabled"),
    ],
)
def test_each_rule_passes_fails_or_is_disabled(
    wasteful: str, imgtool_cli: ImgtoolCli, option: str, value: str, rule: str, status: str
) -> None:
    failed = status == "fail"
    doc = _doc(imgtool_cli, wasteful, option, value, code=1 if failed else 0)
    expected = {"lowest-efficiency": "pass", "highest-wasted-bytes": "disabled"}
    expected["highest-user-wasted-percent"] = "pass"
    expected[rule] = status
    assert _statuses(doc) == list(expected.items())
    assert doc["passed"] is not failed


def test_every_rule_failing_at_once(wasteful: str, imgtool_cli: ImgtoolCli) -> None:
    args = [
        "--lowest-efficiency",
        "0.99",
        "--highest-wasted-bytes",
        "1",
        "--highest-user-wasted-percent",
        "0.01",
    ]
    doc = _doc(imgtool_cli, wasteful, *args, code=1)
    assert _statuses(doc) == [
        ("lowest-efficiency", "fail"),
        ("highest-wasted-bytes", "fail"),
        ("highest-user-wasted-percent", "fail"),
    ]
    assert [r["threshold"] for r in doc["rules"]] == [0.99, 1, 0.01]
    run = imgtool_cli("diff", "layers", wasteful, "--ci", *args)
    assert (run.code, run.stderr) == (1, "")
    assert run.stdout.endswith("\nFAIL: 0 passed, 3 failed, 0 disabled\n")


def test_removed_directories_count_every_file_they_removed(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    """Where imgtool's counting differs from dive's (docs/json.md): a deleted directory and an opaque
    one leave a 0-byte copy at every path they removed. dive sizes the whiteout of d as d's 100 bytes,
    at d alone, once (so not wasted), and ignores the opaque marker: it gives 1.0 and 0 wasted here."""
    layers = [
        make_layer(
            [
                Dir("d/"),
                File("d/f", b"f" * 100),
                Dir("o/"),
                File("o/g", b"g" * 200),
                File("keep", b"k" * 1000),
            ]
        ),
        make_layer([Whiteout("d"), Opaque("o/"), File("o/h", b"h" * 10)]),
    ]
    doc = _doc(imgtool_cli, _image(tmp_path, layers), code=1)
    # d/f [100, 0], o/g [200, 0] (hidden), o/h [10], keep [1000]: (0+0+10+1000) / (100+200+10+1000)
    assert (doc["efficiency"], doc["wasted_bytes"], doc["user_bytes"]) == (1010 / 1310, 300, 10)
    assert doc["user_wasted_ratio"] == 30.0
    assert [(f["path"], f["wasted_bytes"], f["copies"]) for f in doc["wasted_files"]] == [
        (
            "/o/g",
            200,
            [{"layer": 0, "size": 200, "change": "added"}, {"layer": 1, "size": 0, "change": "deleted"}],
        ),
        (
            "/d/f",
            100,
            [{"layer": 0, "size": 100, "change": "added"}, {"layer": 1, "size": 0, "change": "deleted"}],
        ),
    ]
    assert _statuses(doc) == [
        ("lowest-efficiency", "fail"),
        ("highest-wasted-bytes", "disabled"),
        ("highest-user-wasted-percent", "fail"),
    ]


def test_user_wasted_ratio_without_user_bytes(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    """One layer: nothing wasted, nothing above it; a ratio of 0, every rule passes. A file deleted by a
    layer that stores nothing: wasted bytes over no user bytes is infinite (null), and the rule fails,
    as dive's division by zero does."""
    one = _image(tmp_path, [make_layer([File("a", b"a" * 10)])], "one")
    doc = _doc(imgtool_cli, one)
    assert (doc["efficiency"], doc["wasted_bytes"], doc["user_bytes"], doc["user_wasted_ratio"]) == (
        1.0,
        0,
        0,
        0.0,
    )
    assert (doc["passed"], doc["wasted_files"]) == (True, [])
    gone = _image(tmp_path, [make_layer([File("a", b"a" * 10)]), make_layer([Whiteout("a")])], "gone")
    doc = _doc(imgtool_cli, gone, "--lowest-efficiency", "disabled", code=1)
    assert (doc["efficiency"], doc["wasted_bytes"], doc["user_bytes"], doc["user_wasted_ratio"]) == (
        0.0,
        10,
        0,
        None,
    )
    assert doc["rules"][2] == {
        "rule": "highest-user-wasted-percent",
        "status": "fail",
        "measured": None,
        "threshold": 0.1,
    }
    run = imgtool_cli("diff", "layers", gone, "--ci", "--lowest-efficiency", "disabled")
    assert "highest-user-wasted-percent  FAIL      infinite" in run.stdout


def test_an_empty_image_is_fully_efficient(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    doc = _doc(imgtool_cli, _image(tmp_path, [make_layer([Dir("etc/")])]))
    assert (doc["efficiency"], doc["wasted_bytes"], doc["stored_bytes"], doc["passed"]) == (1.0, 0, 0, True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--ci", "--lowest-efficiency", "1.5"],
            "--lowest-efficiency: '1.5' is outside the range 0 to 1 (it is a ratio, not a percentage)",
        ),
        (
            ["--ci", "--lowest-efficiency", "90%"],
            "--lowest-efficiency: '90%' is not a number (a ratio from 0 to 1, or 'disabled')",
        ),
        (
            ["--ci", "--lowest-efficiency", "nan"],
            "--lowest-efficiency: 'nan' is not a number (a ratio from 0 to 1, or 'disabled')",
        ),
        (
            ["--ci", "--highest-user-wasted-percent", "-0.1"],
            "--highest-user-wasted-percent: '-0.1' is outside the range 0 to 1 (it is a ratio, not a "
            "percentage)",
        ),
        (
            ["--ci", "--highest-wasted-bytes", "20XB"],
            "--highest-wasted-bytes: '20XB' is not a size (a number of bytes, with a unit such as KB, MB, "
            "MiB or GiB, or 'disabled')",
        ),
        (
            ["--ci", "--highest-wasted-bytes", "99999999EB"],
            "--highest-wasted-bytes: '99999999EB' is too large",
        ),
        (["--highest-wasted-bytes", "20MB"], "--highest-wasted-bytes is a rule of --ci: give --ci as well"),
        (["--ci", "1"], "--ci rates the whole image: it takes no layer number and no -v"),
        (["--ci", "-v"], "--ci rates the whole image: it takes no layer number and no -v"),
    ],
)
def test_bad_thresholds_are_one_line_usage_errors(
    tmp_path: Path, imgtool_cli: ImgtoolCli, args: list[str], message: str
) -> None:
    """Refused before the image is read: the image named does not even exist."""
    run = imgtool_cli("diff", "layers", str(tmp_path / "absent.tar"), *args)
    assert (run.code, run.stdout, run.stderr) == (2, "", f"imgtool: error: {message}\n")


def test_an_unreadable_image_is_an_error_not_a_verdict(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    run = imgtool_cli("diff", "layers", str(tmp_path / "absent.tar"), "--ci")
    assert run.code == 1
    assert run.stdout == ""
    assert run.stderr.startswith("imgtool: error: ") and run.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("20MB", 20_000_000),
        ("20MiB", 20 * 1024**2),
        ("20Mb", 20_000_000),
        ("20 mb", 20_000_000),
        ("20M", 20_000_000),
        ("20Mi", 20 * 1024**2),
        ("1.5k", 1500),
        ("1,000", 1000),
        ("700", 700),
        ("0.7KB", 700),
        ("0.0015KB", 1),  # truncated, as go-humanize converts to an integer
        ("2GiB", 2 * 1024**3),
        ("1TB", 10**12),
        ("3 B", 3),
        ("5.", 5),
        (".5KB", 500),
    ],
)
def test_sizes_are_read_as_dive_reads_them(text: str, size: int) -> None:
    assert ci.parse_size(text, "--highest-wasted-bytes") == size


@pytest.mark.parametrize("text", ["1e3", "-1", "MB", " 20MB", "20XB", "1.2.3KB", "20 M B", "0x10"])
def test_sizes_dive_refuses_are_refused(text: str) -> None:
    with pytest.raises(UsageError, match=r"^--highest-wasted-bytes: .* is not a size"):
        ci.parse_size(text, "--highest-wasted-bytes")


@pytest.mark.parametrize("text", ["disabled", "Disabled", " off ", "FALSE", ""])
def test_the_words_that_disable_a_rule(text: str) -> None:
    assert ci.parse_size(text, "--highest-wasted-bytes") is None
    assert ci.parse_ratio(text, "--lowest-efficiency") is None


def test_defaults_are_dives() -> None:
    assert ci.thresholds(None, None, None) == ci.Thresholds(0.9, None, 0.1)
    assert ci.thresholds("0.5", "1KiB", "off") == ci.Thresholds(0.5, 1024, None)


def test_replacements_and_symlinked_directories(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    """Where imgtool's counting differs from dive's (docs/json.md): x, a file, becomes a directory
    (its 100 bytes are lost), y, a directory, becomes a file (the file below it, z, is lost; y itself
    is no waste: a directory is no copy). dive counts neither loss: 1162/1162 and 0 wasted."""
    layers = [
        make_layer([File("x", b"x" * 100), Dir("y/"), File("y/z", b"z" * 50), File("k", b"k" * 1000)]),
        make_layer([Dir("x/"), File("x/in", b"i" * 5), File("y", b"y" * 7)]),
    ]
    doc = _doc(imgtool_cli, _image(tmp_path, layers), code=1)
    # x [100, 0], x/in [5], y [7], y/z [50, 0], k [1000]: (0+5+7+0+1000) / (100+5+7+50+1000)
    assert (doc["efficiency"], doc["wasted_bytes"], doc["user_bytes"]) == (1012 / 1162, 150, 12)
    assert [
        (f["path"], [(c["layer"], c["size"], c["change"]) for c in f["copies"]]) for f in doc["wasted_files"]
    ] == [
        ("/x", [(0, 100, "added"), (1, 0, "deleted")]),
        ("/y/z", [(0, 50, "added"), (1, 0, "deleted")]),
    ]
    # bin -> usr/bin: layer 1's bin/sh is usr/bin/sh written again (dive: two paths, nothing wasted)
    layers = [
        make_layer([Dir("usr/"), Dir("usr/bin/"), Symlink("bin", "usr/bin"), File("usr/bin/sh", b"s" * 10)]),
        make_layer([File("bin/sh", b"S" * 20)]),
    ]
    doc = _doc(imgtool_cli, _image(tmp_path, layers, "usrmerge"), code=1)
    assert (doc["efficiency"], doc["wasted_bytes"], doc["user_bytes"]) == (10 / 30, 30, 20)
    assert [(f["path"], f["wasted_bytes"]) for f in doc["wasted_files"]] == [("/usr/bin/sh", 30)]


def test_results_are_coloured_on_a_terminal_only(
    wasteful: str, imgtool_cli: ImgtoolCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    args = ("diff", "layers", wasteful, "--ci", "--lowest-efficiency", "0.99")
    run = imgtool_cli.on_terminal("stdout")(*args)
    assert run.code == 1
    assert "\x1b[31mFAIL\x1b[0m" in run.stdout and "\x1b[32mPASS\x1b[0m" in run.stdout
    run = imgtool_cli(*args)
    assert run.code == 1 and "\x1b" not in run.stdout
    run = imgtool_cli.on_terminal("stdout")(*args, "--json")
    assert run.code == 1 and "\x1b" not in run.stdout


def test_a_failing_verdict_comes_whole_through_a_slow_pipe(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    """Every byte of a long report reaches a slow reader, and the exit status is still the verdict."""
    names = [f"f{n:04}" for n in range(2000)]
    layers = [
        make_layer([File(n, b"a" * 10) for n in names]),
        make_layer([File(n, b"b" * 10) for n in names]),
    ]
    ref = _image(tmp_path, layers)
    expected = imgtool_cli("diff", "layers", ref, "--ci", "--json")
    assert expected.code == 1 and len(expected.stdout_bytes) > 4 * 65536
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    with subprocess.Popen(
        [sys.executable, "-m", "imgtool", "diff", "layers", ref, "--ci", "--json"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        fd = proc.stdout.fileno()
        data = read_slowly(lambda n: os.read(fd, n))
        stderr = proc.stderr.read()
    assert (proc.returncode, stderr) == (1, b"")
    assert data == expected.stdout_bytes
    doc = json.loads(data)
    assert (doc["efficiency"], doc["wasted_bytes"], len(doc["wasted_files"])) == (0.5, 40000, 2000)
