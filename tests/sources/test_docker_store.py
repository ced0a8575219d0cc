"""Docker's data root read in place: a real dockerd with private state (vfs and overlay2 drivers)
loads an image and makes a container; imgtool on the stopped store agrees with ``docker save``,
``docker diff`` and ``docker export`` taken while the daemon ran."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.shell_completion import ShellComplete

from imgtool.cli import cli
from imgtool.console.completion import COMPLETE_VAR
from tests.helpers.cli import ImgtoolCli
from tests.helpers.dockerd import docker, start_dockerd, stop_dockerd
from tests.helpers.imagefactory import (
    Dir,
    File,
    ImageSpec,
    Opaque,
    Symlink,
    Whiteout,
    make_layer,
    write_docker_archive,
)
from tests.helpers.realtools import requires
from tests.helpers.treesnap import tar_listing

pytestmark = [
    requires("dockerd", "docker"),
    pytest.mark.skipif(os.geteuid() != 0, reason="dockerd needs root"),
]


@dataclass(frozen=True)
class Engine:
    root: Path
    driver: str
    archive: Path  # docker save of the image, taken while the daemon ran
    export: Path  # docker export of the container
    docker_diff: list[str]  # docker diff of the container

    def image(self, name: str) -> str:
        return f"docker-storage:[{self.root}]{name}"

    def container(self, name: str) -> str:
        return f"docker-container:[{self.root}]{name}"


@pytest.fixture(scope="module", params=["vfs", "overlay2"])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    base = tmp_path_factory.mktemp(f"docker-{request.param}")
    layers = [
        make_layer(
            [Dir("etc/"), File("etc/a", b"a\n"), File("etc/b", b"bb\n"), Dir("opt/"), File("opt/x", b"x\n")]
        ),
        make_layer([Whiteout("etc/a"), Opaque("opt/"), File("opt/y", b"yy\n"), Symlink("etc/l", "b")]),
    ]
    write_docker_archive(base / "in.tar", [(ImageSpec(layers), ["app:1"])])
    daemon = start_dockerd(base, request.param)
    if daemon is None:
        pytest.skip(f"dockerd cannot start here with {request.param}: {(base / 'log').read_text()[-300:]}")
    sock = base / "sock"
    try:
        docker(sock, "load", "-i", str(base / "in.tar"))
        docker(sock, "save", "app:1", "-o", str(base / "saved.tar"))
        docker(sock, "create", "--pull=never", "--network=none", "--name", "box", "app:1", "/none")
        (base / "new.txt").write_bytes(b"new in the container\n")
        (base / "b").write_bytes(b"changed b\n")
        docker(sock, "cp", str(base / "new.txt"), "box:/etc/new.txt")
        docker(sock, "cp", str(base / "b"), "box:/etc/b")
        diff = docker(sock, "diff", "box").splitlines()
        with open(base / "export.tar", "wb") as out:
            env = {**os.environ, "DOCKER_HOST": f"unix://{sock}"}
            subprocess.run(["docker", "export", "box"], check=True, stdout=out, env=env)
    finally:
        stop_dockerd(daemon, base)
    yield Engine(base / "data", request.param, base / "saved.tar", base / "export.tar", diff)
    subprocess.run(["rm", "-rf", str(base / "data")], check=False)


def _json(imgtool_cli: ImgtoolCli, *args: str) -> Any:
    run = imgtool_cli(*args)
    assert run.code == 0, run.stderr
    return json.loads(run.stdout)


def test_store_image_answers_as_docker_save(imgtool_cli: ImgtoolCli, engine: Engine) -> None:
    stored, saved = engine.image("app:1"), str(engine.archive)
    a, b = _json(imgtool_cli, "inspect", "--json", stored), _json(imgtool_cli, "inspect", "--json", saved)
    for key in ("manifest_digest", "manifest_media_type", "manifest_synthesized", "config_digest", "layers"):
        assert a[key] == b[key], key
    assert a["transport"] == "docker-storage"
    assert a["tags"] == ["app:1"]
    assert _json(imgtool_cli, "ls", "-R", "--json", stored) == _json(imgtool_cli, "ls", "-R", "--json", saved)
    for path in ("/opt/y", "/etc/l"):
        assert _json(imgtool_cli, "which-layer", "--json", stored, path) == _json(
            imgtool_cli, "which-layer", "--json", saved, path
        )
    assert imgtool_cli("cat", stored, "/opt/y").stdout_bytes == b"yy\n"
    rows = _json(imgtool_cli, "verify", "--json", stored)
    assert {r["status"] for r in rows} == {"ok"}
    assert len(rows) == 1 + 2 * 2  # a synthesized manifest has nothing to verify
    image_id = a["config_digest"].partition(":")[2]
    by_id = _json(imgtool_cli, "inspect", "--json", engine.image(f"@{image_id[:12]}"))
    assert by_id["manifest_digest"] == a["manifest_digest"]
    run = imgtool_cli("diff", "images", stored, saved)
    assert run.code == 0, run.stdout + run.stderr


def test_container_diff_is_docker_diff(imgtool_cli: ImgtoolCli, engine: Engine) -> None:
    layers = _json(imgtool_cli, "diff", "layers", "--json", engine.container("box"))["layers"]
    assert [layer["created_by"] for layer in layers[-2:]] == [
        "Docker's init layer of container box",
        "the writable layer of container box",
    ]
    words = {"added": "A", "modified": "C", "deleted": "D"}
    ours = sorted(f"{words[c['change']]} {c['path']}" for c in layers[-1]["changes"])
    assert ours == sorted(engine.docker_diff)
    which = _json(imgtool_cli, "which-layer", "--json", engine.container("box"), "/etc/new.txt")
    assert which[0]["layer"]["created_by"] == "the writable layer of container box"
    assert imgtool_cli("cat", engine.container("box"), "/etc/b").stdout_bytes == b"changed b\n"


def test_container_flatten_is_docker_export(imgtool_cli: ImgtoolCli, engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "box.tar"
    run = imgtool_cli("flatten", engine.container("box"), "-o", str(out))
    assert run.code == 0, run.stderr
    # Times aside: a directory a layer's tar makes opaque without an entry of its own (/opt here)
    # gets the time of the unpacking in Docker's store, which no image states.
    assert tar_listing(out, times=False) == tar_listing(engine.export, times=False)


def test_container_layers_are_unverifiable(imgtool_cli: ImgtoolCli, engine: Engine) -> None:
    rows = _json(imgtool_cli, "verify", "--json", engine.container("box"))
    assert [(r["blob"], r["status"]) for r in rows if r["status"] != "ok"] == [
        ("layer 2", "unverifiable"),
        ("layer 2", "unverifiable"),
        ("layer 3", "unverifiable"),
        ("layer 3", "unverifiable"),
    ]


def test_missing_store_and_names(imgtool_cli: ImgtoolCli, engine: Engine, tmp_path: Path) -> None:
    run = imgtool_cli("inspect", engine.image("nosuch:1"))
    assert run.code == 1
    assert run.stderr == f"imgtool: error: {engine.root}: no image named 'nosuch:1'; names present: app:1\n"
    run = imgtool_cli("inspect", f"docker-storage:[{tmp_path}]x")
    assert (
        run.stderr == f"imgtool: error: {tmp_path}: not a Docker data root (no image/overlay2 or image/vfs)\n"
    )
    run = imgtool_cli("inspect", engine.container("nobox"))
    assert run.stderr == f"imgtool: error: {engine.root}: no container with ID 'nobox'\n"


def test_docker_references_complete(engine: Engine) -> None:
    def values(incomplete: str) -> list[str]:
        items = ShellComplete(cli, {}, "imgtool", COMPLETE_VAR).get_completions(["inspect"], incomplete)
        return [item.value for item in items]

    assert values(f"docker-storage:[{engine.root}]a") == [f"docker-storage:[{engine.root}]app:1"]
    assert values(f"docker-container:[{engine.root}]") == [f"docker-container:[{engine.root}]box"]


def test_images_lists_the_store(imgtool_cli: ImgtoolCli, engine: Engine) -> None:
    listed = _json(imgtool_cli, "images", "--json", f"docker-storage:[{engine.root}]")
    assert [(i["name"], i["reference"], i["platform"]) for i in listed] == [
        ("app:1", engine.image("app:1"), "linux/amd64")
    ]
    inspected = _json(imgtool_cli, "inspect", "--json", listed[0]["reference"])
    assert listed[0]["manifest_digest"] == inspected["manifest_digest"]
    config = json.loads(imgtool_cli("inspect", "--config", listed[0]["reference"]).stdout_bytes)
    assert listed[0]["created"] == config["created"]
    assert listed[0]["size"] == len(
        imgtool_cli("inspect", "--config", listed[0]["reference"]).stdout_bytes
    ) + sum(layer["size"] for layer in inspected["layers"])
    run = imgtool_cli("images", engine.container("box"))
    refused = "images lists the images of an archive, a layout or a store"
    assert (run.code, run.stderr) == (2, f"imgtool: error: {engine.container('box')}: {refused}\n")
