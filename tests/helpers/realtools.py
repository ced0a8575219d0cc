"""Building and converting container images with real tools (buildah, skopeo, umoci) for comparison tests.

One :class:`Builder` per test session keeps its own containers-storage in a temporary directory
(``--root``/``--runroot``, vfs driver, chroot isolation, private storage/registries/policy configuration),
so the host's image store is never used. Each build context holds a copy of the static busybox binary, so
Containerfiles start ``FROM scratch`` and install busybox applets as their second layer (see
:data:`BASE_CONTAINERFILE`).

Fixtures for other test modules: ``builder`` (session), ``standard_image`` (session factory:
``standard_image("links")`` returns a :class:`BuiltImage`), ``overlay_builder`` (session, overlay driver,
for images whose whiteouts must use opaque markers) and ``platform_index`` (session, a two-platform
OCI index).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import pytest

from tests.helpers.imagefactory import incompressible

__all__ = [
    "BASE_CONTAINERFILE",
    "BASE_LAYER_COUNT",
    "FIXED_MTIME",
    "REALTOOLS",
    "STANDARD_FILES",
    "STANDARD_IMAGES",
    "Builder",
    "BuiltImage",
    "Compression",
    "ContextFile",
    "ExportFormat",
    "PlatformIndex",
    "StandardImageFactory",
    "ToolError",
    "builder",
    "find_static_busybox",
    "is_static_elf",
    "merge_docker_archives",
    "missing_tools",
    "overlay_builder",
    "platform_index",
    "realtools_problem",
    "requires",
    "requires_realtools",
    "skopeo_inspect_config",
    "skopeo_inspect_raw",
    "standard_image",
    "umoci_unpack",
]

Compression = Literal["gzip", "zstd", "none"]
ExportFormat = Literal["oci", "oci-archive", "docker-archive"]

REALTOOLS: Final = ("buildah", "skopeo", "umoci")
FIXED_MTIME: Final = 981173106
"""2001-02-03T04:05:06Z: the mtime of context files and of everything the standard images ``touch``."""

TOOL_TIMEOUT: Final = 600.0
_NAME_RE: Final = re.compile(r"[a-z0-9][a-z0-9._-]*")
_INSTALL_HINT: Final = "the README test command installs"


# --------------------------------------------------------------------------------------------------------
# Tool discovery and skip markers


def missing_tools(*names: str) -> list[str]:
    """The subset of ``names`` that are not found on PATH, in the order given."""
    return [name for name in names if shutil.which(name) is None]


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _missing_reason(missing: Sequence[str]) -> str:
    if len(missing) == 1:
        return f"{missing[0]} not installed ({_INSTALL_HINT} it)"
    return f"{', '.join(missing[:-1])} and {missing[-1]} not installed ({_INSTALL_HINT} them)"


def requires(*tools: str) -> pytest.MarkDecorator:
    """A ``skipif`` marker naming whichever of ``tools`` is missing.

    Under CI (``CI=true``) nothing is skipped: a missing tool there is an install bug, so the test runs and
    fails where it first calls the tool.
    """
    missing = missing_tools(*tools)
    reason = _missing_reason(missing) if missing else f"{', '.join(tools)} installed"
    return pytest.mark.skipif(bool(missing) and not _in_ci(), reason=reason)


requires_realtools: Final = requires(*REALTOOLS)


def is_static_elf(path: str | Path) -> bool:
    """True when ``path`` is an ELF executable without a program interpreter (statically linked)."""
    with open(path, "rb") as f:
        ident = f.read(16)
        if len(ident) < 16 or ident[:4] != b"\x7fELF" or ident[4] not in (1, 2) or ident[5] not in (1, 2):
            return False
        is64 = ident[4] == 2
        order = "<" if ident[5] == 1 else ">"
        header = f.read(48 if is64 else 36)
        if is64:
            (phoff,) = struct.unpack_from(order + "Q", header, 0x20 - 16)
            phentsize, phnum = struct.unpack_from(order + "HH", header, 0x36 - 16)
        else:
            (phoff,) = struct.unpack_from(order + "I", header, 0x1C - 16)
            phentsize, phnum = struct.unpack_from(order + "HH", header, 0x2A - 16)
        for index in range(phnum):
            f.seek(phoff + index * phentsize)
            raw = f.read(4)
            if len(raw) < 4:
                return False
            (p_type,) = struct.unpack(order + "I", raw)
            if p_type == 3:  # PT_INTERP: needs a dynamic loader
                return False
    return True


def find_static_busybox() -> Path | None:
    """The busybox binary on PATH, resolved, if it is statically linked (it must run inside ``scratch``)."""
    found = shutil.which("busybox")
    if found is None:
        return None
    path = Path(found).resolve()
    return path if is_static_elf(path) else None


def realtools_problem() -> str | None:
    """Why images cannot be built here, or None when everything needed is present."""
    missing = missing_tools(*REALTOOLS, "busybox")
    if missing:
        return _missing_reason(missing)
    if find_static_busybox() is None:
        return "busybox is not statically linked (install busybox-static)"
    if os.geteuid() != 0:
        return "building images with buildah's chroot isolation needs root"
    return None


# --------------------------------------------------------------------------------------------------------
# Running tools


class ToolError(RuntimeError):
    """A real tool exited non-zero; the message carries the command line and the end of its stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        tail = "\n".join(stderr.strip().splitlines()[-25:])
        super().__init__(f"{' '.join(argv)} exited {returncode}:\n{tail}")


