"""copy into an OCI layout, without a registry: layers a few at a time (--jobs), a blob listed
twice sent once, refs added and replaced, destinations refused before anything is written."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from imgtool.image.digest import Digest
from imgtool.image.readable import Readable
from imgtool.ops.copy import copy_image
from imgtool.sources import open_destination, open_image
from imgtool.sources.oci_writer import LayoutDestination
from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import (
    Entry,
    File,
    ImageSpec,
    IndexSpec,
    Platform,
    make_layer,
    write_oci_layout,
)

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample-oci"


class Watched(LayoutDestination):
    """A layout whose blob writes are counted while they overlap (each made to take 0.3 s)."""

    def __init__(self, directory: str) -> None:
        super().__init__(directory, "v", f"oci:{directory}:v")
        self.now = 0
        self.most = 0
        self.put: list[Digest] = []
        self._count = threading.Lock()

    def put_blob(self, digest: Digest, size: int, reader: Readable) -> None:
        with self._count:
            self.now += 1
            self.most = max(self.most, self.now)
            self.put.append(digest)
        time.sleep(0.3)
        try:
            super().put_blob(digest, size, reader)
        finally:
            with self._count:
                self.now -= 1


@pytest.fixture
def five_layers(tmp_path: Path) -> str:
    layers = [make_layer([File(f"f{i}", f"layer {i}\n".encode())]) for i in range(4)]
    spec = ImageSpec([*layers, layers[0]])  # the first layer again: one blob, listed twice
    return write_oci_layout(tmp_path / "src", [Entry(spec, ref="v")]).reference("v")


@pytest.mark.parametrize(("jobs", "most"), [(1, 1), (3, 3), (8, 5)])
def test_layers_are_copied_jobs_at_a_time(five_layers: str, tmp_path: Path, jobs: int, most: int) -> None:
    with open_image(five_layers) as image, Watched(str(tmp_path / "out")) as dest:
        result = copy_image(image, dest, jobs=jobs)
        digests = [layer.digest for layer in image.layers]
    assert dest.most == most  # 4 distinct layers and the config: 5 at most, however many jobs
    assert sorted(map(str, dest.put)) == sorted(
        {*map(str, digests[:4]), str(image.config_digest)} | {result.manifest_digest}
    )
    assert [b.status for b in result.blobs] == ["copied"] * 6
    assert result.blobs[4].digest == result.blobs[0].digest


def test_refs_are_added_and_replaced(imgtool_cli: ImgtoolCli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for source, ref in [("1.0", "a"), ("1.1", "b"), ("1.1", "a")]:
        run = imgtool_cli("copy", "-q", f"oci:{SAMPLE}:{source}", f"oci:{out}:{ref}")
        assert (run.code, run.stderr) == (0, "")
    index = json.loads((out / "index.json").read_text())
    source_index = {
        m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
        for m in json.loads((SAMPLE / "index.json").read_text())["manifests"]
    }
    refs = [(m["annotations"]["org.opencontainers.image.ref.name"], m["digest"]) for m in index["manifests"]]
    assert refs == [("b", source_index["1.1"]), ("a", source_index["1.1"])]
    again = imgtool_cli("copy", "--json", f"oci:{SAMPLE}:1.0", f"oci:{out}:c")
    doc = json.loads(again.stdout)
    # 1.0's blobs stayed when its ref was given to 1.1 (a layout's blobs are not collected)
    assert ({b["status"] for b in doc["blobs"]}, doc["bytes_copied"]) == ({"present"}, 0)
    verify = imgtool_cli("verify", f"oci:{out}:c")
    assert verify.code == 0


def test_an_empty_directory_becomes_a_layout(imgtool_cli: ImgtoolCli, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    run = imgtool_cli("copy", "-q", f"oci:{SAMPLE}:1.0", f"oci:{tmp_path / 'empty'}")
    assert run.code == 0
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == ["blobs", "index.json", "oci-layout"]
    (entry,) = json.loads((tmp_path / "empty" / "index.json").read_text())["manifests"]
    assert "annotations" not in entry
    assert imgtool_cli("inspect", f"oci:{tmp_path / 'empty'}").code == 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        ("file", "{dest}: exists and is not a directory (an OCI layout is one)"),
        ("full", "{dest}: is neither an OCI layout (no oci-layout file) nor empty"),
        ("symlink", "{dest}: is a symlink; imgtool does not write through a symlink at the output "
         "(name its target instead, or remove it)"),
        ("noparent", "{dest}: parent directory {parent} does not exist"),
    ],
)  # fmt: skip
def test_destinations_refused_before_anything_is_read(
    imgtool_cli: ImgtoolCli, tmp_path: Path, make: str, message: str
) -> None:
    dest = tmp_path / "dest"
    if make == "file":
        dest.write_bytes(b"x")
    elif make == "full":
        dest.mkdir()
        (dest / "other").write_bytes(b"x")
    elif make == "symlink":
        (tmp_path / "real").mkdir()
        dest.symlink_to("real")
    else:
        dest = tmp_path / "missing" / "dest"
    before = sorted(p.name for p in tmp_path.iterdir())
    run = imgtool_cli("copy", f"oci:{SAMPLE}:1.0", f"oci:{dest}")
    assert (run.code, run.stdout) == (1, "")
    assert run.stderr == "imgtool: error: " + message.format(dest=dest, parent=dest.parent) + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_source_that_fails_to_open_leaves_no_staging(imgtool_cli: ImgtoolCli, tmp_path: Path) -> None:
    run = imgtool_cli("copy", f"oci:{SAMPLE}:9.9", f"oci:{tmp_path / 'out'}")
    assert run.code == 1
    assert list(tmp_path.iterdir()) == []
    with open_destination(f"oci:{tmp_path / 'out'}") as dest:
        assert isinstance(dest, LayoutDestination)
        assert len(list(tmp_path.iterdir())) == 1  # its staging directory, until it is closed
    assert list(tmp_path.iterdir()) == []


def test_all_platforms_needs_an_index_of_its_own(imgtool_cli: ImgtoolCli, tmp_path: Path) -> None:
    layer = make_layer([File("f", b"x")])
    entries = [
        Entry(ImageSpec([layer]), ref="x", platform=Platform("linux", "amd64")),
        Entry(ImageSpec([layer], architecture="arm64"), ref="x", platform=Platform("linux", "arm64")),
    ]
    source = write_oci_layout(tmp_path / "src", entries).reference("x")
    run = imgtool_cli("copy", "--all-platforms", source, f"oci:{tmp_path / 'out'}")
    assert (run.code, run.stdout) == (2, "")
    assert run.stderr == (
        f"imgtool: error: {source}: --all-platforms: index.json lists these images without an image index "
        "of their own; name one image (--platform), or copy each\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
    one = imgtool_cli("copy", "-q", "--platform", "linux/arm64", source, f"oci:{tmp_path / 'out'}:arm")
    assert (one.code, one.stderr) == (0, "")
    assert imgtool_cli("inspect", "--json", f"oci:{tmp_path / 'out'}:arm").stdout.count('"linux/arm64"') == 1


def test_all_platforms_of_an_index_without_this_machines_platform(
    imgtool_cli: ImgtoolCli, tmp_path: Path
) -> None:
    arm = ImageSpec([make_layer([File("f", b"arm")])], architecture="arm64", variant="v8")
    s390 = ImageSpec([make_layer([File("f", b"s390")])], architecture="s390x")
    index = IndexSpec([arm, s390], media_type="application/vnd.oci.image.index.v1+json")
    source = write_oci_layout(tmp_path / "src", [Entry(index, ref="x")]).reference("x")
    one = imgtool_cli("copy", source, f"oci:{tmp_path / 'one'}")
    assert (one.code, one.stdout) == (1, "")
    assert "no image for platform linux/amd64" in one.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
    run = imgtool_cli("copy", "--json", "--all-platforms", source, f"oci:{tmp_path / 'all'}:x")
    assert (run.code, run.stderr) == (0, "")
    doc = json.loads(run.stdout)
    src_index = json.loads((tmp_path / "src" / "index.json").read_text())["manifests"][0]
    assert doc["manifest_digest"] == src_index["digest"]
    assert len(doc["manifests"]) == 2
    assert [b["status"] for b in doc["blobs"]] == ["copied"] * 4
    for platform, content in [("linux/arm64/v8", b"arm"), ("linux/s390x", b"s390")]:
        cat = imgtool_cli("cat", "--platform", platform, f"oci:{tmp_path / 'all'}:x", "/f")
        assert cat.stdout_bytes == content
    assert imgtool_cli("verify", "--platform", "linux/s390x", f"oci:{tmp_path / 'all'}:x").code == 0


def test_a_layout_whose_blobs_are_a_symlink_is_not_written_through(
    imgtool_cli: ImgtoolCli, tmp_path: Path
) -> None:
    assert imgtool_cli("copy", "-q", f"oci:{SAMPLE}:1.0", f"oci:{tmp_path / 'out'}:a").code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    sha = tmp_path / "out" / "blobs" / "sha256"
    sha.rename(elsewhere / "sha256")
    sha.symlink_to(elsewhere / "sha256")
    before = sorted(p.name for p in (elsewhere / "sha256").iterdir())
    run = imgtool_cli("copy", f"oci:{SAMPLE}:1.1", f"oci:{tmp_path / 'out'}:b")
    assert (run.code, run.stdout) == (1, "")
    assert (
        run.stderr == f"imgtool: error: {sha}: is not a directory; imgtool does not write through a symlink\n"
    )
    assert sorted(p.name for p in (elsewhere / "sha256").iterdir()) == before


def test_copies_into_one_layout_at_once_keep_each_others_refs(tmp_path: Path) -> None:
    """Two copies into one layout, both begun before either ends: index.json has both refs (each
    copy reads it again, under the layout's lock, as it adds its entry)."""
    out = str(tmp_path / "out")
    with open_image(f"oci:{SAMPLE}:1.0") as image, LayoutDestination(out, "seed", f"oci:{out}:seed") as dest:
        copy_image(image, dest)
    with (
        open_image(f"oci:{SAMPLE}:1.0") as first_image,
        open_image(f"oci:{SAMPLE}:1.1") as second_image,
        LayoutDestination(out, "a", f"oci:{out}:a") as first,
        LayoutDestination(out, "b", f"oci:{out}:b") as second,
    ):
        copy_image(first_image, first)
        copy_image(second_image, second)
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    refs = [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]]
    assert refs == ["seed", "a", "b"]


