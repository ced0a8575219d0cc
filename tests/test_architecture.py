"""The packages of imgtool import only downwards, and only the CLI and console import click or print."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

PACKAGE: Final = Path(__file__).resolve().parent.parent / "imgtool"
# What each package may import of imgtool (besides itself). The top-level errors and progress
# modules are for everyone.
SHARED: Final = {"errors", "progress"}
ALLOWED: Final[dict[str, set[str]]] = {
    "image": set(),
    "system": set(),
    "layers": {"image"},
    "sources": {"layers", "image", "system"},
    "merge": {"layers", "image", "system"},
    "ops": {"flatten", "merge", "layers", "image", "system"},
    "flatten": {"merge", "layers", "image", "system"},
}


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "imgtool":
                yield from ((node.lineno, f"imgtool.{alias.name}") for alias in node.names)
            else:
                yield node.lineno, node.module


def _modules(package: str) -> list[Path]:
    return sorted((PACKAGE / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_down(package: str) -> None:
    allowed = ALLOWED[package] | SHARED | {package, ""}
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {name}"
        for path in _modules(package)
        for line, name in _imports(path)
        if name.startswith("imgtool") and [*name.split("."), ""][1] not in allowed
    ]
    assert wrong == []


def test_only_the_cli_and_console_use_click_or_print() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in ("cli.py", "console"):
            continue
        wrong += [
            f"{relative}:{line}: {name}" for line, name in _imports(path) if name.split(".")[0] == "click"
        ]
        tree = ast.parse(path.read_text(), str(path))
        wrong += [
            f"{relative}:{node.lineno}: print()"
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
        ]
    assert wrong == []


def test_every_package_says_what_it_holds_and_may_import() -> None:
    for package in [*ALLOWED, "console"]:
        doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text())) or ""
        assert "May import" in doc, package


TESTS: Final = Path(__file__).resolve().parent
# tests/hostile keeps its own helpers beside the tests that use them (see tests/helpers/__init__.py).
HOSTILE_HELPERS: Final = {"cases.py", "fuzzing.py", "harness.py", "terminal.py"}


def test_test_helpers_live_in_the_helpers_folder() -> None:
    misplaced = [
        str(path.relative_to(TESTS))
        for path in sorted(TESTS.rglob("*.py"))
        if not path.name.startswith("test_")
        and path.name not in ("__init__.py", "conftest.py")
        and path.parent != TESTS / "helpers"
        and not (path.parent == TESTS / "hostile" and path.name in HOSTILE_HELPERS)
    ]
    assert misplaced == []


def test_tests_import_helpers_not_conftest() -> None:
    wrong = [
        f"{path.relative_to(TESTS)}:{line}"
        for path in sorted(TESTS.rglob("*.py"))
        for line, name in _imports(path)
        if name == "tests.conftest"
    ]
    assert wrong == []