def _run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    prefix: Sequence[str] = (),
) -> str:
    """Run ``prefix + argv``; returns stdout, raises :class:`ToolError` (naming ``argv``) on failure."""
    proc = subprocess.run(
        [*prefix, *argv],
        env=dict(env) if env is not None else None,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=TOOL_TIMEOUT,
        check=False,
    )
    stdout = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise ToolError(argv, proc.returncode, stdout, proc.stderr.decode("utf-8", "replace"))
    return stdout


def _parse_json_object(text: str, what: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise TypeError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def _skopeo_inspect(ref: str, flag: str, env: Mapping[str, str] | None) -> dict[str, Any]:
    # skopeo unpacks archives into a temporary directory, /var/tmp unless told otherwise.
    with tempfile.TemporaryDirectory(prefix="imgtool-skopeo-") as tmp:
        return _parse_json_object(_run(["skopeo", "--tmpdir", tmp, "inspect", flag, ref], env=env), ref)


def skopeo_inspect_raw(ref: str, *, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``skopeo inspect --raw REF`` parsed: the manifest or index exactly as stored."""
    return _skopeo_inspect(ref, "--raw", env)


def skopeo_inspect_config(ref: str, *, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``skopeo inspect --config REF`` parsed: the image configuration (with ``rootfs.diff_ids``, history)."""
    return _skopeo_inspect(ref, "--config", env)


def umoci_unpack(oci_gzip_dir: str | Path, tag: str, dest_rootfs: str | Path) -> Path:
    """``umoci raw unpack --image DIR:TAG DEST``; returns DEST. DEST must not exist yet.

    umoci 0.4.7 reads gzip OCI layouts (and correctly labelled uncompressed ones) but not zstd. It sets the
    rootfs directory's mtime to the epoch and gives parent directories it has to create, because no layer
    has an entry for them, the current time.
    """
    dest = Path(dest_rootfs)
    if dest.exists():
        raise FileExistsError(dest)
    _run(["umoci", "raw", "unpack", "--image", f"{oci_gzip_dir}:{tag}", str(dest)])
    return dest


# --------------------------------------------------------------------------------------------------------
# docker-archive merging


def merge_docker_archives(sources: Sequence[str | Path], dest: str | Path) -> None:
    """Write one docker-archive holding every image of ``sources``.

    skopeo 1.9 writes one image per docker-archive. The archives it writes name their members by content
    (``<diff_id>.tar``, ``<config digest>.json``, ``<v1 id>/...``), so the union of their members together
    with the concatenated ``manifest.json`` and merged ``repositories`` is a valid multi-image archive, as
    ``docker save a b`` would write.
    """
    manifest: list[Any] = []
    repositories: dict[str, dict[str, str]] = {}
    seen: dict[str, tuple[bytes, bytes, str]] = {}
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as out:
        for source in sources:
            with tarfile.open(source, "r:") as archive:
                for member in archive:
                    data = b""
                    if member.isfile():
                        extracted = archive.extractfile(member)
                        if extracted is None:
                            raise ValueError(f"{source}: cannot read {member.name}")
                        data = extracted.read()
                    if member.name == "manifest.json":
                        entries = json.loads(data)
                        if not isinstance(entries, list):
                            raise TypeError(f"{source}: manifest.json is not a list")
                        manifest.extend(entries)
                        continue
                    if member.name == "repositories":
                        for repo, tags in json.loads(data).items():
                            repositories.setdefault(repo, {}).update(tags)
                        continue
                    key = (hashlib.sha256(data).digest(), member.type, member.linkname)
                    previous = seen.get(member.name)
                    if previous is not None:
                        if previous != key:
                            raise ValueError(f"{source}: {member.name} differs from an earlier archive's")
                        continue
                    seen[member.name] = key
                    out.addfile(member, io.BytesIO(data) if member.isfile() else None)
        for name, payload in (
            ("manifest.json", json.dumps(manifest, separators=(",", ":")).encode()),
            ("repositories", json.dumps(repositories, separators=(",", ":")).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            info.mode = 0o444
            out.addfile(info, io.BytesIO(payload))


# --------------------------------------------------------------------------------------------------------
# Build contexts


@dataclass(frozen=True)
class ContextFile:
    """A file for a build context with controlled mode, mtime and extended attributes.

    ``COPY`` keeps the mode, mtime and ``user.*`` xattrs of context files (owner becomes 0:0).
    """

    data: bytes
    mode: int = 0o644
    mtime: int = FIXED_MTIME
    xattrs: Mapping[str, bytes] = field(default_factory=dict)


def _write_context_file(path: Path, spec: bytes | ContextFile) -> None:
    item = spec if isinstance(spec, ContextFile) else ContextFile(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(item.data)
    os.chmod(path, item.mode)
    for name, value in item.xattrs.items():
        try:
            os.setxattr(path, name, value)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot set xattr {name} on the build context file {path}") from exc
    os.utime(path, (item.mtime, item.mtime))


# --------------------------------------------------------------------------------------------------------
# Standard images

BASE_CONTAINERFILE: Final = (
    'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
)
"""Every standard image starts with these two layers.

Layer 0 is ``bin/`` plus ``bin/busybox`` (mode 0755, mtime :data:`FIXED_MTIME`). Layer 1 holds the applet
symlinks ``bin/<applet> -> /bin/busybox`` and the traces of buildah's chroot isolation: empty directories
``dev/ proc/ run/ sys/`` and empty 0755 files ``etc/hostname etc/hosts etc/resolv.conf``.
"""
BASE_LAYER_COUNT: Final = 2

_LONG_NAME: Final = "long-" + "x" * 145
_DEEP_DIRS: Final = "/".join(c * 100 for c in "abc")
_FIXED = f"@{FIXED_MTIME}"


def _rewrite20() -> str:
    steps = ["RUN mkdir /r && printf 'round 1\\n' > /r/counter.txt"]
    for n in range(2, 23):
        step = f"RUN printf 'round {n}\\n' > /r/counter.txt"
        if n == 8:
            step += " && printf 'extra\\n' > /r/extra.txt"
        if n == 15:
            step += " && rm /r/extra.txt"
        steps.append(step)
    return BASE_CONTAINERFILE + "\n".join(steps) + "\n"


STANDARD_IMAGES: Final[dict[str, str]] = {
    # Layer 2: files, directories, symlinks of every flavour. Layer 3: COPY of a 64 KiB binary blob.
    # Layer 4: one more file next to earlier ones.
    "basic": BASE_CONTAINERFILE
    + (
        "RUN mkdir -p /etc/app /srv/data/sub /srv/empty \\\n"
        " && printf 'hello world\\n' > /etc/app/hello.txt \\\n"
        " && : > /srv/data/empty.txt \\\n"
        " && printf '#!/bin/sh\\necho hi\\n' > /srv/data/run.sh && chmod 0755 /srv/data/run.sh \\\n"
        " && printf 'secret\\n' > /srv/data/private.txt && chmod 0600 /srv/data/private.txt \\\n"
        " && printf 'nested\\n' > /srv/data/sub/nested.txt \\\n"
        " && ln -s /etc/app/hello.txt /srv/data/abs-link \\\n"
        " && ln -s ../../etc/app/hello.txt /srv/data/rel-link \\\n"
        " && ln -s sub /srv/data/dir-link \\\n"
        " && ln -s does-not-exist /srv/data/dangling \\\n"
        f" && touch -d {_FIXED} /etc/app/hello.txt\n"
        "COPY blob.bin /srv/data/blob.bin\n"
        "RUN printf 'second\\n' > /srv/data/second.txt\n"
    ),
    # Layer 2 creates /w; layer 3 deletes, replaces and recreates (whiteouts; with vfs, the recreated
    # /w/opaque is encoded as whiteouts of its old children, with overlay as an opaque marker);
    # layer 4 re-adds a file deleted in layer 3.
    "whiteouts": BASE_CONTAINERFILE
    + (
        "RUN mkdir -p /w/tree/a/b /w/opaque/sub /w/dir2file /w/dir2link \\\n"
        " && printf 'keep\\n' > /w/keep.txt \\\n"
        " && printf 'gone\\n' > /w/gone.txt \\\n"
        " && printf 'back v1\\n' > /w/back.txt \\\n"
        " && printf 'c\\n' > /w/tree/a/b/c.txt && printf 'd\\n' > /w/tree/d.txt \\\n"
        " && printf 'old1\\n' > /w/opaque/old1.txt && printf 'old2\\n' > /w/opaque/sub/old2.txt \\\n"
        " && printf 'was a file\\n' > /w/file2dir \\\n"
        " && printf 'x\\n' > /w/dir2file/x.txt && printf 'y\\n' > /w/dir2link/y.txt \\\n"
        " && ln -s keep.txt /w/link2file\n"
        "RUN rm /w/gone.txt /w/back.txt \\\n"
        " && rm -rf /w/tree \\\n"
        " && rm -rf /w/opaque && mkdir /w/opaque && printf 'new\\n' > /w/opaque/new.txt \\\n"
        " && rm /w/file2dir && mkdir /w/file2dir && printf 'inside\\n' > /w/file2dir/inside.txt \\\n"
        " && rm -rf /w/dir2file && printf 'now a file\\n' > /w/dir2file \\\n"
        " && rm -rf /w/dir2link && ln -s keep.txt /w/dir2link \\\n"
        " && rm /w/link2file && printf 'link became file\\n' > /w/link2file\n"
        "RUN printf 'back v2\\n' > /w/back.txt\n"
    ),
    # Layer 2: orig.txt with hardlinks hard1 and sub/hard2, and a separate pair. Layer 3: a hardlink to
    # orig.txt made in a later layer (cross). Layer 4: orig.txt replaced by rename, so the other names keep
    # the old content.
    "links": BASE_CONTAINERFILE
    + (
        "RUN mkdir -p /l/sub \\\n"
        " && printf 'original\\n' > /l/orig.txt \\\n"
        " && ln /l/orig.txt /l/hard1 && ln /l/orig.txt /l/sub/hard2 \\\n"
        " && printf 'pair\\n' > /l/pair-a && ln /l/pair-a /l/pair-b\n"
        "RUN ln /l/orig.txt /l/cross\n"
        "RUN printf 'replaced\\n' > /l/orig.txt.new && mv /l/orig.txt.new /l/orig.txt\n"
    ),
    # Layer 2 creates /m; layers 3-5 change only mode, only owner, only mtime; layer 6 sets special bits,
    # owners and a fixed directory mtime; layer 7 copies a file carrying user.* xattrs.
    "metadata": BASE_CONTAINERFILE
    + (
        "RUN mkdir -p /m/dir /m/sticky /m/sgiddir \\\n"
        " && printf 'mode\\n' > /m/chmod.txt \\\n"
        " && printf 'owner\\n' > /m/chown.txt \\\n"
        " && printf 'time\\n' > /m/touch.txt \\\n"
        " && printf 'suid\\n' > /m/suid && printf 'sgid\\n' > /m/sgid \\\n"
        " && ln -s chown.txt /m/link \\\n"
        " && mkfifo /m/fifo\n"
        "RUN chmod 0640 /m/chmod.txt\n"
        "RUN chown 1234:5678 /m/chown.txt\n"
        f"RUN touch -d {_FIXED} /m/touch.txt\n"
        "RUN chmod 4755 /m/suid && chmod 2755 /m/sgid && chmod 1777 /m/sticky \\\n"
        " && chown 1234:5678 /m/sgiddir && chmod 2775 /m/sgiddir \\\n"
        " && chown -h 4321:8765 /m/link \\\n"
        " && printf 'fixed\\n' > /m/dir/fixed.txt \\\n"
        f" && touch -d {_FIXED} /m/dir/fixed.txt /m/dir\n"
        "COPY xattr.txt /m/xattr.txt\n"
    ),
    # Layer 2: long, deep, unicode, space-containing and non-UTF-8 names.
    "names": BASE_CONTAINERFILE
    + (
        f"RUN mkdir -p '/n/{_DEEP_DIRS}' '/n/dir with spaces' /n/日本語 \\\n"
        f" && printf 'long\\n' > '/n/{_LONG_NAME}' \\\n"
        f" && printf 'deep\\n' > '/n/{_DEEP_DIRS}/{'d' * 100}.txt' \\\n"
        " && printf 'cafe\\n' > /n/café.txt \\\n"
        " && printf 'nihongo\\n' > /n/日本語/ファイル.txt \\\n"
        " && printf 'emoji\\n' > '/n/😀 smile.txt' \\\n"
        " && printf 'spaces\\n' > '/n/dir with spaces/ leading and trailing ' \\\n"
        " && printf 'latin1\\n' > \"/n/$(printf 'latin1-caf\\351.txt')\" \\\n"
        f" && ln -s '{_LONG_NAME}' /n/link-to-long\n"
    ),
    # Layers 2-23: counter.txt rewritten 22 times ("round 1".."round 22"); extra.txt added in layer 9
    # (round 8) and removed in layer 16 (round 15).
    "rewrite20": _rewrite20(),
    # A known history for which-layer questions (layer indexes count diff_ids, base layers are 0 and 1):
    # 2 adds /app/config.txt "v1", 3 rewrites it "v2", (ENV: empty layer), 4 chmods it 0600, 5 deletes it,
    # 6 re-adds it "v3" (0644), 7 makes /app/cache opaque, 8 replaces the file /app/thing by a directory.
    "history": BASE_CONTAINERFILE
    + (
        "RUN mkdir -p /app/cache/old && printf 'v1\\n' > /app/config.txt \\\n"
        " && printf 'x\\n' > /app/cache/old/x.txt && printf 'keep\\n' > /app/cache/keep.txt \\\n"
        " && printf 'thing\\n' > /app/thing\n"
        "RUN printf 'v2\\n' > /app/config.txt\n"
        "ENV APP_MODE=test\n"
        "RUN chmod 0600 /app/config.txt\n"
        "RUN rm /app/config.txt\n"
        "RUN printf 'v3\\n' > /app/config.txt\n"
        "RUN rm -rf /app/cache && mkdir /app/cache && printf 'fresh\\n' > /app/cache/new.txt\n"
        "RUN rm /app/thing && mkdir /app/thing && printf 'inner\\n' > /app/thing/inner.txt\n"
    ),
}
"""Name -> Containerfile text. Build contexts add ``busybox`` and the image's :data:`STANDARD_FILES`."""

STANDARD_FILES: Final[dict[str, dict[str, bytes | ContextFile]]] = {
    "basic": {"blob.bin": ContextFile(incompressible(64 * 1024, b"imgtool basic blob"))},
    "metadata": {
        "xattr.txt": ContextFile(
            b"with xattrs\n",
            mode=0o640,
            xattrs={"user.imgtool.text": b"hello", "user.imgtool.binary": b"\x00\x01\xfe\xff"},
        )
    },
}
"""Extra build-context files for some standard images (mtime :data:`FIXED_MTIME` unless stated)."""


# --------------------------------------------------------------------------------------------------------
# Builder


@dataclass(frozen=True)
class PlatformIndex:
    """A two-platform OCI index pushed with ``buildah manifest push --all``.

    The index.json of both layouts points at the index blob (a nested index), as buildah writes it.
    """

    oci_ref: str
    """``oci:DIR:TAG``."""
    oci_archive_ref: str
    """``oci-archive:FILE:TAG``."""
    platforms: tuple[str, ...]
    """("linux/amd64", "linux/arm64")."""
    files: Mapping[str, Mapping[str, bytes]]
    """platform -> {path in image: content}; ``/platform.txt`` differs, ``/shared.txt`` is common."""
    image_refs: Mapping[str, str]
    """platform -> containers-storage reference of the single-platform image."""


class Builder:
    """Builds images with buildah in private storage and exports them with skopeo.

    All commands run with a private ``CONTAINERS_STORAGE_CONF``, ``CONTAINERS_REGISTRIES_CONF``,
    ``CONTAINERS_CONF``, signature policy and ``TMPDIR``. When ``unshare`` works (as root) every command also
    runs in a private mount namespace in which ``/var/lib/containers`` and ``/var/tmp`` are replaced by
    private directories: containers/image writes a blob-info cache to the first, which no option moves.
    """

    def __init__(self, workdir: str | Path, *, storage_driver: str = "vfs") -> None:
        busybox = find_static_busybox()
        if busybox is None:
            raise RuntimeError("a statically linked busybox is needed on PATH (install busybox-static)")
        self.busybox = busybox
        self.workdir = Path(workdir).resolve()
        if ":" in str(self.workdir):
            raise ValueError(f"skopeo references cannot hold a path with ':' ({self.workdir})")
        self.storage_driver = storage_driver
        self.storage = self.workdir / "storage"
        self.root = self.storage / "root"
        self.runroot = self.storage / "runroot"
        self.config_dir = self.workdir / "config"
        self.tmpdir = self.workdir / "tmp"
        self.shadow_dir = self.workdir / "shadow"
        for path in (self.root, self.runroot, self.config_dir, self.tmpdir, self.shadow_dir):
            path.mkdir(parents=True, exist_ok=True)
        self.policy = self.config_dir / "policy.json"
        self.policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')
        storage_conf = self.config_dir / "storage.conf"
        storage_conf.write_text(
            f'[storage]\ndriver = "{storage_driver}"\ngraphroot = "{self.root}"\nrunroot = "{self.runroot}"\n'
        )
        registries_conf = self.config_dir / "registries.conf"
        registries_conf.write_text('unqualified-search-registries = []\nshort-name-mode = "permissive"\n')
        containers_conf = self.config_dir / "containers.conf"
        containers_conf.write_text(f'[engine]\nimage_copy_tmp_dir = "{self.tmpdir}"\n')
        auth_file = self.config_dir / "auth.json"
        auth_file.write_text('{"auths": {}}\n')
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("CONTAINERS_", "BUILDAH_", "STORAGE_", "REGISTRIES_", "REGISTRY_AUTH"))
        }
        env.update(
            CONTAINERS_STORAGE_CONF=str(storage_conf),
            CONTAINERS_REGISTRIES_CONF=str(registries_conf),
            REGISTRIES_CONFIG_PATH=str(registries_conf),
            CONTAINERS_CONF=str(containers_conf),
            REGISTRY_AUTH_FILE=str(auth_file),
            BUILDAH_ISOLATION="chroot",
            BUILDAH_LAYERS="true",
            STORAGE_DRIVER=storage_driver,
            TMPDIR=str(self.tmpdir),
            TZ="UTC",
        )
        self.env: dict[str, str] = env
        self.storage_prefix = f"containers-storage:[{storage_driver}@{self.root}+{self.runroot}]"
        self._namespace_prefix = self._probe_mount_namespace()
        self._image_ids: dict[str, str] = {}
        self._counter = 0
        self._standard: dict[str, BuiltImage] = {}
        self._platform_index: PlatformIndex | None = None

    # -- running -------------------------------------------------------------------------------------------

    def _probe_mount_namespace(self) -> list[str]:
        if os.geteuid() != 0 or missing_tools("unshare", "mount"):
            return []
        # containers/image keeps a blob-info cache under /var/lib/containers and stages big files in
        # /var/tmp: both are replaced by private directories inside the namespace.
        varlib = "/var/lib/containers" if os.path.isdir("/var/lib/containers") else "/var/lib"
        binds = [(self.shadow_dir / "var-lib-containers", varlib)]
        if os.path.isdir("/var/tmp"):
            binds.append((self.shadow_dir / "var-tmp", "/var/tmp"))
        script: list[str] = []
        args: list[str] = []
        for index, (source, target) in enumerate(binds):
            source.mkdir(parents=True, exist_ok=True)
            script.append(f'mount --bind "${2 * index + 1}" "${2 * index + 2}"')
            args += [str(source), target]
        prefix = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            " && ".join([*script, f"shift {len(args)}", 'exec "$@"']),
            "sh",
            *args,
        ]
        try:
            _run(["true"], env=self.env, prefix=prefix)
        except (ToolError, OSError):
            return []
        return prefix

    @property
    def isolates_host_cache(self) -> bool:
        """Whether commands run in a mount namespace hiding the host's /var/lib/containers and /var/tmp."""
        return bool(self._namespace_prefix)

    def run(self, *argv: str, cwd: Path | None = None) -> str:
        """Run a tool with this builder's environment (and mount namespace); returns its stdout."""
        return _run(argv, env=self.env, cwd=cwd, prefix=self._namespace_prefix)

    def buildah(self, *args: str) -> str:
        """``buildah --root R --runroot RR --storage-driver D ARGS...``."""
        return self.run(
            "buildah",
            "--root",
            str(self.root),
            "--runroot",
            str(self.runroot),
            "--storage-driver",
            self.storage_driver,
            *args,
        )

    def skopeo(self, *args: str) -> str:
        """``skopeo --policy P --tmpdir T ARGS...``."""
        return self.run("skopeo", "--policy", str(self.policy), "--tmpdir", str(self.tmpdir), *args)

    def inspect_raw(self, ref: str) -> dict[str, Any]:
        """:func:`skopeo_inspect_raw` in this builder's environment (needed for containers-storage refs)."""
        return _parse_json_object(self.skopeo("inspect", "--raw", ref), ref)

    def inspect_config(self, ref: str) -> dict[str, Any]:
        """:func:`skopeo_inspect_config` in this builder's environment."""
        return _parse_json_object(self.skopeo("inspect", "--config", ref), ref)

    def _scratch(self, label: str) -> Path:
        self._counter += 1
        path = self.workdir / "scratch" / f"{self._counter:04d}-{label}"
        path.mkdir(parents=True)
        return path

    # -- building ------------------------------------------------------------------------------------------

    def build(
        self,
        name: str,
        containerfile: str,
        files: Mapping[str, bytes | ContextFile] | None = None,
        platform: str | None = None,
    ) -> str:
        """Build ``containerfile`` as ``localhost/NAME:latest``; returns its containers-storage reference.

        The context holds ``busybox`` (static, mode 0755, mtime :data:`FIXED_MTIME`) and ``files``
        (context-relative path -> bytes or :class:`ContextFile`). Each instruction is its own layer
        (``--layers``); identical instruction prefixes reuse cached layers.
        """
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"image name {name!r} must match {_NAME_RE.pattern}")
        context = self._scratch(f"context-{name}")
        _write_context_file(context / "busybox", ContextFile(self.busybox.read_bytes(), mode=0o755))
        for rel, spec in (files or {}).items():
            if rel == "busybox" or rel.startswith("/") or ".." in Path(rel).parts:
                raise ValueError(f"bad context file name {rel!r}")
            _write_context_file(context / rel, spec)
        containerfile_path = context / "Containerfile"
        containerfile_path.write_text(containerfile, encoding="utf-8")
        iidfile = context.parent / f"{context.name}.iid"
        args = [
            "bud",
            "--isolation",
            "chroot",
            "--layers",
            "--pull=never",
            "--signature-policy",
            str(self.policy),
            "--iidfile",
            str(iidfile),
            "-f",
            str(containerfile_path),
            "-t",
            f"localhost/{name}:latest",
        ]
        if platform is not None:
            args += ["--platform", platform]
        try:
            self.buildah(*args, str(context))
        except ToolError as exc:
            # buildah's chroot isolation runs a sealed memfd copy of itself; sealing it fails now and
            # then with EBUSY while another process still maps the copy. That is the tool's transient
            # fault, not the build's: the same build is run once more (with --layers, from cache).
            if "sealing memfd copy: Device or resource busy" not in exc.stderr:
                raise
            self.buildah(*args, str(context))
        ref = f"{self.storage_prefix}localhost/{name}:latest"
        self._image_ids[ref] = iidfile.read_text().strip().removeprefix("sha256:")
        return ref

    def image_id(self, ref: str) -> str:
        """The image ID (config digest hex) of a reference returned by :meth:`build`."""
        return self._image_ids[ref]

    # -- exporting -----------------------------------------------------------------------------------------

    def export(
        self,
        ref: str,
        fmt: ExportFormat,
        dest: str | Path,
        compression: Compression | None = None,
        *,
        tag: str = "latest",
    ) -> str:
        """Copy ``ref`` to ``dest`` in ``fmt``; returns the skopeo reference of the copy.

        OCI formats default to gzip layers; ``zstd`` and ``none`` (uncompressed, media type ``...tar``)
        are available. docker-archive always has uncompressed layers (only ``none``/None accepted); its
        RepoTag is ``tag`` when that contains ':' or '/', else ``localhost/<name>:<tag>``.
        Returns ``oci:DIR:TAG``, ``oci-archive:FILE:TAG`` or ``docker-archive:FILE``.
        """
        dest = Path(dest).resolve()
        if ":" in str(dest):
            raise ValueError(f"skopeo references cannot hold a path with ':' ({dest})")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "docker-archive":
            if compression not in (None, "none"):
                raise ValueError("docker-archive layers are always uncompressed")
            self.skopeo("copy", "-q", ref, f"docker-archive:{dest}:{self._docker_tag(ref, tag)}")
            return f"docker-archive:{dest}"
        if fmt not in ("oci", "oci-archive"):
            raise ValueError(f"unknown export format {fmt!r}")
        target = f"{fmt}:{dest}:{tag}"
        compression = compression or "gzip"
        if compression == "none":
            staging = self._scratch("uncompressed")
            dir_ref = f"dir:{staging / 'image'}"
            self.skopeo("copy", "-q", "--format", "oci", "--dest-decompress", ref, dir_ref)
            self.skopeo("copy", "-q", "--dest-oci-accept-uncompressed-layers", dir_ref, target)
            shutil.rmtree(staging)
        elif compression in ("gzip", "zstd"):
            self.skopeo("copy", "-q", "--format", "oci", "--dest-compress-format", compression, ref, target)
        else:
            raise ValueError(f"unknown compression {compression!r}")
        return target

    @staticmethod
    def _docker_tag(ref: str, tag: str) -> str:
        if ":" in tag or "/" in tag:
            return tag
        name = ref.rsplit("]", 1)[-1].rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
        return f"localhost/{name}:{tag}"

    def export_mislabeled_uncompressed_oci(self, ref: str, dest: str | Path, *, tag: str = "latest") -> str:
        """An OCI layout whose layers are uncompressed but labelled ``tar+gzip``; returns ``oci:DIR:TAG``.

        This is what skopeo 1.9.3 writes for ``--dest-oci-accept-uncompressed-layers`` from a docker-archive
        source: a real-world mislabelled image (umoci rejects it: "gzip: invalid header").
        """
        dest = Path(dest).resolve()
        staging = self._scratch("mislabeled")
        archive = self.export(ref, "docker-archive", staging / "image.tar")
        target = f"oci:{dest}:{tag}"
        self.skopeo("copy", "-q", "--dest-oci-accept-uncompressed-layers", archive, target)
        shutil.rmtree(staging)
        return target

    def export_multi_tag_archive(
        self, refs_with_tags: Sequence[tuple[str, str]], dest: str | Path
    ) -> list[str]:
        """A docker-archive holding every (reference, RepoTag) pair; returns ``docker-archive:FILE:TAG`` each.

        Tags are full names such as ``localhost/one:v1``. Tags of one image share its manifest entry
        (``skopeo copy --additional-tag``); distinct images are written one per archive and merged with
        :func:`merge_docker_archives`, since skopeo 1.9 writes only one image per docker-archive.
        """
        if not refs_with_tags:
            raise ValueError("no images")
        dest = Path(dest).resolve()
        dest.parent.mkdir(parents=True, exist_ok=True)
        by_image: dict[str, list[tuple[str, str]]] = {}
        for ref, tag in refs_with_tags:
            if ":" not in tag.rsplit("/", 1)[-1]:
                raise ValueError(f"docker-archive tag {tag!r} must be NAME:TAG")
            by_image.setdefault(self._image_ids.get(ref, ref), []).append((ref, tag))
        groups = list(by_image.values())
        staging = self._scratch("multi-archive")
        parts: list[Path] = []
        for index, group in enumerate(groups):
            part = dest if len(groups) == 1 else staging / f"part{index}.tar"
            extra: list[str] = []
            for _ref, tag in group[1:]:
                extra += ["--additional-tag", tag]
            self.skopeo("copy", "-q", *extra, group[0][0], f"docker-archive:{part}:{group[0][1]}")
            parts.append(part)
        if len(groups) > 1:
            merge_docker_archives(parts, dest)
        shutil.rmtree(staging)
        return [f"docker-archive:{dest}:{tag}" for _ref, tag in refs_with_tags]

    def export_multi_ref_oci(
        self, refs_with_tags: Sequence[tuple[str, str]], dest: str | Path, compression: Compression = "gzip"
    ) -> list[str]:
        """One OCI layout with a ``org.opencontainers.image.ref.name`` per pair; returns each ``oci:DIR:TAG``.

        Each pair is a separate ``skopeo copy`` into the same layout, which adds to its index.json.
        """
        return [self.export(ref, "oci", dest, compression, tag=tag) for ref, tag in refs_with_tags]

    # -- standard images and the platform index -----------------------------------------------------------

    def standard_image(self, name: str) -> BuiltImage:
        """The :data:`STANDARD_IMAGES` image ``name``, built on first use and cached on this builder."""
        image = self._standard.get(name)
        if image is None:
            if name not in STANDARD_IMAGES:
                raise KeyError(f"unknown standard image {name!r}; known: {sorted(STANDARD_IMAGES)}")
            ref = self.build(name, STANDARD_IMAGES[name], STANDARD_FILES.get(name))
            image = BuiltImage(self, name, ref)
            self._standard[name] = image
        return image

    def platform_index(self) -> PlatformIndex:
        """A linux/amd64 + linux/arm64 index (COPY-only images, nothing runs), built once per builder."""
        if self._platform_index is not None:
            return self._platform_index
        platforms = ("linux/amd64", "linux/arm64")
        containerfile = "FROM scratch\nCOPY platform.txt /platform.txt\nCOPY shared.txt /shared.txt\n"
        files: dict[str, dict[str, bytes]] = {}
        image_refs: dict[str, str] = {}
        for platform in platforms:
            content = {"platform.txt": f"{platform}\n".encode(), "shared.txt": b"same on every platform\n"}
            name = "platform-" + platform.split("/")[1]
            ref = self.build(name, containerfile, dict(content), platform=platform)
            image_refs[platform] = ref
            files[platform] = {"/" + path: data for path, data in content.items()}
        list_name = "localhost/platform-index:latest"
        self.buildah("manifest", "create", list_name)
        for platform in platforms:
            self.buildah("manifest", "add", list_name, self.image_id(image_refs[platform]))
        out = self.workdir / "exports" / "platform-index"
        out.mkdir(parents=True, exist_ok=True)
        oci_ref = f"oci:{out / 'oci'}:index"
        archive_ref = f"oci-archive:{out / 'index-oci.tar'}:index"
        for target in (oci_ref, archive_ref):
            self.buildah(
                "manifest",
                "push",
                "-q",
                "--all",
                "--format",
                "oci",
                "--signature-policy",
                str(self.policy),
                list_name,
                target,
            )
        self._platform_index = PlatformIndex(oci_ref, archive_ref, platforms, files, image_refs)
        return self._platform_index

    def close(self) -> None:
        """Delete the image storage (exports stay in ``workdir`` for inspection)."""
        shutil.rmtree(self.storage, ignore_errors=True)
        shutil.rmtree(self.workdir / "scratch", ignore_errors=True)


class BuiltImage:
    """A built image with cached exports; every export and the umoci rootfs are made at most once."""

    def __init__(self, builder: Builder, name: str, ref: str) -> None:
        self.builder = builder
        self.name = name
        self.ref = ref
        """containers-storage reference."""
        self._exports: dict[tuple[str, str], str] = {}
        self._rootfs: Path | None = None

    def __repr__(self) -> str:
        return f"BuiltImage({self.name!r})"

    def export(self, fmt: ExportFormat, compression: Compression | None = None) -> str:
        """Skopeo reference of this image in ``fmt``/``compression`` (see :meth:`Builder.export`)."""
        effective = compression or ("none" if fmt == "docker-archive" else "gzip")
        key = (fmt, effective)
        ref = self._exports.get(key)
        if ref is None:
            suffix = "" if fmt == "oci" else ".tar"
            dest = self.builder.workdir / "exports" / self.name / f"{fmt}-{effective}{suffix}"
            ref = self.builder.export(self.ref, fmt, dest, effective)
            self._exports[key] = ref
        return ref

    @property
    def oci_gzip_dir(self) -> Path:
        """The gzip OCI layout directory (tag ``latest``)."""
        return Path(self.export("oci", "gzip").split(":")[1])

    def reference_rootfs(self) -> Path:
        """umoci's unpack of the gzip OCI copy; shared by all tests, so never modify it."""
        if self._rootfs is None:
            dest = self.builder.workdir / "rootfs" / self.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            self._rootfs = umoci_unpack(self.oci_gzip_dir, "latest", dest)
        return self._rootfs

    def config(self) -> dict[str, Any]:
        """The image configuration (diff_ids, history, ...)."""
        return self.builder.inspect_config(self.export("oci", "gzip"))

    def manifest(self) -> dict[str, Any]:
        """The OCI manifest of the gzip OCI copy."""
        return self.builder.inspect_raw(self.export("oci", "gzip"))


# --------------------------------------------------------------------------------------------------------
# Fixtures


class StandardImageFactory(Protocol):
    def __call__(self, name: str) -> BuiltImage: ...


def _unavailable(problem: str) -> None:
    if _in_ci():
        pytest.fail(f"real-tool tests cannot run under CI: {problem}")
    pytest.skip(problem)


_shared_builders: dict[str, tuple[Builder, int]] = {}


def _acquire_builder(tmp_path_factory: pytest.TempPathFactory, storage_driver: str) -> Builder:
    """The process-wide builder for ``storage_driver``, created on first use.

    These fixtures may be imported into several modules (a conftest and a test file); every copy shares one
    builder, so images are built once per session however the fixtures are wired.
    """
    entry = _shared_builders.get(storage_driver)
    if entry is not None:
        _shared_builders[storage_driver] = (entry[0], entry[1] + 1)
        return entry[0]
    problem = realtools_problem()
    if problem is not None:
        _unavailable(problem)
    instance = Builder(tmp_path_factory.mktemp(f"realtools-{storage_driver}"), storage_driver=storage_driver)
    if storage_driver != "vfs":
        try:
            instance.build(f"{storage_driver}-probe", "FROM scratch\nCOPY busybox /bin/busybox\n")
        except ToolError as exc:
            instance.close()
            _unavailable(f"the {storage_driver} storage driver does not work here: {exc}")
    _shared_builders[storage_driver] = (instance, 1)
    return instance


def _release_builder(storage_driver: str) -> None:
    instance, users = _shared_builders[storage_driver]
    if users > 1:
        _shared_builders[storage_driver] = (instance, users - 1)
        return
    del _shared_builders[storage_driver]
    instance.close()


@pytest.fixture(scope="session")
def builder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Builder]:
    """A vfs :class:`Builder` for the whole session (skips, or fails under CI, without the tools)."""
    instance = _acquire_builder(tmp_path_factory, "vfs")
    yield instance
    _release_builder("vfs")


@pytest.fixture(scope="session")
def overlay_builder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Builder]:
    """A :class:`Builder` on the overlay driver, whose layer diffs mark recreated directories opaque
    (``.wh..wh..opq``) where vfs writes one whiteout per removed child."""
    instance = _acquire_builder(tmp_path_factory, "overlay")
    yield instance
    _release_builder("overlay")


@pytest.fixture(scope="session")
def standard_image(builder: Builder) -> StandardImageFactory:
    """``standard_image(name)``: the cached :class:`BuiltImage` of ``STANDARD_IMAGES[name]``."""
    return builder.standard_image


@pytest.fixture(scope="session")
def platform_index(builder: Builder) -> PlatformIndex:
    """The two-platform index of :meth:`Builder.platform_index`."""
    return builder.platform_index()
