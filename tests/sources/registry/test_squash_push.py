"""squash into a real registry: the squashed image is pushed as copy pushes, skopeo and imgtool read
it back (manifest byte for byte, blobs verified, the same tree), and a squash from the registry to
itself reads the source there."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.helpers.cli import ImgtoolCli
from tests.helpers.registry import PASSWORD, USER
from tests.sources.registry.conftest import SAMPLE, Pushed


def _skopeo(pushed: Pushed, *args: str) -> str:
    creds = [] if pushed.registry.auth == "none" else [f"--creds={USER}:{PASSWORD}"]
    return subprocess.run(
        ["skopeo", *args[:1], "--tls-verify=false", *creds, *args[1:]],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout


def test_a_squashed_image_is_pushed_and_read_back(
    imgtool_cli: ImgtoolCli, basic: Pushed, tmp_path: Path
) -> None:
    src = f"oci:{SAMPLE}:1.1"
    local = f"oci:{tmp_path / 'local'}:s"
    run = imgtool_cli("squash", "-q", src, local, "--from", "1", "--to", "3")
    assert (run.code, run.stderr) == (0, "")
    dest = basic.ref("squashed/sample:s")
    run = imgtool_cli("squash", "-q", src, dest, "--from", "1", "--to", "3", *basic.creds)
    assert (run.code, run.stderr) == (0, ""), run.stderr
    # the same image as the one written to a layout: squash is deterministic
    ours = imgtool_cli("inspect", "--raw", local).stdout
    assert imgtool_cli("inspect", "--raw", dest, *basic.creds).stdout == ours
    raw = _skopeo(basic, "inspect", "--raw", dest)
    assert raw == ours
    config = json.loads(_skopeo(basic, "inspect", "--config", dest))
    assert len(config["rootfs"]["diff_ids"]) == 3 == len(json.loads(raw)["layers"])
    assert imgtool_cli("verify", "-q", dest, *basic.creds).code == 0
    assert imgtool_cli("diff", "images", "-q", src, dest, *basic.creds).code == 0


def test_a_squash_from_the_registry_into_it(imgtool_cli: ImgtoolCli, plain: Pushed, tmp_path: Path) -> None:
    src = plain.ref("sample:1.1")
    dest = plain.ref("squashed/whole:1")
    run = imgtool_cli("squash", src, dest, "--json")
    assert (run.code, run.stderr) == (0, ""), run.stderr
    doc = json.loads(run.stdout)
    assert (doc["layers_before"], doc["layers_after"]) == (5, 1)
    assert [b["what"] for b in doc["copy"]["blobs"]] == ["layer 0", "config"]
    assert imgtool_cli("verify", "-q", dest).code == 0
    subprocess.run(
        [
            "skopeo",
            "--insecure-policy",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            dest,
            f"oci:{tmp_path / 'o'}:1",
        ],
        check=True,
        timeout=120,
    )
    assert imgtool_cli("diff", "images", "-q", f"oci:{SAMPLE}:1.1", f"oci:{tmp_path / 'o'}:1").code == 0
    # The layers kept are mounted from the source's repository, not sent again.
    run = imgtool_cli("squash", src, plain.ref("squashed/part:1"), "--from", "1", "--to", "3", "--json")
    assert (run.code, run.stderr) == (0, ""), run.stderr
    blobs = json.loads(run.stdout)["copy"]["blobs"]
    assert [(b["what"], b["status"]) for b in blobs] == [
        ("layer 0", "present"),
        ("layer 1", "copied"),
        ("layer 2", "present"),
        ("config", "copied"),
    ]
    assert imgtool_cli("diff", "images", "-q", src, plain.ref("squashed/part:1")).code == 0
