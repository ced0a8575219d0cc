"""Shared fixtures: the real-tool builder, and running the CLI in-process through its error funnel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from imgtool.image.image import Layer, LayerStream
from tests.helpers.cli import ImgtoolCli
from tests.helpers.realtools import builder, overlay_builder, platform_index, standard_image  # noqa: F401


@pytest.fixture
def imgtool_cli() -> ImgtoolCli:
    """``imgtool_cli("inspect", ref)`` runs the CLI as a user would, returning code, stdout, stderr."""
    return ImgtoolCli()


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The index of every layer opened for reading, in order (the list is the fixture's value)."""
    layers: list[int] = []
    real_open = Layer.open

    def counting_open(self: Layer, max_size: int | None = None) -> LayerStream:
        layers.append(self.index)
        return real_open(self, max_size)

    monkeypatch.setattr(Layer, "open", counting_open)
    return layers


@pytest.fixture(autouse=True)
def private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Every test gets its own index cache, so no test sees another's."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    yield cache
