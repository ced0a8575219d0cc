"""What a command pays for before it runs: the modules of other sources, of other commands' operations
and of the HTTP client are imported only when a command uses them."""

from __future__ import annotations

import subprocess
import sys

import pytest

NOT_AT_START = (
    "urllib3",
    "imgtool.sources.registry.client",
    "imgtool.sources.containers_storage",
    "imgtool.sources.docker_store",
    "imgtool.sources.overlay_dirs",
    "imgtool.sources.docker_archive",
    "imgtool.sources.overlay_mount",
    "imgtool.flatten.api",
    "imgtool.ops.diff",
    "imgtool.ops.verify",
    "imgtool.console.render.diff",
)


def loaded(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_importing_the_cli_loads_no_source_or_operation_yet() -> None:
    modules = loaded("import imgtool.cli")
    assert "imgtool.cli" in modules
    assert sorted(modules & set(NOT_AT_START)) == []


@pytest.mark.parametrize(
    ("transport", "module"),
    [
        ("oci", "imgtool.sources.oci_layout"),
        ("docker-archive", "imgtool.sources.docker_archive"),
        ("containers-storage", "imgtool.sources.containers_storage"),
        ("podman-container", "imgtool.sources.containers_storage"),
        ("overlay", "imgtool.sources.overlay_dirs"),
        ("docker-storage", "imgtool.sources.docker_store"),
        ("docker-container", "imgtool.sources.docker_store"),
        ("overlay-mount", "imgtool.sources.overlay_mount"),
    ],
)
def test_each_transport_opens_through_its_own_module(transport: str, module: str) -> None:
    code = f"from imgtool.sources import source_opener\nopener = source_opener({transport!r})"
    modules = loaded(code + f"\nassert opener.__module__ == {module!r}, opener.__module__")
    assert module in modules
    assert "urllib3" not in modules


def test_every_rendering_entry_point_is_its_function_once_every_module_is_loaded() -> None:
    """A submodule named as an entry point would shadow it once imported (render.copy the module)."""
    import importlib
    import inspect

    from imgtool.console import render

    for module in set(render._MODULES.values()):
        importlib.import_module(f"imgtool.console.render.{module}")
    for name in render.__all__:
        assert inspect.isfunction(getattr(render, name)), name
