"""The CLI as a user meets it: exact output of inspect and verify, one-line errors and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import (
    Dir,
    Entry,
    Fault,
    File,
    ImageSpec,
    Layer,
    Symlink,
    Whiteout,
    compress,
    make_layer,
    sha256_digest,
    tamper,
    write_docker_archive,
    write_oci_layout,
)

BASE = make_layer(
    [
        Dir("etc/"),
        File("etc/os-release", b"NAME=test\n"),
        Symlink("bin", "usr/bin"),
        Dir("usr/"),
        Dir("usr/bin/"),
        File("usr/bin/tool", b"#!/bin/sh\n", mode=0o755),
    ]
)
APP = make_layer([File("etc/app.conf", b"x=1\n", mode=0o640, uid=1000, gid=1000), Whiteout("etc/os-release")])


def sample(tmp_path: Path) -> str:
    image = ImageSpec(
        [BASE, APP],
        created_by=["ADD rootfs.tar /", "COPY app.conf /etc/"],
        env=["PATH=/usr/bin", "APP=1"],
        entrypoint=["/usr/bin/tool"],
        cmd=["--serve"],
    )
    return write_oci_layout(tmp_path / "oci", [Entry(image, ref="v1")]).reference("v1")


def test_inspect_json_schema(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    ref = sample(tmp_path)
    run = imgtool_cli("inspect", ref, "--json")
    assert (run.code, run.stderr) == (0, "")
    doc = json.loads(run.stdout)
    assert set(doc) >= {
        "reference",
        "manifest_digest",
        "config_digest",
        "platform",
        "created",
        "tags",
        "layers",
    }
    assert doc["reference"] == ref
    assert doc["platform"] == "linux/amd64"
    assert doc["tags"] == ["v1"]
    assert doc["entrypoint"] == ["/usr/bin/tool"]
    assert doc["env"] == ["PATH=/usr/bin", "APP=1"]
    assert [layer["index"] for layer in doc["layers"]] == [0, 1]
    assert [layer["created_by"] for layer in doc["layers"]] == ["ADD rootfs.tar /", "COPY app.conf /etc/"]
    assert {layer["compression"] for layer in doc["layers"]} == {"gzip"}
    assert all(
        layer["digest"].startswith("sha256:") and len(layer["digest"]) == 71 for layer in doc["layers"]
    )


def test_inspect_text(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    ref = sample(tmp_path)
    doc = json.loads(imgtool_cli("inspect", ref, "--json").stdout)
    run = imgtool_cli("inspect", ref)
    assert run.code == 0
    lines = run.stdout.splitlines()
    assert lines[:11] == [
        f"Reference:   {ref}",
        f"Manifest:    {doc['manifest_digest']} (application/vnd.oci.image.manifest.v1+json)",
        f"Config:      {doc['config_digest']}",
        "Platform:    linux/amd64",
        f"Created:     {doc['created']}",
        "Tags:        v1",
        "Entrypoint:  /usr/bin/tool",
        "Cmd:         --serve",
        "WorkingDir:  -",
        "User:        -",
        "Env:         PATH=/usr/bin",
    ]
    assert lines[11] == "             APP=1"
    header = lines[13].split()
    assert header == ["#", "digest", "diff_id", "size", "type", "compression", "created_by"]
    first = lines[15].split(None, 6)
    assert first[0] == "0"
    assert first[1] == doc["layers"][0]["digest"][:19]
    assert first[-1].endswith("ADD rootfs.tar /")


def test_verify_ok_and_mismatch(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    ref = sample(tmp_path)
    run = imgtool_cli("verify", ref, "--json")
    assert run.code == 0
    findings = json.loads(run.stdout)
    assert [(f["blob"], f["kind"], f["status"]) for f in findings] == [
        ("manifest", "application/vnd.oci.image.manifest.v1+json", "ok"),
        ("config", "application/vnd.oci.image.config.v1+json", "ok"),
        ("layer 0", "blob", "ok"),
        ("layer 0", "diff_id", "ok"),
        ("layer 1", "blob", "ok"),
        ("layer 1", "diff_id", "ok"),
    ]
    tampered = ImageSpec([BASE, Layer(APP, diff_id="sha256:" + "1" * 64)])
    bad = write_oci_layout(tmp_path / "bad", [Entry(tampered, ref="v1")]).reference("v1")
    run = imgtool_cli("verify", bad)
    assert run.code == 1
    rows = [line.split() for line in run.stdout.splitlines()[2:]]
    assert [r[:4] for r in rows][-2:] == [
        ["layer", "1", "blob", rows[-2][3]],
        ["layer", "1", "diff_id", "sha256:" + "1" * 64],
    ]
    assert rows[-1][4] == "mismatch"
    assert rows[-1][5].startswith("sha256:")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["inspect", "{tmp}/absent.tar"], 1, "imgtool: error: {tmp}/absent.tar: no such file or directory\n"),
        (
            ["inspect", "{tmp}/plain.txt"],
            1,
            "imgtool: error: {tmp}/plain.txt: not an image archive (not a tar file)\n",
        ),
        (
            ["inspect", "oci:{tmp}/oci:nope"],
            1,
            "imgtool: error: {tmp}/oci: no image named 'nope'; refs present: v1\n",
        ),
        (
            ["inspect", "{tmp}/oci", "--platform", "linux"],
            2,
            "imgtool: error: invalid platform 'linux': expected os/arch[/variant], e.g. linux/amd64\n",
        ),
        (
            ["flatten", "{tmp}/oci"],
            2,
            "imgtool: error: Missing option '-o' / '--output'. (see 'imgtool flatten --help')\n",
        ),
        (["nosuch"], 2, "imgtool: error: No such command 'nosuch'. (see 'imgtool --help')\n"),
        (["ls", "{tmp}/oci", "--only"], 2, "imgtool: error: --only needs --layer N\n"),
        (["ls", "{tmp}/oci", "--layer", "7"], 2, "imgtool: error: --layer 7: the image has layers 0 to 1\n"),
        (["cat", "{tmp}/oci", "/etc"], 1, "imgtool: error: /etc: is a directory\n"),
        (["cat", "{tmp}/oci", "/nope"], 1, "imgtool: error: /nope: no such file in the image\n"),
        (
            ["diff", "layers", "{tmp}/oci", "1", "2"],
            2,
            "imgtool: error: B = 2: the image has layers 0 to 1\n",
        ),
        (
            ["inspect", "oci-archive:{tmp}/oci"],
            1,
            "imgtool: error: {tmp}/oci: is a directory (oci-archive: expects a tar file; oci:{tmp}/oci opens"
            " a layout)\n",
        ),
        (
            ["ls", "docker-daemon:alpine"],
            2,
            "imgtool: error: docker-daemon:alpine: the docker-daemon transport is not supported yet; "
            "use skopeo copy to make an oci: layout\n",
        ),
        (
            ["cat", "{tmp}/oci", "/etc/os-release/x"],
            1,
            "imgtool: error: /etc/os-release/x: no such file in the image\n",
        ),
    ],
)
def test_errors_are_one_line(
    tmp_path: Path, imgtool_cli: ImgtoolCli, args: list[str], code: int, message: str
) -> None:
    sample(tmp_path)
    (tmp_path / "plain.txt").write_text("hello\n")
    run = imgtool_cli(*[a.format(tmp=tmp_path) for a in args])
    assert (run.code, run.stderr, run.stdout) == (code, message.format(tmp=tmp_path), "")


def test_debug_shows_the_traceback(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    run = imgtool_cli("--debug", "inspect", str(tmp_path / "absent.tar"))
    assert run.code == 1
    assert "Traceback (most recent call last)" in run.stderr
    assert run.stderr.endswith(f"imgtool: error: {tmp_path}/absent.tar: no such file or directory\n")


def test_version_and_bare_invocation(imgtool_cli: ImgtoolCli) -> None:
    from imgtool import __version__

    assert imgtool_cli("--version").stdout == f"imgtool {__version__}\n"
    run = imgtool_cli()
    assert run.code == 0
    for command in ("cat", "diff", "flatten", "inspect", "ls", "verify", "which-layer"):
        assert f"  {command} " in run.stdout


def test_docker_archive_with_two_images_lists_choices(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    write_docker_archive(
        tmp_path / "d.tar", [(ImageSpec([BASE]), ["a:1"]), (ImageSpec([BASE, APP]), ["b:2"])]
    )
    run = imgtool_cli("inspect", str(tmp_path / "d.tar"))
    assert run.code == 1
    assert run.stderr == f"imgtool: error: {tmp_path}/d.tar: holds 2 images, name one of: @0 a:1; @1 b:2\n"


def _verify_rows(run_stdout: str) -> list[tuple[str, str, str]]:
    """(blob, kind, status) of each row of verify's JSON."""
    return [(f["blob"], f["kind"], f["status"]) for f in json.loads(run_stdout)]


