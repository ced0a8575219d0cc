"""The fuzzer's machinery: images from arbitrary layer bytes or JSON documents, and a sandboxed run of the
opener, the indexer and both flatteners over them.

Each run happens in a forked child that has ``chroot``-ed into the example's own directory, so an escape
imgtool failed to stop (even one aimed at ``/``) can only land inside that directory, where the parent
sees it. The child reports "ok" when every step succeeded or raised an :class:`imgtool.ImgtoolError`, and
the traceback of any other exception; it is killed if it runs too long. It then runs every command
through the CLI (tables and JSON): each must end in an exit code, never a traceback or an internal
error, and print no control character a terminal would act on.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import hashlib
import importlib
import io
import json
import os
import pkgutil
import resource
import select
import shutil
import signal
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

import imgtool
from imgtool import ImgtoolError, open_image
from imgtool.flatten.export import write_tar
from imgtool.flatten.rootfs import flatten_to_dir
from imgtool.layers.tarstream import Kind
from imgtool.merge.changes import ChangeLog
from imgtool.merge.view import merged_view
from imgtool.ops.listing import list_tree
from imgtool.ops.readfile import read_file
from imgtool.ops.summary import describe_image
from imgtool.ops.verify import verify_image
from imgtool.ops.which import answers_for
from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import (
    Compression,
    ImageSpec,
    Layer,
    canonical_json,
    make_layer,
    sha256_digest,
    write_docker_archive,
    write_oci_layout,
)
from tests.helpers.imagefactory import (
    File as FileMember,
)
from tests.helpers.treesnap import Node, snapshot
from tests.hostile.harness import make_sentinel
from tests.hostile.terminal import raw_controls

Format: TypeAlias = Literal["oci", "docker"]
JsonTarget: TypeAlias = Literal["oci-index", "oci-manifest", "oci-config", "docker-manifest", "docker-config"]
JSON_TARGETS: Final[tuple[JsonTarget, ...]] = (
    "oci-index",
    "oci-manifest",
    "oci-config",
    "docker-manifest",
    "docker-config",
)

SANDBOX_SENTINEL: Final = "/area/sentinel"  # the sentinel's path as the sandboxed child sees it
MAX_SIZE: Final = 64 << 20
CHILD_SECONDS: Final = 30.0
CHILD_MEMORY: Final = 2 << 30
CHILD_FILE_SIZE: Final = 256 << 20
OUTPUTS: Final = (b"area/out", b"area/out.tar")
OUTPUT_PARENT: Final = b"area"
SCRATCH: Final = b"scratch"  # the child's temporary directory: what is made there must be gone again
PROBES: Final = ["/a", "/x/etc/passwd", "/etc/passwd", "/area/sentinel/secret", "/*"]
BASE_LAYER: Final = make_layer(
    [FileMember("a", b"hello\n"), FileMember("etc/passwd", b"root:x:0:0\n", mode=0o600)]
)


# What the CLI runs on each example (REF: the example's image); True where stdout is file data.
CLI_RUNS: Final[tuple[tuple[tuple[str, ...], bool], ...]] = (
    *(
        ((*args, *extra), False)
        for args in (
            ("inspect", "REF"),
            ("verify", "REF"),
            ("ls", "REF", "/", "-R", "--no-cache"),
            ("which-layer", "REF", *PROBES, "--no-cache"),
            ("diff", "layers", "REF", "--no-cache"),
            ("diff", "layers", "REF", "0", "--no-cache"),
            ("diff", "layers", "REF", "0", "1", "--no-cache"),
            ("diff", "images", "REF", "REF", "--no-cache"),
        )
        for extra in ((), ("--json",))
    ),
    (("cat", "REF", "/a", "--no-cache"), True),
    (("flatten", "REF", "-o", "-", "--no-cache", "--max-size", str(MAX_SIZE)), True),
)


# The sandboxed child cannot import from the standard library once it has chrooted: look up now the
# codecs json.loads may need for documents in UTF-16 or UTF-32, and import every module the CLI's
# commands import when they run.
for _codec in ("utf-16", "utf-16-be", "utf-16-le", "utf-32", "utf-32-be", "utf-32-le"):
    codecs.lookup(_codec)
for _module in pkgutil.walk_packages(imgtool.__path__, "imgtool."):
    if not _module.name.endswith("__main__"):
        importlib.import_module(_module.name)
importlib.import_module("tabulate")


class UnexpectedError(AssertionError):
    """imgtool raised something other than an ImgtoolError, wrote outside its output, or hung."""


# -- building examples ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """An example's sandbox root and the reference to its image, as seen from inside the sandbox."""

    root: Path
    reference: str


def new_root(base: Path) -> Path:
    root = Path(tempfile.mkdtemp(prefix="ex-", dir=base))
    (root / "image").mkdir()
    (root / "scratch").mkdir()
    make_sentinel(root / "area" / "sentinel")
    return root


