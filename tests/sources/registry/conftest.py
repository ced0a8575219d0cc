"""Registries for the tests of this folder: one real registry per auth configuration per module,
with the test images pushed in by skopeo, and the same images as local layouts to compare with."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.imagefactory import (
    Entry,
    File,
    ImageSpec,
    IndexSpec,
    incompressible,
    make_layer,
    write_oci_layout,
)
from tests.helpers.registry import PASSWORD, USER, Auth, Registry, have_tools

SAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sample-oci"


@dataclass(frozen=True)
class Pushed:
    """A registry and what is in it: ``sample:1.0``/``sample:1.1`` (the README's sample image),
    ``multi:latest`` (a two-platform index), ``big:1`` (a layer of 300 kB that does not compress)."""

    registry: Registry
    multi: str  # the layout the index came from, as oci:DIR:latest
    big: str

    @property
    def creds(self) -> list[str]:
        return [] if self.registry.auth == "none" else ["--creds", f"{USER}:{PASSWORD}"]

    def ref(self, name: str, host: str | None = None) -> str:
        return f"docker://{host or self.registry.host}/{name}"


def _images(directory: Path) -> tuple[str, str]:
    base = make_layer([File("etc/os", b"base\n"), File("bin/tool", b"tool-amd64")])
    arm = make_layer([File("etc/os", b"base\n"), File("bin/tool", b"tool-arm64")])
    multi = IndexSpec(
        [ImageSpec([base]), ImageSpec([arm], architecture="arm64", variant="v8")],
        media_type="application/vnd.oci.image.index.v1+json",
    )
    multi_layout = write_oci_layout(directory / "multi", [Entry(multi, ref="latest")])
    big = ImageSpec(
        [
            make_layer([File("data/big", incompressible(300_000, b"big"))]),
            make_layer([File("etc/small", b"s")]),
        ],
        compression="none",
    )
    big_layout = write_oci_layout(directory / "big", [Entry(big, ref="1")])
    return multi_layout.reference("latest"), big_layout.reference("1")


def start(tmp: Path, auth: Auth) -> Pushed:
    missing = have_tools()
    if missing is not None:
        pytest.skip(f"{missing} is not installed (bash scripts/test installs it)")
    registry = Registry(tmp, auth)
    try:
        multi, big = _images(tmp)
        registry.push(f"oci:{SAMPLE}:1.0", "sample:1.0")
        registry.push(f"oci:{SAMPLE}:1.1", "sample:1.1")
        registry.push(multi, "multi:latest", all_platforms=True)
        registry.push(big, "big:1")
    except BaseException:
        registry.close()
        raise
    return Pushed(registry, multi, big)


class Pool:
    """One registry per auth configuration for the whole session, started when first asked for."""

    def __init__(self, tmp: pytest.TempPathFactory) -> None:
        self._tmp = tmp
        self._started: dict[str, Pushed] = {}

    def get(self, auth: Auth) -> Pushed:
        if auth not in self._started:
            self._started[auth] = start(self._tmp.mktemp(f"registry-{auth}"), auth)
        return self._started[auth]

    def close(self) -> None:
        for pushed in self._started.values():
            pushed.registry.close()


@pytest.fixture(scope="session")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    pool = Pool(tmp_path_factory)
    yield pool
    pool.close()


@pytest.fixture(params=["none", "basic", "token"])
def pushed(request: pytest.FixtureRequest, registries: Pool) -> Pushed:
    """Each auth configuration in turn."""
    return registries.get(request.param)


@pytest.fixture
def plain(registries: Pool) -> Pushed:
    """The registry without auth."""
    return registries.get("none")


@pytest.fixture
def basic(registries: Pool) -> Pushed:
    """The registry with htpasswd Basic auth."""
    return registries.get("basic")


@pytest.fixture
def token(registries: Pool) -> Pushed:
    """The registry with token auth."""
    return registries.get("token")