def test_a_copy_waits_for_the_layouts_lock(tmp_path: Path) -> None:
    import fcntl
    import os

    out = tmp_path / "out"
    with open_image(f"oci:{SAMPLE}:1.0") as image, LayoutDestination(str(out), "a", f"oci:{out}:a") as dest:
        copy_image(image, dest)
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as another copy holds it while it replaces index.json
    done = threading.Event()

    def copy_b() -> None:
        with (
            open_image(f"oci:{SAMPLE}:1.1") as image,
            LayoutDestination(str(out), "b", f"oci:{out}:b") as dest,
        ):
            copy_image(image, dest)
        done.set()

    worker = threading.Thread(target=copy_b)
    worker.start()
    try:
        assert not done.wait(1.0)  # its blobs are in, its index.json waits for the lock
        refs = [
            m["annotations"]["org.opencontainers.image.ref.name"]
            for m in json.loads((out / "index.json").read_text())["manifests"]
        ]
        assert refs == ["a"]
    finally:
        os.close(fd)
    worker.join(30)
    assert done.is_set()
    refs = [
        m["annotations"]["org.opencontainers.image.ref.name"]
        for m in json.loads((out / "index.json").read_text())["manifests"]
    ]
    assert refs == ["a", "b"]


def test_a_copy_waiting_for_the_lock_can_be_interrupted(tmp_path: Path) -> None:
    import fcntl
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "out"
    with open_image(f"oci:{SAMPLE}:1.0") as image, LayoutDestination(str(out), "a", f"oci:{out}:a") as dest:
        copy_image(image, dest)
    before = sorted(p.name for p in (out / "blobs" / "sha256").iterdir())
    index = (out / "index.json").read_bytes()
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "imgtool", "copy", "-q", f"oci:{SAMPLE}:1.1", f"oci:{out}:b"],
            stderr=subprocess.PIPE,
        )
        time.sleep(2.0)  # its blobs are in; it waits for the lock
        assert child.poll() is None
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=20)
    finally:
        os.close(fd)
    assert child.returncode == 130, stderr
    assert (out / "index.json").read_bytes() == index
    assert sorted(p.name for p in (out / "blobs" / "sha256").iterdir()) == before  # its own removed