def image_from_layers(base: Path, layers: list[bytes], fmt: Format, compression: Compression) -> Example:
    """An otherwise valid image holding ``layers`` (uncompressed tars, digests taken of these very bytes)."""
    root = new_root(base)
    specs = [Layer(tar, compression=compression) for tar in layers]
    if fmt == "oci":
        write_oci_layout(root / "image" / "oci", [ImageSpec(specs)], extra_files=None)
        return Example(root, "oci:/image/oci")
    write_docker_archive(
        root / "image" / "image.tar", [(ImageSpec(specs), ["fuzz:1"])], layer_compression=None
    )
    return Example(root, "docker-archive:/image/image.tar")


def _base_docs() -> tuple[ImageSpec, Any, Any]:
    spec = ImageSpec([BASE_LAYER])
    built = spec.build()
    return spec, json.loads(built.manifest), json.loads(built.config)


_BASE_DOCUMENTS: dict[JsonTarget, Any] = {}


def base_document(target: JsonTarget) -> Any:
    """The valid document a JSON example starts from, before the fuzzer changes it."""
    if not _BASE_DOCUMENTS:
        spec, manifest, config = _base_docs()
        built = spec.build()
        _BASE_DOCUMENTS["oci-manifest"] = manifest
        _BASE_DOCUMENTS["oci-config"] = config
        _BASE_DOCUMENTS["docker-config"] = config
        _BASE_DOCUMENTS["oci-index"] = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": built.manifest_digest,
                    "size": len(built.manifest),
                    "annotations": {"org.opencontainers.image.ref.name": "v1"},
                }
            ],
        }
        with tempfile.TemporaryDirectory() as scratch:
            archive = write_docker_archive(
                Path(scratch) / "image.tar", [(ImageSpec([Layer(BASE_LAYER)]), ["fuzz:1"])]
            )
            _BASE_DOCUMENTS["docker-manifest"] = json.loads(archive.manifest_json)
    return json.loads(json.dumps(_BASE_DOCUMENTS[target]))


def image_from_json(base: Path, target: JsonTarget, data: bytes, fix_digests: bool) -> Example:
    """A one-layer image whose ``target`` document is ``data``; with ``fix_digests`` the documents that
    point at it name its real digest and size, so the parser, not the digest check, meets it."""
    root = new_root(base)
    spec, manifest, config = _base_docs()
    built = spec.build()
    layer_digest = built.layer_digests[0]
    layer_blob = built.blobs[layer_digest]
    if target.startswith("oci"):
        config_bytes = data if target == "oci-config" else canonical_json(config)
        if target == "oci-config" and fix_digests:
            _point(manifest, ("config",), config_bytes)
        manifest_bytes = data if target == "oci-manifest" else canonical_json(manifest)
        index = base_document("oci-index")
        if fix_digests:
            _point(index, ("manifests", 0), manifest_bytes)
        index_bytes = data if target == "oci-index" else canonical_json(index)
        files = {
            "index.json": index_bytes,
            _blob(manifest_bytes): manifest_bytes,
            _blob(config_bytes): config_bytes,
            _blob(built.config): built.config,
            _blob(built.manifest): built.manifest,
            f"blobs/sha256/{layer_digest.partition(':')[2]}": layer_blob,
        }
        write_oci_layout(root / "image" / "oci", [], extra_files=files)
        return Example(root, "oci:/image/oci")

    docker_config = data if target == "docker-config" else built.config
    config_name = f"{hashlib.sha256(docker_config if fix_digests else built.config).hexdigest()}.json"

    def mutate(files: dict[str, bytes]) -> None:
        for name in [n for n in files if n.endswith(".json") and "/" not in n and n != "manifest.json"]:
            del files[name]
        files[config_name] = docker_config
        if target == "docker-manifest":
            files["manifest.json"] = data
        elif target == "docker-config":
            listing = json.loads(files["manifest.json"])
            listing[0]["Config"] = config_name
            files["manifest.json"] = canonical_json(listing)

    write_docker_archive(
        root / "image" / "image.tar", [(ImageSpec([Layer(BASE_LAYER)]), ["fuzz:1"])], mutate_files=mutate
    )
    return Example(root, "docker-archive:/image/image.tar")


def _blob(data: bytes) -> str:
    return "blobs/sha256/" + hashlib.sha256(data).hexdigest()


def _point(doc: Any, where: tuple[str | int, ...], blob: bytes) -> None:
    """Make the descriptor at ``where`` in ``doc`` name ``blob``, where the document still has one."""
    node = doc
    for key in where:
        if isinstance(key, int):
            if not isinstance(node, list) or len(node) <= key:
                return
        elif not isinstance(node, dict) or key not in node:
            return
        node = node[key]
    if isinstance(node, dict):
        node["digest"] = sha256_digest(blob)
        node["size"] = len(blob)


