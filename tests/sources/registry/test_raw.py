"""inspect --raw and --config on docker://: the bytes the registry stores, as skopeo gets them."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.helpers.cli import ImgtoolCli
from tests.sources.registry.conftest import Pushed


def _skopeo(ref: str, *flags: str) -> bytes:
    return subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", *flags, ref], check=True, capture_output=True, timeout=120
    ).stdout


@pytest.mark.parametrize(
    ("name", "args", "flags"),
    [
        ("multi:latest", ["--raw"], ["--raw"]),  # the index the tag names
        (
            "multi:latest",
            ["--config", "--platform", "linux/arm64"],
            ["--raw", "--config", "--override-arch", "arm64"],
        ),
        ("sample:1.1", ["--raw"], ["--raw"]),
        ("sample:1.1", ["--config"], ["--raw", "--config"]),
    ],
)
def test_raw_equals_skopeos(
    plain: Pushed, imgtool_cli: ImgtoolCli, name: str, args: list[str], flags: list[str]
) -> None:
    run = imgtool_cli("inspect", plain.ref(name), *args)
    assert (run.code, run.stderr) == (0, "")
    json.loads(run.stdout)
    assert run.stdout_bytes == _skopeo(plain.ref(name), *flags)


def test_raw_with_a_platform_is_that_platforms_manifest(plain: Pushed, imgtool_cli: ImgtoolCli) -> None:
    """skopeo --raw prints the index whatever --override-arch says; imgtool, as crane manifest
    --platform, prints the manifest the platform chooses: the bytes skopeo gives for its digest."""
    index = json.loads(_skopeo(plain.ref("multi:latest"), "--raw"))
    (arm64,) = [m["digest"] for m in index["manifests"] if m["platform"]["architecture"] == "arm64"]
    run = imgtool_cli("inspect", plain.ref("multi:latest"), "--raw", "--platform", "linux/arm64")
    assert (run.code, run.stderr) == (0, "")
    assert run.stdout_bytes == _skopeo(plain.ref(f"multi@{arm64}"), "--raw")
