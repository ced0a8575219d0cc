"""Shared fixtures: the real-tool builder, and running the CLI in-process through its error funnel."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imgtool.cli import main
from imgtool.image.image import Layer, LayerStream
from tests.realtools import builder, overlay_builder, platform_index, standard_image  # noqa: F401


@dataclass(frozen=True)
class Run:
    code: int
    stdout_bytes: bytes
    stderr: str

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode("utf-8", "replace")


class CliRunner:
    def __init__(self, capsys: pytest.CaptureFixture[bytes]) -> None:
        self._capsys = capsys

    def __call__(self, *args: str) -> Run:
        self._capsys.readouterr()
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        else:  # pragma: no cover - main always exits
            code = 0
        captured = self._capsys.readouterr()
        return Run(code, captured.out, captured.err.decode("utf-8", "replace"))


@pytest.fixture
def imgtool_cli(capsysbinary: pytest.CaptureFixture[bytes]) -> CliRunner:
    """``imgtool_cli("inspect", ref)`` runs the CLI as a user would, returning code, stdout, stderr."""
    return CliRunner(capsysbinary)


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
