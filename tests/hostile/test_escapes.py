"""Strings from the image never reach the terminal raw.

An image whose config (Env, Entrypoint, Cmd, WorkingDir, User, labels, os/arch), history (``created_by``),
tags (RepoTags), layer media types, manifest.json layer paths, LayerSources URLs and file names all hold
terminal escape sequences (CSI ``ESC [ 31m``, OSC ``ESC ] 0;title BEL``, the C1 CSI ``\\x9b``, DEL, carriage
return, backspace) goes through every command, as a table and as JSON, and through the errors those strings
end up in: no control byte (C0 but newline, DEL, C1 as UTF-8) may appear on stdout or stderr, and the
strings are shown escaped as file names are (``\\x1b``, ``\\r``, ...).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest

from tests.helpers.cli import ImgtoolCli, Run
from tests.helpers.imagefactory import (
    File,
    ImageSpec,
    Layer,
    make_layer,
    write_docker_archive,
    write_oci_layout,
)
from tests.hostile.harness import error_message
from tests.hostile.terminal import raw_controls

HOSTILE: Final = "\x1b[31mred\x1b]0;title\x07\x9bC1\x7fDEL\rCR\bBS"
SHOWN: Final = "\\x1b[31mred\\x1b]0;title\\x07\\x9bC1\\x7fDEL\\rCR\\x08BS"
# without the glob character, for a file name which-layer is asked about
NAME: Final = "m\x1b]0;title\x07\x9b\x7f\r\b"
NAME_SHOWN: Final = "m\\x1b]0;title\\x07\\x9b\\x7f\\r\\x08"
# created_by is shown on one line, whitespace runs (the carriage return too) as one space
SHOWN_ONE_LINE: Final = SHOWN.replace("\\r", " ")


def assert_clean(run: Run, *, binary_stdout: bool = False) -> None:
    assert "Traceback" not in run.stderr, run.stderr
    assert "internal error" not in run.stderr, run.stderr
    err = run.stderr.encode("utf-8", "surrogateescape")
    assert raw_controls(err) == [], f"raw control bytes on stderr: {err!r}"
    if not binary_stdout:
        assert raw_controls(run.stdout_bytes) == [], f"raw control bytes on stdout: {run.stdout_bytes!r}"


def layer0() -> Layer:
    tar = make_layer(
        [File("a", b"hello\n"), File(f"n{HOSTILE}", b"x\n"), File(NAME, b"y\n"), File("gone", b"old\n")]
    )
    return Layer(tar, created_by=f"RUN {HOSTILE}")


def layer1() -> Layer:
    return Layer(make_layer([File("b", b"bye\n"), File("a", b"changed\n")]), created_by=f"COPY {HOSTILE}")


def hostile_spec(layers: list[Layer] | None = None, **extra: Any) -> ImageSpec:
    return ImageSpec(
        layers if layers is not None else [layer0(), layer1()],
        env=[f"EVIL={HOSTILE}", "PATH=/bin"],
        entrypoint=[HOSTILE],
        cmd=[HOSTILE, "x"],
        working_dir=f"/w{HOSTILE}",
        user=HOSTILE,
        labels={f"l{HOSTILE}": HOSTILE},
        os=f"linux{HOSTILE}",
        architecture=f"amd64{HOSTILE}",
        **extra,
    )


TAG: Final = f"evil{HOSTILE}:1"


@dataclass(frozen=True)
class Images:
    docker: str
    oci: str
    plain: str


@pytest.fixture
def images(tmp_path: Path) -> Images:
    docker = write_docker_archive(tmp_path / "d.tar", [(hostile_spec(), [TAG])])
    oci_type = Layer(make_layer([File("a", b"hi\n")]), created_by=HOSTILE)
    oci = write_oci_layout(tmp_path / "oci", [hostile_spec([oci_type, layer1()])])
    plain = write_docker_archive(
        tmp_path / "plain.tar", [(ImageSpec([make_layer([File("a", b"x\n")])]), ["p:1"])]
    )
    return Images(str(docker.path), oci.reference(), str(plain.path))


def commands(image: str, other: str) -> list[tuple[list[str], bool]]:
    """Every command on ``image``, as a table and as JSON; True where stdout is file data. ``OUT``
    stands for a fresh output directory."""
    runs: list[tuple[list[str], bool]] = [
        (["flatten", image, "-o", "OUT/dir"], False),
        (["flatten", image, "-o", "OUT/out.tar"], False),
        (["flatten", image, "-o", "-"], True),
        (["cat", image, "/a"], True),
    ]
    for query in (
        ["inspect", image],
        ["inspect", image, "--no-trunc"],
        ["verify", image],
        ["which-layer", image, "/a", f"/n{HOSTILE}", f"/{NAME}", "/absent"],
        ["ls", image, "/", "-R"],
        ["ls", image, "/", "-R", "--layer", "0", "--only"],
        ["diff", "layers", image],
        ["diff", "layers", image, "1", "-v"],
        ["diff", "layers", image, "0", "1"],
        ["diff", "images", image, other],
    ):
        runs.append((query, False))
        runs.append(([*query, "--format", "grid"], False))
        runs.append(([*query, "--json"], False))
    return runs


@pytest.mark.parametrize("kind", ["docker", "oci"])
def test_every_command_escapes_the_image_strings(
    kind: str, images: Images, tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    image = images.docker if kind == "docker" else images.oci
    for number, (args, binary) in enumerate(commands(image, images.plain)):
        out = tmp_path / f"out{number}"
        out.mkdir()
        run = imgtool_cli(*[arg.replace("OUT", str(out)) for arg in args])
        assert_clean(run, binary_stdout=binary)
        if args[0] == "diff" and args[1] == "images":
            assert run.code == 1, (args, run.stderr)  # the images differ
        elif args[0] == "which-layer":
            assert run.code == 1, (args, run.stderr)  # /absent is not there
        else:
            assert run.code == 0, (args, run.stderr)


def test_inspect_shows_the_strings_escaped(images: Images, imgtool_cli: ImgtoolCli) -> None:
    run = imgtool_cli("inspect", images.docker)
    assert_clean(run)
    lines = run.stdout.splitlines()
    fields = {line[:12].strip(): line[13:] for line in lines[:11]}
    assert fields == {
        "Reference:": images.docker,
        "Manifest:": fields["Manifest:"],
        "Config:": fields["Config:"],
        "Platform:": f"linux{SHOWN}/amd64{SHOWN}",
        "Created:": "2020-09-13T12:26:40Z",
        "Tags:": f"evil{SHOWN}:1",
        "Entrypoint:": SHOWN,
        "Cmd:": f"{SHOWN} x",
        "WorkingDir:": f"/w{SHOWN}",
        "User:": SHOWN,
        "Env:": f"EVIL={SHOWN}",
    }
    assert lines[11] == " " * 13 + "PATH=/bin"
    assert lines[-2].endswith(f"RUN {SHOWN_ONE_LINE}")
    assert lines[-1].endswith(f"COPY {SHOWN_ONE_LINE}")


def test_json_keeps_the_strings_and_escapes_every_control(images: Images, imgtool_cli: ImgtoolCli) -> None:
    run = imgtool_cli("inspect", images.docker, "--json")
    assert_clean(run)
    doc = json.loads(run.stdout)
    assert (doc["user"], doc["env"][0], doc["labels"]) == (
        HOSTILE,
        f"EVIL={HOSTILE}",
        {f"l{HOSTILE}": HOSTILE},
    )
    assert doc["tags"] == [TAG]
    assert doc["platform"] == f"linux{HOSTILE}/amd64{HOSTILE}"
    assert [layer["created_by"] for layer in doc["layers"]] == [f"RUN {HOSTILE}", f"COPY {HOSTILE}"]
    assert '"user": "\\u001b[31mred\\u001b]0;title\\u0007\\u009bC1\\u007fDEL\\rCR\\bBS"' in run.stdout


def test_which_layer_and_ls_show_created_by_and_names_escaped(
    images: Images, imgtool_cli: ImgtoolCli
) -> None:
    run = imgtool_cli("which-layer", images.docker, f"/{NAME}", f"/n{HOSTILE}")
    assert_clean(run)
    assert run.stdout.splitlines()[-1] == f"/n{SHOWN}: no path in the image matches"
    assert run.stdout.splitlines()[:2] == [
        f"/{NAME_SHOWN}",
        f"  supplied by layer 0  {run.stdout.split()[5]}  RUN {SHOWN_ONE_LINE}",
    ]
    listing = imgtool_cli("ls", images.docker, "/")
    assert_clean(listing)
    assert [line.split("  ")[-1] for line in listing.stdout.splitlines()[-2:]] == [
        f"/{NAME_SHOWN}",
        f"/n{SHOWN}",
    ]


def test_the_ambiguous_image_error_lists_the_tags_escaped(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    archive = write_docker_archive(
        tmp_path / "two.tar", [(hostile_spec(), [TAG]), (hostile_spec(), [f"other{HOSTILE}:2"])]
    )
    run = imgtool_cli("inspect", str(archive.path))
    assert_clean(run)
    assert run.code == 1
    assert error_message(run.stderr) == (
        f"{archive.path}: holds 2 images, name one of: @0 evil{SHOWN}:1; @1 other{SHOWN}:2"
    )
    missing = imgtool_cli("ls", f"docker-archive:{archive.path}:nosuch:1")
    assert_clean(missing)
    assert error_message(missing.stderr) == (
        f"{archive.path}: no image tagged 'nosuch:1'; tags present: evil{SHOWN}:1, other{SHOWN}:2"
    )


def test_a_missing_layer_path_of_manifest_json_is_named_escaped(
    tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    def rename(manifest: list[dict[str, Any]]) -> None:
        manifest[0]["Layers"][1] = f"{HOSTILE}/layer.tar"

    archive = write_docker_archive(tmp_path / "d.tar", [(hostile_spec(), [TAG])], edit_manifest_json=rename)
    for command in (["inspect"], ["verify"], ["ls"], ["diff", "layers"]):
        run = imgtool_cli(*command, str(archive.path))
        assert_clean(run)
        assert run.code == 1
        assert (
            error_message(run.stderr)
            == f"{archive.path}: layer {SHOWN}/layer.tar is missing from the archive"
        )


def test_layer_sources_urls_are_escaped_in_verify_and_errors(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    url = f"https://example.com/{HOSTILE}"
    foreign = Layer(make_layer([File("b", b"bye\n")]), urls=[url], created_by=HOSTILE)
    archive = write_docker_archive(tmp_path / "d.tar", [(hostile_spec([layer0(), foreign]), [TAG])])
    found = imgtool_cli("verify", str(archive.path))
    assert_clean(found)
    assert found.code == 1
    assert f"distributed from https://example.com/{SHOWN}" in found.stdout
    as_json = imgtool_cli("verify", str(archive.path), "--json")
    assert_clean(as_json)
    assert json.loads(as_json.stdout)[-1]["detail"].endswith(f"distributed from {url}")
    for command in (["ls"], ["diff", "layers"], ["flatten", "-o", "-"]):
        run = imgtool_cli(*command, str(archive.path))
        assert_clean(run)
        assert run.code == 1
        assert error_message(run.stderr).endswith(
            f"layer blob is not present in the image; it is distributed from https://example.com/{SHOWN}"
        )
    inspected = imgtool_cli("inspect", str(archive.path))
    assert_clean(inspected)
    assert inspected.code == 0


def test_a_hostile_layer_media_type_is_escaped(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    media_type = f"application/vnd.oci.image.layer.v1.tar{HOSTILE}"
    odd = Layer(make_layer([File("a", b"hi\n")]), media_type=media_type)
    layout = write_oci_layout(tmp_path / "oci", [ImageSpec([odd])])
    inspected = imgtool_cli("inspect", layout.reference(), "--no-trunc")
    assert_clean(inspected)
    assert inspected.code == 0
    assert f"application/vnd.oci.image.layer.v1.tar{SHOWN}" in inspected.stdout
    for command in (["ls"], ["cat"], ["which-layer"]):
        run = imgtool_cli(*command, layout.reference(), *(["/a"] if command != ["ls"] else []))
        assert_clean(run)
        assert run.code == 1
        assert "unsupported layer media type" in error_message(run.stderr)
    verify = imgtool_cli("verify", layout.reference())
    assert_clean(verify)
    assert verify.code == 1


def test_warnings_and_errors_escape_controls_once(capsys: pytest.CaptureFixture[str]) -> None:
    """The funnel escapes what a terminal acts on and leaves the backslashes of names that a library
    message already escaped (paths.escape) alone."""
    from imgtool.cli import fail, warn
    from imgtool.layers.paths import display

    warn(f"layer 1: {display(HOSTILE.encode())}: raw {HOSTILE}")
    with pytest.raises(SystemExit) as exit_info:
        fail(f"tag {HOSTILE}", 1)
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == (
        f"imgtool: warning: layer 1: /{SHOWN}: raw {SHOWN}\nimgtool: error: tag {SHOWN}\n"
    )


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        pytest.param(["inspect", "IMAGE"], f"\nUser:        {SHOWN}\n", id="inspect"),
        pytest.param(["inspect", "IMAGE", "--json"], '"user": "\\u001b[31mred\\u001b]0;', id="inspect-json"),
        pytest.param(
            ["diff", "layers", "IMAGE", "1", "-v"], "): COPY \\x1b[31mred\\x1b]0;", id="diff-layers"
        ),
        pytest.param(["inspect", "TWO"], "", id="ambiguous-error"),
    ],
)
def test_through_a_real_pipe(args: list[str], shown: str, tmp_path: Path, images: Images) -> None:
    """A real process writing into a pipe (where an OSC sequence would still retitle the terminal that
    reads it): its bytes hold no control character."""
    two = write_docker_archive(tmp_path / "two.tar", [(hostile_spec(), [TAG]), (hostile_spec(), ["b:2"])])
    argv = [arg.replace("IMAGE", images.docker).replace("TWO", str(two.path)) for arg in args]
    proc = subprocess.run([sys.executable, "-m", "imgtool", *argv], capture_output=True, check=False)
    assert raw_controls(proc.stdout) == [], proc.stdout
    assert raw_controls(proc.stderr) == [], proc.stderr
    assert b"Traceback" not in proc.stderr
    if args[1] == "TWO":
        assert proc.returncode == 1
        assert proc.stderr.decode() == (
            f"imgtool: error: {two.path}: holds 2 images, name one of: @0 evil{SHOWN}:1; @1 b:2\n"
        )
    else:
        assert proc.returncode == 0
        assert shown.encode() in proc.stdout


@pytest.mark.parametrize(
    ("error", "message"),
    [
        pytest.param(
            RuntimeError(f"boom {HOSTILE}"),
            f"internal error: RuntimeError: boom {SHOWN} (a bug in imgtool; --debug shows where)",
            id="bug",
        ),
        pytest.param(
            OSError(5, "Input/output error", f"/x\udcff{HOSTILE}".encode("utf-8", "surrogateescape")),
            f"/x\\xff{SHOWN}: Input/output error",
            id="oserror-bytes-name",
        ),
    ],
)
def test_an_unexpected_exception_is_one_escaped_line(
    error: Exception, message: str, images: Images, imgtool_cli: ImgtoolCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever escapes the library, the user gets one line, and --debug the traceback."""
    import imgtool.ops.summary

    def broken(_image: object) -> None:
        raise error

    monkeypatch.setattr(imgtool.ops.summary, "describe_image", broken)
    run = imgtool_cli("inspect", images.docker)
    assert raw_controls(run.stderr.encode("utf-8", "surrogateescape")) == []
    assert (run.code, run.stderr, run.stdout_bytes) == (1, f"imgtool: error: {message}\n", b"")
    debug = imgtool_cli("--debug", "inspect", images.docker)
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.endswith(f"imgtool: error: {message}\n")
