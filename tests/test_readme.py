"""The README and docs/json.md show real output: rerun every tour command and compare.

A failure here means imgtool's output changed (or the sample image did): run
``scripts/update-readme``, read the diff, and commit the new text if the change is intended.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETUP_COMMANDS = (
    "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/imgtool flatten examples/sample.tar "
    "-o sample-rootfs",
    "bash scripts/test",
)

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the tour commands run in bash")


@functools.cache
def _tour() -> ModuleType:
    spec = importlib.util.spec_from_file_location("readme_tour", ROOT / "scripts" / "readme_tour.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["readme_tour"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rendered() -> dict[str, tuple[str, str]]:
    result: dict[str, tuple[str, str]] = _tour().rendered_files()
    return result


@pytest.mark.parametrize("name", ["README.md", "docs/json.md"])
def test_tour_output_is_what_imgtool_prints_now(rendered: dict[str, tuple[str, str]], name: str) -> None:
    current, fresh = rendered[name]
    if current != fresh:
        diff = "".join(
            difflib.unified_diff(
                current.splitlines(keepends=True), fresh.splitlines(keepends=True), name, f"{name} (now)"
            )
        )
        pytest.fail(f"{name} is out of date; run scripts/update-readme\n{diff}")


def test_every_command_has_a_tour_block() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = _tour().parse_blocks(readme)
    shown = " ".join(command for block in blocks for command in block.commands)
    for command in (
        "inspect",
        "verify",
        "flatten",
        "which-layer",
        "ls",
        "cat",
        "diff layers",
        "diff images",
    ):
        assert f"imgtool {command} " in shown, command
    for option in ("--layers", "--provenance", "-o -", "-R", "--layer 3 --only", "-v", "'/etc/app/*'"):
        assert option in shown, option


def test_every_json_document_has_a_real_example() -> None:
    doc = (ROOT / "docs" / "json.md").read_text(encoding="utf-8")
    shown = " ".join(command for block in _tour().parse_blocks(doc) for command in block.commands)
    for command in ("inspect", "verify", "which-layer", "ls", "diff layers", "diff images"):
        assert re.search(rf"imgtool {command} .*--json", shown), command
    assert "--provenance paths.json" in shown


def test_setup_section_keeps_its_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", setup, re.DOTALL)
    assert [b.strip() for b in blocks[:2]] == list(SETUP_COMMANDS)


def test_readme_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#:]+)\)", readme)
    missing = [
        link
        for link in links
        if not (ROOT / link).exists() and link not in ("docs/performance.md", "docs/hostile-inputs.md")
    ]
    assert not missing
