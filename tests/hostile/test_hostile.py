"""Every hostile and broken case of cases.py, through every command, in a docker-archive and an OCI layout.

For each run: the outcome the case states (a confined tree, or one ``imgtool: error:`` line naming what is
wrong, with its exit code), no traceback, no byte of the host's secret on stdout, the sentinel beside the
output and the image itself byte-for-byte unchanged, and nothing left in the output location but what a
successful run writes (no ``.NAME.imgtool-*`` staging siblings). ``test_every_rendering`` runs what
``test_command`` does not (the tables, ``diff layers A``, ``diff layers A B``, ``diff images``) on every
case too; no run may print a traceback, an internal error or a raw control character.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Final

import pytest

from imgtool.flatten.api import flatten
from imgtool.sources import open_image
from tests.helpers.cli import ImgtoolCli, Run
from tests.helpers.imagefactory import Fault, File, ImageSpec, Layer, make_layer, write_docker_archive
from tests.hostile.cases import (
    CASES,
    COMMANDS,
    FORMATS,
    SECRET,
    Case,
    Command,
    CommandOutcome,
    Confined,
    Env,
    Format,
    Passes,
    Refused,
    VerifyFinds,
    build_image,
    full_tree,
    layer_re,
)
from tests.hostile.harness import (
    Workspace,
    check_quiet_success,
    differences,
    dir_keys,
    dir_links,
    error_message,
    expected_keys,
    expected_links,
    shown,
    tar_tree,
)
from tests.hostile.terminal import raw_controls

PARAMS = [
    pytest.param(case, fmt, command, id=f"{case.name}-{fmt}-{command}")
    for case in CASES
    for fmt in FORMATS
    for command in COMMANDS
]


def probe_path(case: Case, env: Env) -> str:
    return case.probe.replace("$S", env.s)


def arguments(command: Command, reference: str, space: Workspace, probe: str) -> list[str]:
    out = space.work
    return {
        "inspect": ["inspect", reference, "--json"],
        "verify": ["verify", reference, "--json"],
        "flatten-dir": ["flatten", reference, "-o", str(out / "out")],
        "flatten-tar": ["flatten", reference, "-o", str(out / "out.tar")],
        "flatten-stdout": ["flatten", reference, "-o", "-"],
        "which-layer": ["which-layer", reference, probe, "--json"],
        "ls": ["ls", reference, "/", "-R", "--json"],
        "cat": ["cat", reference, probe],
        "diff": ["diff", "layers", reference, "--json"],
        "squash": ["squash", reference, f"oci:{out / 'out'}:s"],
    }[command]


def output_names(command: Command, succeeded: bool) -> list[str]:
    if not succeeded:
        return []
    return {"flatten-dir": ["out"], "flatten-tar": ["out.tar"], "squash": ["out"]}.get(command, [])


@pytest.mark.parametrize(("case", "fmt", "command"), PARAMS)
def test_command(
    case: Case,
    fmt: Format,
    command: Command,
    tmp_path: Path,
    imgtool_cli: ImgtoolCli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if case.needs_root and os.geteuid() != 0 and command.startswith("flatten"):
        pytest.skip("device nodes and ownership need root")
    space = Workspace.create(tmp_path)
    env = space.env
    built = build_image(case, fmt, space.image_dir, env)
    layer_count = len(case.layers(env))
    before = space.listing()
    monkeypatch.chdir(space.work)

    expected = case.expected(fmt, command)
    try:
        run = imgtool_cli(*arguments(command, built.reference, space, probe_path(case, env)))
    except Exception as exc:  # escaped the CLI's error funnel: the user sees a traceback
        assert space.listing() == before, "the sentinel or the image changed"
        assert space.leftovers() == [], "files left in the output location"
        pytest.fail(f"traceback: {type(exc).__name__}: {exc}")

    assert SECRET not in run.stdout_bytes, "the host's secret was read through the image"
    check_no_raw_controls(run, binary=command in ("cat", "flatten-stdout"))
    succeeded = check_outcome(case, command, expected, run, space, layer_count)
    assert space.listing() == before, "the sentinel or the image changed"
    assert space.leftovers() == output_names(command, succeeded), "unexpected files in the output location"
    assert sorted(os.listdir(tmp_path)) == ["image", "work"]


def check_outcome(
    case: Case, command: Command, expected: CommandOutcome, run: Run, space: Workspace, layer_count: int
) -> bool:
    """Check ``run`` against ``expected``; returns whether the command succeeded."""
    env = space.env
    if isinstance(expected, Refused):
        message = error_message(run.stderr)
        assert re.search(expected.regex(env), message), f"{message!r} does not match {expected.pattern!r}"
        assert run.code == expected.code, f"exit {run.code}, expected {expected.code}: {message}"
        assert run.stdout_bytes == b"", "output written before the error"
        return False
    if isinstance(expected, VerifyFinds):
        assert "Traceback" not in run.stderr
        assert (run.code, run.stderr) == (1, ""), f"exit {run.code}: {run.stderr}"
        findings = json.loads(run.stdout)
        bad = [f for f in findings if f["status"] != "ok"]
        # The blob row, and for an uncompressed layer (the same bytes) its diff_id row too.
        assert [f["status"] for f in bad] in ([expected.status], [expected.status] * 2), findings
        assert bad[0]["kind"] == "blob", findings
        if expected.status == "broken":
            assert re.search(expected.pattern, bad[0]["detail"]), bad[0]["detail"]
        return False
    warning = expected.warning if isinstance(expected, Confined) else None
    if command == "which-layer":
        assert run.code == (0 if case.which else 1), f"exit {run.code}: {run.stderr}"
    else:
        assert run.code == 0, f"exit {run.code}: {run.stderr}"
    check_quiet_success(run.stderr, warning, summary=command.startswith("flatten"))
    if isinstance(expected, Passes):
        check_metadata(command, run, layer_count, warning)
        return True
    check_confined(case, command, expected, run, space, layer_count)
    return True


def squashed_tree(layout: Path) -> bytes:
    out = io.BytesIO()
    with open_image(f"oci:{layout}:s") as image:
        assert len(image.layers) == 1
        flatten(image, out)
    return out.getvalue()


def check_metadata(command: Command, run: Run, layer_count: int, warning: str | None = None) -> None:
    if command == "inspect":
        assert len(json.loads(run.stdout)["layers"]) == layer_count
    elif command == "verify":  # the digests match; the warnings other commands give are rows here
        findings = json.loads(run.stdout)
        assert {f["status"] for f in findings} <= {"ok", "warning"}, findings
        for finding in findings:
            if finding["status"] == "warning":
                assert warning is not None and re.search(warning, finding["detail"]), finding
    else:
        raise AssertionError(f"{command} cannot merely pass")


def check_confined(
    case: Case, command: Command, expected: Confined, run: Run, space: Workspace, layer_count: int
) -> None:
    env = space.env
    spec = expected.tree(env)
    want = expected_keys(spec)
    links = expected_links(expected.links(env))
    if command in ("inspect", "verify"):
        check_metadata(command, run, layer_count, expected.warning)
    elif command == "flatten-dir":
        out = space.work / "out"
        assert differences(dir_keys(out), want) == []
        assert dir_links(out) == links
    elif command in ("flatten-tar", "flatten-stdout", "squash"):
        if command == "squash":  # the squashed image, flattened: the same tree
            data = squashed_tree(space.work / "out")
        else:
            data = (space.work / "out.tar").read_bytes() if command == "flatten-tar" else run.stdout_bytes
        keys, groups = tar_tree(data)
        assert differences(keys, want) == []
        assert groups == links
    elif command == "ls":
        # A path that shares an inode may be listed by its entry's kind ("hardlink") or by its inode's.
        linked = {shown(path) for group in links for path in group}
        rows = {(row["path"], row["type"]) for row in json.loads(run.stdout) if row["path"] not in linked}
        paths = {row["path"] for row in json.loads(run.stdout)}
        tree = full_tree(spec)
        assert paths == {shown(path) for path in tree}
        assert rows == {(shown(path), node.kind) for path, node in tree.items() if shown(path) not in linked}
    elif command == "which-layer":
        answer = json.loads(run.stdout)[0]
        assert answer["exists"] is case.which, answer
    elif command == "cat":
        assert isinstance(case.cat, bytes)
        assert run.stdout_bytes == case.cat
    elif command == "diff":
        assert len(json.loads(run.stdout)["layers"]) == layer_count


def check_no_raw_controls(run: Run, *, binary: bool) -> None:
    """No traceback and nothing a terminal would act on (file data aside)."""
    assert "Traceback" not in run.stderr, f"traceback on stderr:\n{run.stderr}"
    assert "internal error" not in run.stderr, run.stderr
    assert raw_controls(run.stderr.encode("utf-8", "surrogateescape")) == [], f"stderr: {run.stderr!r}"
    if not binary:
        assert raw_controls(run.stdout_bytes) == [], f"stdout: {run.stdout_bytes!r}"


# What test_command leaves out: (the command whose outcome the case states, the arguments). IMAGE is the
# case's image, OTHER a plain image, PROBE the case's probe, LAST its top layer's number.
RENDERINGS: Final[dict[str, tuple[Command, list[str]]]] = {
    "inspect-table": ("inspect", ["inspect", "IMAGE", "--no-trunc"]),
    "verify-table": ("verify", ["verify", "IMAGE"]),
    "which-layer-table": ("which-layer", ["which-layer", "IMAGE", "PROBE"]),
    "ls-table": ("ls", ["ls", "IMAGE", "/", "-R"]),
    "diff-table": ("diff", ["diff", "layers", "IMAGE", "-v"]),
    "diff-A": ("diff", ["diff", "layers", "IMAGE", "0"]),
    "diff-A-json": ("diff", ["diff", "layers", "IMAGE", "0", "--json"]),
    "diff-A-B": ("diff", ["diff", "layers", "IMAGE", "0", "LAST"]),
    "diff-A-B-json": ("diff", ["diff", "layers", "IMAGE", "0", "LAST", "--json"]),
    "diff-images": ("diff", ["diff", "images", "IMAGE", "OTHER"]),
    "diff-images-json": ("diff", ["diff", "images", "OTHER", "IMAGE", "--json"]),
    "diff-ci": ("diff", ["diff", "layers", "IMAGE", "--ci"]),
    "diff-ci-json": ("diff", ["diff", "layers", "IMAGE", "--ci", "--json"]),
}

RENDERING_PARAMS = [
    pytest.param(case, fmt, name, id=f"{case.name}-{fmt}-{name}")
    for case in CASES
    for fmt in FORMATS
    for name in RENDERINGS
]


@pytest.mark.parametrize(("case", "fmt", "rendering"), RENDERING_PARAMS)
def test_every_rendering(
    case: Case,
    fmt: Format,
    rendering: str,
    tmp_path: Path,
    imgtool_cli: ImgtoolCli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every case of the table (those appended later too) through the commands and renderings that
    test_command does not run: the outcome the case states for the command, one error line or none."""
    space = Workspace.create(tmp_path)
    env = space.env
    built = build_image(case, fmt, space.image_dir, env)
    layer_count = len(case.layers(env))
    other = write_docker_archive(
        tmp_path / "other.tar", [(ImageSpec([make_layer([File("z", b"z\n")])]), ["o:1"])]
    )
    before = space.listing()
    monkeypatch.chdir(space.work)
    command, template = RENDERINGS[rendering]
    replace = {
        "IMAGE": built.reference,
        "OTHER": str(other.path),
        "PROBE": probe_path(case, env),
        "LAST": str(max(layer_count - 1, 1)),
    }
    run = imgtool_cli(*[replace.get(arg, arg) for arg in template])
    check_no_raw_controls(run, binary=False)
    assert SECRET not in run.stdout_bytes, "the host's secret was read through the image"
    assert space.listing() == before, "the sentinel or the image changed"
    assert space.leftovers() == []

    expected = case.expected(fmt, command)
    opened = not (isinstance(expected, Refused) and expected.stage == "open")
    if "LAST" in template and layer_count < 2 and opened:
        assert (run.code, error_message(run.stderr)) == (2, "B = 1: the image has layers 0 to 0")
    elif isinstance(expected, Refused):
        message = error_message(run.stderr)
        assert re.search(expected.regex(env), message), f"{message!r} does not match {expected.pattern!r}"
        assert run.code == expected.code, f"exit {run.code}, expected {expected.code}: {message}"
        assert run.stdout_bytes == b"", "output written before the error"
    elif isinstance(expected, VerifyFinds):
        assert (run.code, run.stderr) == (1, ""), f"exit {run.code}: {run.stderr}"
        assert expected.status in run.stdout
    else:
        codes = {
            "which-layer": {0 if case.which else 1},
            "diff": {0, 1} if "images" in template or "--ci" in template else {0},
        }
        assert run.code in codes.get(command, {0}), f"exit {run.code}: {run.stderr}"
        check_quiet_success(run.stderr, expected.warning if isinstance(expected, Confined) else None)


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["cat", "/a"], id="cat"),
        pytest.param(["flatten", "-o", "-"], id="flatten-stdout"),
        pytest.param(["flatten", "-o", "OUT"], id="flatten-dir"),
        pytest.param(["flatten", "-o", "OUT.tar"], id="flatten-tar"),
    ],
)
def test_a_cached_index_does_not_let_a_tampered_blob_through(
    command: list[str], tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    """The index cache is keyed by diff_id: a genuine image indexed first must not make a tampered copy
    (same diff_id, different bytes) reach the output before its digest is found wrong."""
    genuine = make_layer([File("a", b"genuine\n")])
    good = write_docker_archive(tmp_path / "good.tar", [(ImageSpec([genuine]), ["app:1"])])
    swap = Fault(tamper=lambda blob: blob.replace(b"genuine", b"FORGED!"))
    bad = write_docker_archive(tmp_path / "bad.tar", [(ImageSpec([Layer(genuine, fault=swap)]), ["app:1"])])
    assert imgtool_cli("ls", good.path).code == 0  # the index of this diff_id is now cached
    out = tmp_path / "out"
    out.mkdir()
    args = [arg.replace("OUT", str(out / "result")) for arg in command]
    run = imgtool_cli(args[0], bad.path, *args[1:])
    message = error_message(run.stderr)
    assert re.search(layer_re(0) + r" blob: digest mismatch: ", message), message
    assert run.code == 1
    assert b"FORGED!" not in run.stdout_bytes
    assert run.stdout_bytes == b"", "output written before the digest was checked"
    assert os.listdir(out) == []