def test_verify_fails_both_digests_of_a_changed_uncompressed_layer(
    tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    """An uncompressed layer's blob and tar are the same bytes: one changed byte fails both checks."""
    spec = ImageSpec([Layer(BASE, compression="none", fault=Fault(tamper=True)), APP])
    ref = write_oci_layout(tmp_path / "oci", [Entry(spec, ref="v1")]).reference("v1")
    run = imgtool_cli("verify", ref, "--json")
    assert (run.code, run.stderr) == (1, "")
    findings = json.loads(run.stdout)
    assert _verify_rows(run.stdout) == [
        ("manifest", "application/vnd.oci.image.manifest.v1+json", "ok"),
        ("config", "application/vnd.oci.image.config.v1+json", "ok"),
        ("layer 0", "blob", "mismatch"),
        ("layer 0", "diff_id", "mismatch"),
        ("layer 1", "blob", "ok"),
        ("layer 1", "diff_id", "ok"),
    ]
    assert findings[2]["expected"] == findings[3]["expected"] != findings[2]["detail"]
    assert findings[2]["detail"] == findings[3]["detail"] == sha256_digest(tamper(BASE))


MISLABELLED = "application/vnd.oci.image.layer.v1.tar+gzip"


def test_a_layer_not_compressed_as_its_media_type_says_is_one_warning_everywhere(
    tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    spec = ImageSpec([BASE, Layer(APP, compression="none", media_type=MISLABELLED)])
    ref = write_oci_layout(tmp_path / "oci", [Entry(spec, ref="v1")]).reference("v1")
    what = f"layer 1 ({sha256_digest(APP)})"
    message = f"{what}: media type {MISLABELLED} says gzip, but the blob is not compressed"
    run = imgtool_cli("verify", ref, "--json")
    assert (run.code, run.stderr) == (0, "")
    assert json.loads(run.stdout)[-1] == {
        "blob": "layer 1",
        "kind": "media type",
        "expected": MISLABELLED,
        "status": "warning",
        "detail": message,
    }
    assert _verify_rows(run.stdout)[2:-1] == [
        ("layer 0", "blob", "ok"),
        ("layer 0", "diff_id", "ok"),
        ("layer 1", "blob", "ok"),
        ("layer 1", "diff_id", "ok"),
    ]
    run = imgtool_cli("inspect", ref, "--json")
    assert (run.code, run.stderr) == (0, f"imgtool: warning: {message}\n")
    doc = json.loads(run.stdout)
    assert (doc["warnings"], doc["layers"][1]["compression"]) == ([message], "none")
    assert imgtool_cli("inspect", ref).stderr == f"imgtool: warning: {message}\n"
    run = imgtool_cli("flatten", ref, "-o", str(tmp_path / "out"), "-q")
    assert (run.code, run.stdout, run.stderr) == (0, "", f"imgtool: warning: {message}\n")
    assert (tmp_path / "out" / "etc" / "app.conf").read_bytes() == b"x=1\n"
    # A docker-save archive states no media types: the ones imgtool derives are not held against it.
    write_docker_archive(tmp_path / "d.tar", [(ImageSpec([BASE, APP], compression="none"), ["a:1"])])
    assert imgtool_cli("inspect", str(tmp_path / "d.tar")).stderr == ""


def test_a_tar_without_end_blocks_is_one_warning_everywhere(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    short = make_layer([Dir("etc/"), File("etc/x", b"x")], end_blocks=False)
    ref = write_oci_layout(tmp_path / "oci", [Entry(ImageSpec([short]), ref="v1")]).reference("v1")
    message = (
        f"layer 0 ({sha256_digest(compress(short, 'gzip'))}): tar archive ends without end-of-archive blocks"
    )
    run = imgtool_cli("verify", ref, "--json")
    assert (run.code, run.stderr) == (0, "")
    assert json.loads(run.stdout)[2:] == [
        {
            "blob": "layer 0",
            "kind": "blob",
            "expected": sha256_digest(compress(short, "gzip")),
            "status": "ok",
            "detail": "",
        },
        {
            "blob": "layer 0",
            "kind": "diff_id",
            "expected": sha256_digest(short),
            "status": "ok",
            "detail": "",
        },
        {"blob": "layer 0", "kind": "tar", "expected": "", "status": "warning", "detail": message},
    ]
    run = imgtool_cli("flatten", ref, "-o", str(tmp_path / "out"), "-q")
    assert (run.code, run.stdout, run.stderr) == (0, "", f"imgtool: warning: {message}\n")
    run = imgtool_cli("ls", ref, "/etc", "--no-cache")
    assert (run.code, run.stderr) == (0, f"imgtool: warning: {message}\n")


@pytest.mark.parametrize(
    "args",
    [
        ["inspect", "{absent}", "--debug"],
        ["verify", "{absent}", "--debug"],
        ["flatten", "{absent}", "-o", "{tmp}/out", "--debug"],
        ["which-layer", "{absent}", "/a", "--debug"],
        ["ls", "{absent}", "--debug"],
        ["cat", "{absent}", "/a", "--debug"],
        ["diff", "layers", "{absent}", "--debug"],
        ["diff", "--debug", "images", "{absent}", "{absent}"],
        ["images", "{absent}", "--debug"],
        ["-q", "inspect", "{absent}"],
    ],
)
def test_debug_and_quiet_are_taken_before_or_after_the_command(
    tmp_path: Path, imgtool_cli: ImgtoolCli, args: list[str]
) -> None:
    absent = str(tmp_path / "absent.tar")
    run = imgtool_cli(*[a.format(absent=absent, tmp=tmp_path) for a in args])
    assert run.code == 1
    assert run.stderr.endswith(f"imgtool: error: {absent}: no such file or directory\n")
    assert ("Traceback (most recent call last)" in run.stderr) == ("--debug" in args)


def test_debug_after_one_command_is_not_kept_for_the_next(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    absent = str(tmp_path / "absent.tar")
    assert "Traceback" in imgtool_cli("ls", absent, "--debug").stderr
    assert imgtool_cli("ls", absent).stderr == f"imgtool: error: {absent}: no such file or directory\n"


@pytest.mark.parametrize("before", [True, False], ids=["before", "after"])
def test_quiet_before_or_after_the_command_silences_it(
    before: bool, tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    ref = sample(tmp_path)
    loud = imgtool_cli("flatten", ref, "-o", str(tmp_path / "loud.tar"))
    assert (loud.code, loud.stderr.startswith("imgtool: wrote ")) == (0, True)
    args = ["flatten", ref, "-o", str(tmp_path / "quiet.tar")]
    run = imgtool_cli(*(["-q", *args] if before else [*args, "-q"]))
    assert (run.code, run.stdout, run.stderr) == (0, "", "")
    assert (tmp_path / "quiet.tar").read_bytes() == (tmp_path / "loud.tar").read_bytes()
    terminal = imgtool_cli.on_terminal("stderr")
    assert terminal("verify", ref, "--no-cache").stderr != ""  # a progress bar
    run = terminal(*(["-q", "verify", ref] if before else ["verify", ref, "-q"]))
    assert (run.code, run.stderr) == (0, "")
