"""What umoci 0.4.7 and GNU tar 1.34 do with the same hostile inputs, so the table in the docs stays true.

umoci runs ``umoci raw unpack`` on the case's gzip OCI layout; GNU tar extracts each layer blob of that
layout in turn into one directory (``tar -xf BLOB -C ROOTFS``), the way a naive script applies layers.
Both run as the test user (root in CI) beside the same sentinel imgtool is checked against, and every
escape in the table aims into that sentinel, so whatever they get wrong stays inside the temporary
directory. The result class each case records (``confines``, ``refuses``, ``writes outside``) is asserted
here, and docs/hostile-inputs.md must show exactly the rows ``cases.render_table()`` renders.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.treesnap import tree_hash_listing
from tests.hostile.cases import CASES, Case, Peer, PeerResult, build_image, row
from tests.hostile.harness import Workspace

DOC = Path(__file__).resolve().parents[2] / "docs" / "hostile-inputs.md"
TIMEOUT = 120


@dataclass(frozen=True)
class PeerRun:
    result: PeerResult
    output: str


def _classify(space: Workspace, before: list[str], failed: bool, output: str) -> PeerRun:
    if not space.sentinel.exists():
        return PeerRun("writes outside", output + "\n(the sentinel was deleted)")
    outside = tree_hash_listing(space.sentinel) != before
    extra = sorted(path.name for path in space.work.iterdir() if path.name not in ("sentinel", "rootfs"))
    if outside or extra:
        return PeerRun("writes outside", output + f"\n(sentinel changed: {outside}; new names: {extra})")
    return PeerRun("refuses" if failed else "confines", output)


def run_umoci(case: Case, root: Path) -> PeerRun:
    space = Workspace.create(root)
    built = build_image(case, "oci", space.image_dir, space.env)
    before = tree_hash_listing(space.sentinel)
    proc = subprocess.run(
        ["umoci", "raw", "unpack", "--image", f"{built.path}:v1", str(space.work / "rootfs")],
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    output = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    return _classify(space, before, proc.returncode != 0, output)


def run_gnutar(case: Case, root: Path) -> PeerRun:
    space = Workspace.create(root)
    built = build_image(case, "oci", space.image_dir, space.env)
    rootfs = space.work / "rootfs"
    rootfs.mkdir()
    before = tree_hash_listing(space.sentinel)
    failed = False
    outputs = []
    for blob in built.layer_blobs:
        proc = subprocess.run(
            ["tar", "-xf", str(blob), "-C", str(rootfs)],
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )
        failed = failed or proc.returncode != 0
        outputs.append((proc.stdout + proc.stderr).decode("utf-8", "replace"))
    return _classify(space, before, failed, "\n".join(outputs))


def _params(tool: str) -> list[Any]:
    """The cases the tool is run on: not those it never reads (n/a), nor those that would make a naive
    extractor touch real host paths (not run); the doc table records both."""
    out: list[Any] = []
    for case in CASES:
        peer: Peer = getattr(case, tool)
        if peer.result not in ("n/a", "not run"):
            out.append(pytest.param(case, id=case.name))
    return out


def _check(case: Case, peer: Peer, run: PeerRun) -> None:
    assert run.result == peer.result, f"recorded {peer.result!r}, the tool {run.result}:\n{run.output}"
    if peer.stderr is not None:
        assert re.search(peer.stderr, run.output), f"{peer.stderr!r} not in:\n{run.output}"


@pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci not installed")
@pytest.mark.parametrize("case", _params("umoci"))
def test_umoci(case: Case, tmp_path: Path) -> None:
    if case.needs_root and not _root():
        pytest.skip("needs root")
    _check(case, case.umoci, run_umoci(case, tmp_path))


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar not installed")
@pytest.mark.parametrize("case", _params("gnutar"))
def test_gnutar(case: Case, tmp_path: Path) -> None:
    if case.needs_root and not _root():
        pytest.skip("needs root")
    _check(case, case.gnutar, run_gnutar(case, tmp_path))


def _root() -> bool:
    return os.geteuid() == 0


def test_doc_table_is_current() -> None:
    """Every case has its row in the docs, exactly as the table renders it."""
    text = DOC.read_text(encoding="utf-8")
    missing = [case.name for case in CASES if row(case) not in text.splitlines()]
    assert missing == [], f"rows missing or stale in {DOC.name} (python -m tests.hostile.cases): {missing}"
