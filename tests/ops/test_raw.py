"""inspect --raw and --config: the stored bytes of the manifest, index and config, on every source,
and the table's and JSON's ports, volumes, stop signal and labels."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import (
    Entry,
    File,
    ImageSpec,
    IndexSpec,
    OciResult,
    make_layer,
    write_docker_archive,
    write_oci_archive,
    write_oci_layout,
)
from tests.helpers.realtools import requires
from tests.helpers.slowpipe import read_slowly

SAMPLE = Path(__file__).resolve().parents[2] / "examples"


def _skopeo_raw(ref: str, flag: str = "--raw") -> bytes:
    """skopeo's stored bytes: ``inspect --raw``, or ``inspect --raw --config`` (without --raw skopeo
    prints the config re-indented)."""
    flags = ["--raw"] if flag == "--raw" else ["--raw", "--config"]
    with tempfile.TemporaryDirectory(prefix="imgtool-skopeo-") as tmp:
        return subprocess.run(
            ["skopeo", "--tmpdir", tmp, "inspect", *flags, ref], check=True, capture_output=True, timeout=120
        ).stdout


def _two_platforms(where: Path, archive: bool) -> OciResult:
    spec = IndexSpec(
        [
            ImageSpec([make_layer([File("p", b"amd64\n")])]),
            ImageSpec([make_layer([File("p", b"arm64\n")])], architecture="arm64", variant="v8"),
        ]
    )
    single = ImageSpec([make_layer([File("q", b"one\n")])])
    entries = [Entry(spec, ref="multi"), Entry(single, ref="one")]
    if archive:
        return write_oci_archive(where / "index.tar", entries)
    return write_oci_layout(where / "oci", entries)


@pytest.mark.parametrize("archive", [False, True], ids=["oci", "oci-archive"])
def test_raw_is_the_stored_index_manifest_and_config(
    archive: bool, tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    result = _two_platforms(tmp_path, archive)
    amd64, arm64, single = result.images
    index = result.indexes[0]

    run = imgtool_cli("inspect", result.reference("multi"), "--raw")
    assert (run.code, run.stdout_bytes, run.stderr) == (0, index.content, "")
    assert [m["digest"] for m in json.loads(run.stdout)["manifests"]] == [
        amd64.manifest_digest,
        arm64.manifest_digest,
    ]
    run = imgtool_cli("inspect", result.reference("multi"), "--raw", "--platform", "linux/arm64")
    assert (run.code, run.stdout_bytes, run.stderr) == (0, arm64.manifest, "")
    run = imgtool_cli("inspect", result.reference("multi"), "--config", "--platform", "linux/arm64")
    assert (run.code, run.stdout_bytes, run.stderr) == (0, arm64.config, "")
    assert json.loads(run.stdout)["architecture"] == "arm64"
    run = imgtool_cli("inspect", result.reference("one"), "--raw")
    assert (run.code, run.stdout_bytes, run.stderr) == (0, single.manifest, "")
    run = imgtool_cli("inspect", result.reference("one"), "--config")
    assert (run.code, run.stdout_bytes, run.stderr) == (0, single.config, "")


def test_raw_bytes_are_the_blobs_in_the_layout(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    result = _two_platforms(tmp_path, archive=False)
    single = result.images[2]
    blob = (
        tmp_path / "oci" / "blobs" / "sha256" / single.manifest_digest.removeprefix("sha256:")
    ).read_bytes()
    assert imgtool_cli("inspect", result.reference("one"), "--raw").stdout_bytes == blob


def test_raw_of_a_docker_archive_is_the_derived_manifest_and_says_so(
    tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    spec = ImageSpec([make_layer([File("a", b"a\n")])])
    archive = write_docker_archive(tmp_path / "d.tar", [(spec, ["x/y:1"])])
    run = imgtool_cli("inspect", archive.reference("x/y:1"), "--raw")
    assert run.code == 0
    assert run.stderr == (
        f"imgtool: note: {archive.reference('x/y:1')}: the archive stores no manifest; "
        "this one is derived as skopeo derives it\n"
    )
    doc = json.loads(run.stdout)
    assert doc["config"]["digest"] == archive.image.config_digest
    digest = json.loads(imgtool_cli("inspect", archive.reference("x/y:1"), "--json").stdout)[
        "manifest_digest"
    ]
    assert digest == "sha256:" + hashlib.sha256(run.stdout_bytes).hexdigest()
    run = imgtool_cli("inspect", archive.reference("x/y:1"), "--config")
    assert (run.code, run.stdout_bytes, run.stderr) == (0, archive.image.config, "")


@requires("skopeo")
@pytest.mark.parametrize(
    "ref", ["docker-archive:{s}/sample.tar", "oci:{s}/sample-oci:1.0", "oci:{s}/sample-oci:1.1"]
)
@pytest.mark.parametrize("flag", ["--raw", "--config"])
def test_raw_equals_skopeos(ref: str, flag: str, imgtool_cli: ImgtoolCli) -> None:
    ref = ref.format(s=SAMPLE)
    run = imgtool_cli("inspect", ref, flag)
    assert run.code == 0
    assert run.stdout_bytes == _skopeo_raw(ref, flag)


@requires("skopeo")
def test_raw_index_equals_skopeos(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    result = _two_platforms(tmp_path, archive=False)
    run = imgtool_cli("inspect", result.reference("multi"), "--raw")
    assert run.stdout_bytes == _skopeo_raw(result.reference("multi"))


def test_raw_and_config_together_are_a_usage_error(imgtool_cli: ImgtoolCli) -> None:
    run = imgtool_cli("inspect", str(SAMPLE / "sample.tar"), "--raw", "--config")
    assert (run.code, run.stdout, run.stderr) == (
        2,
        "",
        "imgtool: error: --raw and --config are each a document of their own: give one\n",
    )


def test_inspect_shows_ports_volumes_stop_signal_and_labels(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["config"].update(
            ExposedPorts={"8080/tcp": {}, "53/udp": {}},
            Volumes={"/data": {}, "/var/log": {}},
            StopSignal="SIGQUIT",
        )

    spec = ImageSpec([make_layer([File("a", b"a\n")])], labels={"a": "1", "b": "two"}, edit_config=edit)
    result = write_oci_layout(tmp_path / "oci", [Entry(spec, ref="v")])
    run = imgtool_cli("inspect", result.reference("v"))
    assert (run.code, run.stderr) == (0, "")
    lines = run.stdout.splitlines()
    at = lines.index("Ports:       8080/tcp, 53/udp")
    assert lines[at : at + 6] == [
        "Ports:       8080/tcp, 53/udp",
        "Volumes:     /data",
        "             /var/log",
        "StopSignal:  SIGQUIT",
        "Labels:      a=1",
        "             b=two",
    ]
    doc = json.loads(imgtool_cli("inspect", result.reference("v"), "--json").stdout)
    assert (doc["exposed_ports"], doc["volumes"], doc["stop_signal"], doc["labels"]) == (
        ["8080/tcp", "53/udp"],
        ["/data", "/var/log"],
        "SIGQUIT",
        {"a": "1", "b": "two"},
    )


def test_a_malformed_port_set_is_left_out_with_a_warning(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["config"].update(ExposedPorts=["80"], StopSignal=9)

    spec = ImageSpec([make_layer([File("a", b"a\n")])], edit_config=edit)
    result = write_oci_layout(tmp_path / "oci", [Entry(spec, ref="v")])
    run = imgtool_cli("inspect", result.reference("v"), "--json")
    config = result.images[0].config_digest
    assert run.code == 0
    doc = json.loads(run.stdout)
    assert (doc["exposed_ports"], doc["stop_signal"]) == ([], None)
    assert doc["warnings"] == [
        f"config {config}: field 'ExposedPorts' is not an object; not shown",
        f"config {config}: field 'StopSignal' is not a string; not shown",
    ]
    assert "Ports:" not in imgtool_cli("inspect", result.reference("v")).stdout


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "PYTHONUNBUFFERED"])
def test_raw_through_a_slow_pipe_is_every_byte(unbuffered: bool, tmp_path: Path) -> None:
    """The imgtool command, its stdout a pipe read slowly: the config of several pipe buffers whole."""
    labels = {f"label.{n:05d}": "v" * 40 for n in range(8000)}
    spec = ImageSpec([make_layer([File("a", b"a\n")])], labels=labels)
    result = write_oci_layout(tmp_path / "oci", [Entry(spec, ref="v")])
    config = result.images[0].config
    assert len(config) > 4 * 65536
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    with subprocess.Popen(
        [sys.executable, "-m", "imgtool", "inspect", result.reference("v"), "--config"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        fd = proc.stdout.fileno()
        data = read_slowly(lambda n: os.read(fd, n))
        stderr = proc.stderr.read()
    assert (proc.returncode, stderr) == (0, b"")
    assert data == config


@requires("skopeo")
@pytest.mark.parametrize("archive", [False, True], ids=["oci", "oci-archive"])
def test_raw_of_an_index_without_this_machines_platform(
    archive: bool, tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    """--raw shows the index the reference names without choosing from it, as skopeo does; an
    image of it (--config, the table) still needs a platform the index has."""
    spec = IndexSpec(
        [
            ImageSpec([make_layer([File("p", b"riscv64\n")])], architecture="riscv64"),
            ImageSpec([make_layer([File("p", b"s390x\n")])], architecture="s390x"),
        ]
    )
    entries = [Entry(spec, ref="v1")]
    result = (write_oci_archive if archive else write_oci_layout)(tmp_path / "idx", entries)
    ref = result.reference("v1")
    run = imgtool_cli("inspect", ref, "--raw")
    assert (run.code, run.stderr) == (0, "")
    assert hashlib.sha256(run.stdout_bytes).hexdigest() == result.indexes[0].digest.partition(":")[2]
    assert run.stdout_bytes == _skopeo_raw(ref)
    chosen = imgtool_cli("inspect", ref, "--raw", "--platform", "linux/s390x")
    assert (
        hashlib.sha256(chosen.stdout_bytes).hexdigest() == result.images[1].manifest_digest.partition(":")[2]
    )
    for args in (("--config",), ()):
        refused = imgtool_cli("inspect", ref, *args)
        assert refused.code == 1 and refused.stdout == ""
        assert "no image for platform" in refused.stderr and "linux/s390x" in refused.stderr