# -- running an example --------------------------------------------------------------------------------


def exercise(reference: str) -> None:
    """What every command does with an image, straight through the library; ImgtoolError is an answer."""
    with contextlib.suppress(ImgtoolError), open_image(reference) as image:
        with contextlib.suppress(ImgtoolError):
            describe_image(image)
        with contextlib.suppress(ImgtoolError):
            verify_image(image, max_size=MAX_SIZE)
        log = ChangeLog()
        view = merged_view(image, max_size=MAX_SIZE, recorder=log)
        with contextlib.suppress(ImgtoolError):
            list_tree(view.tree, b"", True)
        with contextlib.suppress(ImgtoolError):
            answers_for(view.tree, log, PROBES)
        files = [
            path
            for path, node in view.tree.walk()
            if node.content is not None and node.content.kind == Kind.FILE
        ]
        for path in files[:3]:
            with contextlib.suppress(ImgtoolError):
                read_file(image, view.tree, path, io.BytesIO(), MAX_SIZE)
        with contextlib.suppress(ImgtoolError):
            flatten_to_dir(view, "/area/out", max_size=MAX_SIZE)
        with contextlib.suppress(ImgtoolError), open("/area/out.tar", "wb") as handle:
            write_tar(view, handle, max_size=MAX_SIZE)


def exercise_cli(reference: str) -> None:
    """Every command through the CLI's error funnel, output captured in memory."""
    for template, binary in CLI_RUNS:
        args = [reference if arg == "REF" else arg for arg in template]
        run = ImgtoolCli()(*args)  # a main() that returns instead of exiting raises here
        out, err = run.stdout_bytes, run.stderr_bytes
        what = f"imgtool {' '.join(args)} (exit {run.code})"
        if b"Traceback" in err or b"internal error" in err:
            raise UnexpectedError(f"{what}:\n{err.decode('utf-8', 'replace')}")
        controls = raw_controls(err) + ([] if binary else raw_controls(out))
        if controls:
            raise UnexpectedError(
                f"{what} printed raw control characters {controls}:\n{out[:2000]!r}\n{err!r}"
            )


def _child(root: Path, reference: str, report: int) -> None:
    """Runs in the forked child: sandbox, limits, exercise, report."""
    try:
        os.chroot(root)
        os.chdir("/")
        tempfile.tempdir = "/scratch"
        resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))
        resource.setrlimit(resource.RLIMIT_FSIZE, (CHILD_FILE_SIZE, CHILD_FILE_SIZE))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        exercise(reference)
        exercise_cli(reference)
        message = b"ok"
    except BaseException:  # everything else is what the fuzzer looks for
        message = traceback.format_exc().encode("utf-8", "replace")
    os.write(report, message[:60000])
    os._exit(0)


def run_sandboxed(example: Example) -> None:
    """Exercise the example's image in a chrooted child; raise UnexpectedError for anything wrong."""
    before = _outside(example.root)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        os.close(read_end)
        _child(example.root, example.reference, write_end)
    os.close(write_end)
    try:
        message = _collect(read_end, pid)
    finally:
        os.close(read_end)
    if message != b"ok":
        raise UnexpectedError(f"imgtool failed unexpectedly on {example.reference}:\n{message.decode()}")
    after = _outside(example.root)
    if after != before:
        changed = sorted(path for path in after.keys() | before.keys() if after.get(path) != before.get(path))
        raise UnexpectedError(f"written outside the output: {changed[:10]}")


def _collect(fd: int, pid: int) -> bytes:
    deadline = time.monotonic() + CHILD_SECONDS
    chunks = []
    while True:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(left, 0))
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise UnexpectedError(f"imgtool ran for more than {CHILD_SECONDS} s")
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        raise UnexpectedError(f"the sandboxed run died without a report (wait status {status})")
    return b"".join(chunks)


def _outside(root: Path) -> dict[bytes, Node]:
    """Everything under the sandbox root except the outputs imgtool may write (and the mtime of the
    directory that holds them, which creating them changes)."""
    return {
        path: dataclasses.replace(node, mtime_ns=None) if path in (OUTPUT_PARENT, SCRATCH) else node
        for path, node in snapshot(root).items()
        if not any(path == out or path.startswith(out + b"/") for out in OUTPUTS)
    }


@contextlib.contextmanager
def examples_dir(base: Path) -> Iterator[Path]:
    base.mkdir(parents=True, exist_ok=True)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def check(make: Callable[[], Example]) -> None:
    """Build an example, run it, and remove it again (whatever happened)."""
    example = make()
    try:
        run_sandboxed(example)
    finally:
        shutil.rmtree(example.root, ignore_errors=True)
