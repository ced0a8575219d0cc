"""The hostile and broken inputs, as a table: how each one is built, and what every command must do with it.

Each :class:`Case` builds its layers with ``tests.helpers.imagefactory`` (in the test, never from stored
files) and is put inside an otherwise valid image, both as a legacy ``docker save`` tarball and as a gzip
OCI layout.
Its expected outcome is either a confined tree (exact paths, types, contents and link targets) or a named
error (exit code and a regex the single ``imgtool: error:`` line must match), per command where commands
differ.

Escapes aim at the *sentinel*: a directory beside the output that stands in for the host. An absolute
target or name uses the sentinel's absolute path (``$S`` below, ``Env.s`` in code), and ``../sentinel``
climbs from the output root to it; so an extractor that followed a link or a ``..`` on the host would
change the sentinel, and nothing outside the test's temporary directory is ever at risk.

The table also records what umoci 0.4.7 (``umoci raw unpack``) and GNU tar 1.34 (``tar -xf`` of each layer
blob in turn, as a naive extractor would) do with the same input; ``test_peers.py`` runs them and checks
the record, and ``docs/hostile-inputs.md`` shows it (``python -m tests.hostile.cases`` prints the table).
"""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

from tests.helpers.imagefactory import (
    MISSING,
    OCI_MANIFEST,
    REF_NAME,
    TAMPERED,
    BlockDev,
    CharDev,
    Dir,
    Entry,
    EntryLike,
    ExactTarInfo,
    Fifo,
    File,
    Hardlink,
    ImageSpec,
    IndexSpec,
    Layer,
    LoopTo,
    Member,
    Opaque,
    OverlayOpaque,
    OverlayWhiteout,
    Raw,
    RawDescriptor,
    Symlink,
    TarFormat,
    Whiteout,
    as_str,
    incompressible,
    make_layer,
    sha256_digest,
    write_docker_archive,
    write_oci_layout,
)

Format: TypeAlias = Literal["docker", "oci"]
Command: TypeAlias = Literal[
    "inspect",
    "verify",
    "flatten-dir",
    "flatten-tar",
    "flatten-stdout",
    "which-layer",
    "ls",
    "cat",
    "diff",
    "squash",
]
Stage: TypeAlias = Literal["open", "blob", "layer"]
PeerResult: TypeAlias = Literal["confines", "refuses", "writes outside", "n/a", "not run"]
PathT: TypeAlias = str | bytes

FORMATS: Final[tuple[Format, ...]] = ("docker", "oci")
COMMANDS: Final[tuple[Command, ...]] = (
    "inspect",
    "verify",
    "flatten-dir",
    "flatten-tar",
    "flatten-stdout",
    "which-layer",
    "ls",
    "cat",
    "diff",
    "squash",
)
SENTINEL_NAME: Final = "sentinel"
TAG: Final = "hostile:1"
OCI_REF: Final = "v1"
PWNED: Final = b"written by the image\n"
SECRET: Final = b"host secret: never to be read through the image\n"
LAYER_RE: Final = r"layer {n} \(sha256:[0-9a-f]{{64}}\)"


def layer_re(n: int) -> str:
    """The regex for how imgtool names layer ``n`` in a message."""
    return LAYER_RE.format(n=n)


@dataclass(frozen=True)
class Env:
    """Where a case's escapes aim: the sentinel directory beside the output (an absolute path)."""

    sentinel: str

    @property
    def s(self) -> str:
        """The sentinel's absolute path without its leading slash: ``/$S`` names the sentinel on the host."""
        return self.sentinel.lstrip("/")

    @property
    def up(self) -> str:
        """From the output root (or its staging sibling) up to the sentinel."""
        return f"../{SENTINEL_NAME}"


# -- expected trees -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Want:
    """One path of an expected tree: its type, and its content, link target or device numbers."""

    kind: str  # file, dir, symlink, char, block, fifo
    data: bytes | None = None
    link: bytes | None = None
    rdev: tuple[int, int] | None = None

    def key(self) -> tuple[str, str | None, bytes | None, tuple[int, int] | None]:
        digest = hashlib.sha256(self.data).hexdigest() if self.data is not None else None
        return (self.kind, digest, self.link, self.rdev)


def F(data: bytes = b"") -> Want:
    return Want("file", data=data)


def D() -> Want:
    return Want("dir")


def Sym(target: PathT) -> Want:
    return Want("symlink", link=os.fsencode(target))


def Chr(major: int, minor: int) -> Want:
    return Want("char", rdev=(major, minor))


def Blk(major: int, minor: int) -> Want:
    return Want("block", rdev=(major, minor))


def Pipe() -> Want:
    return Want("fifo")


TreeSpec: TypeAlias = Mapping[PathT, Want]


def full_tree(spec: TreeSpec) -> dict[bytes, Want]:
    """The spec with every ancestor directory added (the root ``b""`` is left out)."""
    tree = {os.fsencode(path).strip(b"/"): want for path, want in spec.items()}
    for path in list(tree):
        parts = path.split(b"/")
        for depth in range(1, len(parts)):
            parent = b"/".join(parts[:depth])
            found = tree.setdefault(parent, D())
            if found.kind != "dir":
                raise ValueError(f"expected tree: {path!r} lies below {parent!r}, which is a {found.kind}")
    return tree


# -- outcomes -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Confined:
    """Every command succeeds; flatten writes exactly ``tree`` (plus its parent directories).

    ``links`` lists groups of paths that must share one inode. ``warning``: a regex every
    ``imgtool: warning:`` line must match (None: no warning may be printed).
    """

    tree: Callable[[Env], TreeSpec]
    links: Callable[[Env], Sequence[Sequence[PathT]]] = lambda _env: ()
    warning: str | None = None


@dataclass(frozen=True)
class Refused:
    """The command prints one ``imgtool: error:`` line matching ``pattern`` (``$S``: the sentinel path) and
    exits with ``code``.

    ``stage`` says which commands see the fault: ``open`` every command (it is in the JSON or archive);
    ``blob`` every command that reads layer blobs (``inspect`` does not; ``verify`` reports the layer with
    status ``verify`` in its table and exits 1); ``layer`` every command that reads the tar entries
    (``inspect`` and ``verify`` succeed).
    """

    pattern: str
    stage: Stage = "layer"
    code: int = 1
    verify: str | None = None

    def regex(self, env: Env) -> str:
        return self.pattern.replace("$S", re.escape(env.s))


@dataclass(frozen=True)
class Passes:
    """inspect or verify: the command succeeds, the fault lies where it does not look."""


@dataclass(frozen=True)
class VerifyFinds:
    """verify exits 1 with no error line; its table reports a layer with this status."""

    status: str
    pattern: str


Outcome: TypeAlias = Confined | Refused
CommandOutcome: TypeAlias = Confined | Refused | Passes | VerifyFinds


# -- peers --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """What a peer tool does with the same input.

    ``refuses``: exits non-zero and nothing outside changed; ``confines``: exits 0 and nothing outside
    changed; ``writes outside``: the sentinel changed. ``n/a``: the tool never reads what is broken;
    ``not run``: the input would make a naive extractor touch real host paths. ``stderr`` is a regex the
    tool's output must match (checked by test_peers).
    """

    result: PeerResult
    note: str = ""
    stderr: str | None = None

    def text(self) -> str:
        return f"{self.result}: {self.note}" if self.note else self.result


# -- cases --------------------------------------------------------------------------------------------

Layers: TypeAlias = Callable[[Env], Sequence[bytes | Layer]]


@dataclass(frozen=True)
class Case:
    """One hostile or broken input and what every command must do with it.

    ``cat`` is what ``cat IMAGE PROBE`` must print (bytes) or the error it must give; ``which`` whether
    ``which-layer IMAGE PROBE`` finds the path. ``overrides`` replace the expectation for single commands,
    ``formats`` for a whole image format. ``spec`` adds ImageSpec arguments; ``oci_entries`` replaces the
    layout's index entries; the ``docker_*`` hooks are write_docker_archive's.
    """

    name: str
    area: str
    input: str
    imgtool: str
    layers: Layers
    expect: Outcome
    umoci: Peer
    gnutar: Peer
    probe: str = "/a"
    cat: bytes | Refused | None = None
    which: bool = True
    overrides: Mapping[Command, CommandOutcome] = field(default_factory=dict)
    formats: Mapping[Format, Outcome] = field(default_factory=dict)
    spec: Mapping[str, Any] = field(default_factory=dict)
    oci_entries: Callable[[ImageSpec], Sequence[EntryLike]] | None = None
    oci_files: Mapping[str, bytes] | None = None
    docker_manifest: Callable[[list[dict[str, Any]]], None] | None = None
    docker_members: Callable[[list[Member]], list[Member]] | None = None
    needs_root: bool = False

    def expected(self, fmt: Format, command: Command) -> CommandOutcome:
        """The outcome ``command`` must have on this case's image in ``fmt``."""
        if command in self.overrides:
            return self.overrides[command]
        base = self.formats.get(fmt, self.expect)
        if isinstance(base, Refused):
            if base.stage == "open":
                return base
            if command == "inspect":
                return Passes()
            if command == "verify":
                if base.stage == "blob":
                    assert base.verify is not None, f"{self.name}: a blob fault needs verify's status"
                    return VerifyFinds(base.verify, base.pattern)
                return Passes()
            return base
        if command == "cat":
            assert self.cat is not None, f"{self.name}: a confined case says what cat prints"
            return self.cat if isinstance(self.cat, Refused) else base
        return base


def raw(
    name: PathT,
    kind: bytes = tarfile.REGTYPE,
    *,
    data: bytes = b"",
    size: int | None = None,
    linkname: PathT = "",
    pax: Mapping[str, str] | None = None,
    major: int = 0,
    minor: int = 0,
    uid: int = 0,
) -> Raw:
    """A hand-made member: ``size`` defaults to ``len(data)``; ``pax`` records override the header."""
    info = ExactTarInfo(as_str(name))
    info.type = kind
    info.size = len(data) if size is None else size
    info.mode = 0o644
    info.mtime = 1_600_000_000
    info.linkname = as_str(linkname)
    info.devmajor = major
    info.devminor = minor
    info.uid = uid
    info.uname = info.gname = ""
    if pax:
        info.pax_headers = dict(pax)
    return Raw(info, data)


def _sparse_1x0(name: str, regions: Sequence[tuple[int, bytes]], size: int) -> Raw:
    """A member as GNU tar writes a sparse file in PAX format 1.0: the map, then the regions' data."""
    numbers = [len(regions), *(n for start, data in regions for n in (start, len(data)))]
    text = b"".join(b"%d\n" % n for n in numbers)
    data = text + bytes(-len(text) % 512) + b"".join(data for _, data in regions)
    pax = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": name}
    return raw(f"GNUSparseFile.0/{name}", data=data, pax={**pax, "GNU.sparse.realsize": str(size)})


_SPARSE_A: Final = bytes(1000) + b"hello" + bytes(7995) + b"end" + bytes(2997)


def L(*members: Member, fmt: TarFormat = tarfile.PAX_FORMAT) -> bytes:
    return make_layer(members, format=fmt)


def cut_half(blob: bytes) -> bytes:
    return blob[: len(blob) // 2]


def flip_middle(blob: bytes) -> bytes:
    data = bytearray(blob)
    data[len(data) // 2] ^= 0xFF
    return bytes(data)


def flip_byte(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 1
    return bytes(out)


BIG: Final = incompressible(300_000, b"hostile")
CLIMB: Final = "/".join([".."] * 24)  # more levels than any temporary directory is deep

REFUSE_ROOT_REPLACE: Final = "refusing to replace the root directory with a non-directory"
NOT_ROOT = "not run: a naive extractor would write to the host's /"

OK_UMOCI: Final = Peer("confines")
OK_TAR: Final = Peer("confines")
NA_TAR_JSON: Final = Peer("n/a", "reads no manifest, config or index")


def _dup_manifest_json(members: list[Member]) -> list[Member]:
    """Put a second, different manifest.json before the real one (skopeo reads the first, tar the last)."""
    out: list[Member] = []
    for member in members:
        if isinstance(member, File) and member.path == "manifest.json":
            out.append(File("manifest.json", member.data.replace(TAG.encode(), b"other:6")))
        out.append(member)
    return out


def _same_ref_twice(spec: ImageSpec) -> list[EntryLike]:
    other = ImageSpec([L(File("b", b"other image\n"))])
    return [
        Entry(spec, ref=OCI_REF, platform=spec.platform),
        Entry(other, ref=OCI_REF, platform=other.platform),
    ]


def _index_loop(_spec: ImageSpec) -> list[EntryLike]:
    return [Entry(IndexSpec([Entry(LoopTo("top"))], name="top"), ref=OCI_REF)]


NOT_JSON: Final = b"this is not JSON {"


def _manifest_not_json(_spec: ImageSpec) -> list[EntryLike]:
    return [
        RawDescriptor(
            {
                "mediaType": OCI_MANIFEST,
                "digest": sha256_digest(NOT_JSON),
                "size": len(NOT_JSON),
                "annotations": {REF_NAME: OCI_REF},
            },
            blob=NOT_JSON,
        )
    ]


def _member_loop(manifest: list[dict[str, Any]]) -> None:
    manifest[0]["Layers"] = ["loop/layer.tar"]


def _add_member_loop(members: list[Member]) -> list[Member]:
    return [
        *members,
        Symlink("loop/layer.tar", "../loop2/layer.tar"),
        Symlink("loop2/layer.tar", "../loop/layer.tar"),
    ]


def _replace_member(name: str, data: bytes) -> Callable[[list[Member]], list[Member]]:
    def edit(members: list[Member]) -> list[Member]:
        return [File(name, data) if isinstance(m, File) and m.path == name else m for m in members]

    return edit


def _layers_wrong_type(manifest: list[dict[str, Any]]) -> None:
    manifest[0]["Layers"] = {"0": "layer.tar"}


def _manifest_layers_wrong_type(doc: dict[str, Any]) -> None:
    doc["layers"] = {"0": doc["layers"][0]}


def _config_diff_ids_wrong_type(doc: dict[str, Any]) -> None:
    doc["rootfs"]["diff_ids"] = "sha256:" + "0" * 64


def _config_rootfs_wrong_type(doc: dict[str, Any]) -> None:
    doc["rootfs"] = True


def _layer_size(size: int) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        doc["layers"][0]["size"] = size

    return edit


ONE: Final = L(File("a", b"hello\n"))
TERMINAL_ESCAPES: Final = "\x1b[31mred\x1b]0;title\x07\x9bC1\x7fDEL\rCR\bBS"

CASES: Final[tuple[Case, ...]] = (
    # -- names ------------------------------------------------------------------------------------------
    Case(
        name="dotdot-name",
        area="names",
        input="entry `../sentinel/pwned`",
        imgtool="refused (exit 1): `layer 0 (…): entry '../sentinel/pwned': path … escapes the root`",
        layers=lambda env: [L(File("a", b"a"), File(f"{env.up}/pwned", PWNED))],
        expect=Refused(
            layer_re(0) + r": entry '\.\./sentinel/pwned': path '\.\./sentinel/pwned' escapes the root"
        ),
        umoci=Peer("confines", "cleans the name lexically and writes `sentinel/pwned` inside the rootfs"),
        gnutar=Peer("refuses", "skips the member (`Member name contains '..'`), exits 2", r"contains '\.\.'"),
    ),
    Case(
        name="dotdot-inner",
        area="names",
        input="entry `a/../../sentinel/pwned`",
        imgtool="refused (exit 1): `… path 'a/../../sentinel/pwned' escapes the root`",
        layers=lambda env: [L(File(f"a/../{env.up}/pwned", PWNED))],
        expect=Refused(layer_re(0) + r": entry 'a/\.\./\.\./sentinel/pwned': .*escapes the root"),
        umoci=Peer("confines", "cleans the name lexically and writes `sentinel/pwned` inside the rootfs"),
        gnutar=Peer("refuses", "skips the member (`Member name contains '..'`), exits 2", r"contains '\.\.'"),
    ),
    Case(
        name="dotdot-directory",
        area="names",
        input="directory entry `../`, then `../pwned`",
        imgtool="refused (exit 1): `… entry '../': path '../' escapes the root`",
        layers=lambda env: [L(Dir("../"), File("../pwned", PWNED))],
        expect=Refused(layer_re(0) + r": entry '\.\./': path '\.\./' escapes the root"),
        umoci=Peer("confines", "`..` cleans to the root; `pwned` is written inside"),
        gnutar=Peer(
            "refuses", "skips both members (`Member name contains '..'`), exits 2", r"contains '\.\.'"
        ),
    ),
    Case(
        name="canonical-names",
        area="names",
        input="entries `q/../b`, `./c`, `/d`, `e//` (a directory)",
        imgtool="confined: `b`, `c`, `d`, `e/` (names made canonical)",
        layers=lambda env: [L(File("q/../b", b"b"), File("./c", b"c"), File("/d", b"d"), Dir("e//"))],
        expect=Confined(lambda env: {"b": F(b"b"), "c": F(b"c"), "d": F(b"d"), "e": D()}),
        probe="/b",
        cat=b"b",
        umoci=OK_UMOCI,
        gnutar=Peer("refuses", "extracts `q/../b` as `b` but exits 2 (`Member name contains '..'`)"),
    ),
    Case(
        name="absolute-name",
        area="names",
        input="entry `/$S/pwned` (the sentinel's absolute path)",
        imgtool="confined: written as `$S/pwned` inside the output",
        layers=lambda env: [L(File(f"/{env.s}/pwned", PWNED))],
        expect=Confined(lambda env: {f"{env.s}/pwned": F(PWNED)}),
        probe="/$S/pwned",
        cat=PWNED,
        umoci=Peer("confines", "written inside the rootfs"),
        gnutar=Peer("confines", "strips the leading `/`", r"Removing leading"),
    ),
    # -- symlinks ---------------------------------------------------------------------------------------
    Case(
        name="symlink-parent-root",
        area="symlinks",
        input="layer 0: `x -> /`; layer 1: `x/$S/etc/passwd`",
        imgtool="confined: `x -> /` kept verbatim, the file lands at `$S/etc/passwd` inside the output",
        layers=lambda env: [L(Symlink("x", "/")), L(File(f"x/{env.s}/etc/passwd", PWNED))],
        expect=Confined(lambda env: {"x": Sym("/"), f"{env.s}/etc/passwd": F(PWNED)}),
        probe="/x/$S/etc/passwd",
        cat=PWNED,
        umoci=Peer("confines", "resolves `x` inside the rootfs"),
        gnutar=Peer("writes outside", "follows the existing `x` and overwrites the host's file"),
    ),
    Case(
        name="symlink-parent-absolute",
        area="symlinks",
        input="layer 0: `x -> /$S`; layer 1: `x/etc/passwd`",
        imgtool="confined: the file lands at `$S/etc/passwd` inside the output",
        layers=lambda env: [L(Symlink("x", f"/{env.s}")), L(File("x/etc/passwd", PWNED))],
        expect=Confined(lambda env: {"x": Sym(f"/{env.s}"), f"{env.s}/etc/passwd": F(PWNED)}),
        probe="/x/etc/passwd",
        cat=PWNED,
        umoci=Peer("confines", "resolves `x` inside the rootfs"),
        gnutar=Peer("writes outside", "follows the existing `x` and overwrites the host's file"),
    ),
    Case(
        name="symlink-parent-climb",
        area="symlinks",
        input="layer 0: `x -> ../../..` (24 levels); layer 1: `x/$S/etc/passwd`",
        imgtool="confined: `..` stops at the root, the file lands at `$S/etc/passwd` inside the output",
        layers=lambda env: [L(Symlink("x", CLIMB)), L(File(f"x/{env.s}/etc/passwd", PWNED))],
        expect=Confined(lambda env: {"x": Sym(CLIMB), f"{env.s}/etc/passwd": F(PWNED)}),
        probe="/x/$S/etc/passwd",
        cat=PWNED,
        umoci=Peer("confines", "resolves `x` inside the rootfs"),
        gnutar=Peer("writes outside", "follows the existing `x` and overwrites the host's file"),
    ),
    Case(
        name="symlink-parent-sibling",
        area="symlinks",
        input="layer 0: `x -> ../sentinel`; layer 1: `x/etc/passwd`",
        imgtool="confined: the file lands at `sentinel/etc/passwd` inside the output",
        layers=lambda env: [L(Symlink("x", env.up)), L(File("x/etc/passwd", PWNED))],
        expect=Confined(lambda env: {"x": Sym(env.up), "sentinel/etc/passwd": F(PWNED)}),
        probe="/x/etc/passwd",
        cat=PWNED,
        umoci=Peer("confines", "resolves `x` inside the rootfs"),
        gnutar=Peer("writes outside", "follows the existing `x` and overwrites the host's file"),
    ),
    Case(
        name="symlink-parent-same-layer",
        area="symlinks",
        input="one layer: `x -> /$S`, then `x/etc/passwd`",
        imgtool="confined: the file lands at `$S/etc/passwd` inside the output",
        layers=lambda env: [L(Symlink("x", f"/{env.s}"), File("x/etc/passwd", PWNED))],
        expect=Confined(lambda env: {"x": Sym(f"/{env.s}"), f"{env.s}/etc/passwd": F(PWNED)}),
        probe="/x/etc/passwd",
        cat=PWNED,
        umoci=Peer("confines", "resolves `x` inside the rootfs"),
        gnutar=Peer(
            "refuses",
            "keeps `x` as a placeholder until the end, so `x/etc/passwd` fails (`Not a directory`), exits 2",
            r"Not a directory",
        ),
    ),
    Case(
        name="symlink-chain",
        area="symlinks",
        input="layer 0: `a -> b`, `b -> ./c`, `c -> ../../(24 levels)/$S`; layer 1: `a/etc/passwd`",
        imgtool="confined: resolved hop by hop inside the image to `$S/etc/passwd`",
        layers=lambda env: [
            L(Symlink("a", "b"), Symlink("b", "./c"), Symlink("c", f"{CLIMB}/{env.s}")),
            L(File("a/etc/passwd", PWNED)),
        ],
        expect=Confined(
            lambda env: {
                "a": Sym("b"),
                "b": Sym("./c"),
                "c": Sym(f"{CLIMB}/{env.s}"),
                f"{env.s}/etc/passwd": F(PWNED),
            }
        ),
        probe="/a/etc/passwd",
        cat=PWNED,
        umoci=Peer("confines", "resolves the chain inside the rootfs"),
        gnutar=Peer("writes outside", "follows the chain on the host and overwrites the host's file"),
    ),
    Case(
        name="symlink-loop",
        area="symlinks",
        input="`a -> b`, `b -> a` (nothing below them)",
        imgtool="confined: both links written verbatim; `cat /a` fails: `too many levels of symbolic links`",
        layers=lambda env: [L(Symlink("a", "b"), Symlink("b", "a"))],
        expect=Confined(lambda env: {"a": Sym("b"), "b": Sym("a")}),
        cat=Refused(r"^too many levels of symbolic links resolving /[ab]$"),
        umoci=OK_UMOCI,
        gnutar=OK_TAR,
    ),
    Case(
        name="symlink-loop-parent",
        area="symlinks",
        input="`a -> b`, `b -> a`, then `a/x`",
        imgtool="refused (exit 1): `layer 0 (…): too many levels of symbolic links resolving /b`",
        layers=lambda env: [L(Symlink("a", "b"), Symlink("b", "a"), File("a/x", PWNED))],
        expect=Refused(layer_re(0) + r": too many levels of symbolic links resolving /[ab]$"),
        umoci=Peer(
            "refuses", "`too many levels of symbolic links`", r"too many levels of symbolic links|loop"
        ),
        gnutar=Peer("refuses", "`Cannot open: Not a directory` (placeholders), exits 2"),
    ),
    Case(
        name="symlink-to-host-file",
        area="symlinks",
        input="`l -> /$S/secret`, `m -> ../sentinel/secret` (files that exist only on the host)",
        imgtool="confined: links written verbatim; `cat /l` fails: `no such file in the image`",
        layers=lambda env: [L(Symlink("l", f"/{env.s}/secret"), Symlink("m", f"{env.up}/secret"))],
        expect=Confined(lambda env: {"l": Sym(f"/{env.s}/secret"), "m": Sym(f"{env.up}/secret")}),
        probe="/l",
        cat=Refused(r"^/l: no such file in the image$"),
        umoci=OK_UMOCI,
        gnutar=OK_TAR,
    ),
    # -- hardlinks --------------------------------------------------------------------------------------
    Case(
        name="hardlink-dotdot",
        area="hardlinks",
        input="hardlink `h` to `../sentinel/secret`",
        imgtool="refused (exit 1): `… entry 'h': hardlink target path '../sentinel/secret' escapes the root`",
        layers=lambda env: [L(File("a", b"a"), Hardlink("h", f"{env.up}/secret"))],
        expect=Refused(
            layer_re(0) + r": entry 'h': hardlink target path '\.\./sentinel/secret' escapes the root"
        ),
        umoci=Peer("refuses", "the cleaned target `sentinel/secret` does not exist in the rootfs"),
        gnutar=Peer("refuses", "strips `../` from the target, which then does not exist; exits 2"),
    ),
    Case(
        name="hardlink-absolute",
        area="hardlinks",
        input="hardlink `h` to `/$S/secret` (a host file, not in the image)",
        imgtool="refused (exit 1): `… entry /h: hardlink target /$S/secret does not exist`",
        layers=lambda env: [L(Hardlink("h", f"/{env.s}/secret"))],
        expect=Refused(layer_re(0) + r": entry /h: hardlink target /$S/secret does not exist"),
        umoci=Peer("refuses", "the target does not exist in the rootfs"),
        gnutar=Peer("refuses", "strips `/` from the target, which then does not exist; exits 2"),
    ),
    Case(
        name="hardlink-absolute-inside",
        area="hardlinks",
        input="file `$S/secret` in the image, hardlink `h` to `/$S/secret`",
        imgtool="confined: `h` shares the inode of the image's own `$S/secret`",
        layers=lambda env: [L(File(f"{env.s}/secret", b"image secret\n"), Hardlink("h", f"/{env.s}/secret"))],
        expect=Confined(
            lambda env: {f"{env.s}/secret": F(b"image secret\n"), "h": F(b"image secret\n")},
            links=lambda env: [[f"{env.s}/secret", "h"]],
        ),
        probe="/h",
        cat=b"image secret\n",
        umoci=OK_UMOCI,
        gnutar=OK_TAR,
    ),
    Case(
        name="hardlink-to-escaping-symlink",
        area="hardlinks",
        input="`l -> /$S/secret`, hardlink `h` to `l`",
        imgtool="confined: `h` is a second name of the symlink itself; `cat /h` follows it inside the"
        " image: `no such file in the image`",
        layers=lambda env: [L(Symlink("l", f"/{env.s}/secret"), Hardlink("h", "l"))],
        expect=Confined(
            lambda env: {"l": Sym(f"/{env.s}/secret"), "h": Sym(f"/{env.s}/secret")},
            links=lambda env: [["l", "h"]],
        ),
        probe="/h",
        cat=Refused(r"^/h: no such file in the image$"),
        umoci=Peer("confines", "links the symlink itself"),
        gnutar=Peer("confines", "links the symlink itself"),
    ),
    Case(
        name="hardlink-via-symlink-parent",
        area="hardlinks",
        input="layer 0: `x -> /$S`; layer 1: hardlink `h` to `x/secret`",
        imgtool="refused (exit 1): `… entry /h: hardlink target /x/secret does not exist`",
        layers=lambda env: [L(Symlink("x", f"/{env.s}")), L(Hardlink("h", "x/secret"))],
        expect=Refused(layer_re(1) + r": entry /h: hardlink target /x/secret does not exist"),
        umoci=Peer("refuses", "resolves `x` inside the rootfs, where `secret` does not exist"),
        gnutar=Peer("writes outside", "`link()` follows `x`: the rootfs gets a hard link to the host's file"),
    ),
    Case(
        name="hardlink-to-directory",
        area="hardlinks",
        input="directory `d/`, hardlink `h` to `d`",
        imgtool="refused (exit 1): `… entry /h: hardlink target /d is a directory`",
        layers=lambda env: [L(Dir("d/"), Hardlink("h", "d"))],
        expect=Refused(layer_re(0) + r": entry /h: hardlink target /d is a directory"),
        umoci=Peer("refuses", "`link` fails: operation not permitted"),
        gnutar=Peer("refuses", "`Cannot hard link … Operation not permitted`, exits 2"),
    ),
    Case(
        name="hardlink-missing-target",
        area="hardlinks",
        input="hardlink `h` to `nowhere`",
        imgtool="refused (exit 1): `… entry /h: hardlink target /nowhere does not exist`",
        layers=lambda env: [L(Hardlink("h", "nowhere"))],
        expect=Refused(layer_re(0) + r": entry /h: hardlink target /nowhere does not exist"),
        umoci=Peer("refuses"),
        gnutar=Peer("refuses", "exits 2"),
    ),
    # -- whiteouts and opaque markers --------------------------------------------------------------------
    Case(
        name="whiteout-dotdot",
        area="whiteouts",
        input="layer 1: `.wh...` (a whiteout of `..`)",
        imgtool="refused (exit 1): `… entry '.wh...': whiteout names no file ('..')`",
        layers=lambda env: [ONE, L(File(".wh...", b""))],
        expect=Refused(layer_re(1) + r": entry '\.wh\.\.\.': whiteout names no file \('\.\.'\)"),
        umoci=Peer(
            "writes outside",
            "deletes the directory above the rootfs (the sentinel with it), then fails",
            r"restore parent directory",
        ),
        gnutar=Peer("confines", "extracts an ordinary file named `.wh...`"),
    ),
    Case(
        name="whiteout-dot",
        area="whiteouts",
        input="layer 1: `sub/.wh..` (a whiteout of `.`)",
        imgtool="refused (exit 1): `… entry 'sub/.wh..': whiteout names no file ('.')`",
        layers=lambda env: [L(File("sub/a", b"a")), L(File("sub/.wh..", b""))],
        expect=Refused(layer_re(1) + r": entry 'sub/\.wh\.\.': whiteout names no file \('\.'\)"),
        umoci=Peer("refuses", "removes `sub` itself, then fails (`lchown …: no such file or directory`)"),
        gnutar=Peer("confines", "extracts an ordinary file named `.wh..`"),
    ),
    Case(
        name="whiteout-empty",
        area="whiteouts",
        input="layer 1: `.wh.` (a whiteout of nothing)",
        imgtool="refused (exit 1): `… entry '.wh.': whiteout names no file ('')`",
        layers=lambda env: [ONE, L(File(".wh.", b""))],
        expect=Refused(layer_re(1) + r": entry '\.wh\.': whiteout names no file \(''\)"),
        umoci=Peer("refuses", "removes the rootfs directory itself, then fails"),
        gnutar=Peer("confines", "extracts an ordinary file named `.wh.`"),
    ),
    Case(
        name="whiteout-climb",
        area="whiteouts",
        input="layer 1: `../sentinel/.wh.secret`",
        imgtool="refused (exit 1): `… path '../sentinel/.wh.secret' escapes the root`",
        layers=lambda env: [ONE, L(File(f"{env.up}/.wh.secret", b""))],
        expect=Refused(layer_re(1) + r": entry '\.\./sentinel/\.wh\.secret': .*escapes the root"),
        umoci=Peer("confines", "cleans the name to `sentinel/.wh.secret`: nothing to remove"),
        gnutar=Peer("refuses", "skips the member (`Member name contains '..'`), exits 2"),
    ),
    Case(
        name="whiteout-absolute",
        area="whiteouts",
        input="layer 0: `$S/etc/passwd`, `$S/etc/group`; layer 1: `/$S/etc/.wh.passwd`",
        imgtool="confined: the image's own `$S/etc/passwd` is removed, the host's is not",
        layers=lambda env: [
            L(File(f"{env.s}/etc/passwd", b"image passwd\n"), File(f"{env.s}/etc/group", b"image group\n")),
            L(Whiteout(f"/{env.s}/etc/passwd")),
        ],
        expect=Confined(lambda env: {f"{env.s}/etc/group": F(b"image group\n")}),
        probe="/$S/etc/passwd",
        cat=Refused(r"^/$S/etc/passwd: no such file in the image$"),
        which=False,
        umoci=OK_UMOCI,
        gnutar=Peer("confines", "extracts an ordinary file named `.wh.passwd`"),
    ),
    Case(
        name="whiteout-via-symlink",
        area="whiteouts",
        input="layer 0: `x -> /$S`, `$S/etc/passwd`; layer 1: `x/etc/.wh.passwd`",
        imgtool="confined: `x` is resolved inside the image; the image's `$S/etc/passwd` is removed",
        layers=lambda env: [
            L(Symlink("x", f"/{env.s}"), File(f"{env.s}/etc/passwd", b"image passwd\n")),
            L(Whiteout("x/etc/passwd")),
        ],
        expect=Confined(lambda env: {"x": Sym(f"/{env.s}"), f"{env.s}/etc": D()}),
        probe="/$S/etc/passwd",
        cat=Refused(r"^/$S/etc/passwd: no such file in the image$"),
        which=False,
        umoci=OK_UMOCI,
        gnutar=Peer("writes outside", "follows `x` and creates `.wh.passwd` in the host directory"),
    ),
    Case(
        name="whiteout-host-only",
        area="whiteouts",
        input="layer 0: `x -> /$S`; layer 1: `x/.wh.secret` (the file exists only on the host)",
        imgtool="confined: nothing to remove in the image; the host file is untouched",
        layers=lambda env: [L(Symlink("x", f"/{env.s}")), L(Whiteout("x/secret"))],
        expect=Confined(lambda env: {"x": Sym(f"/{env.s}")}),
        probe="/x",
        cat=Refused(r"^/x: no such file in the image$"),
        umoci=OK_UMOCI,
        gnutar=Peer("writes outside", "follows `x` and creates `.wh.secret` in the host directory"),
    ),
    Case(
        name="overlay-whiteout-root",
        area="whiteouts",
        input="layer 1: `./` as a character device 0/0 (an overlayfs whiteout of the root)",
        imgtool="refused (exit 1): `… entry './': whiteout of the root directory`",
        layers=lambda env: [ONE, L(OverlayWhiteout("./"))],
        expect=Refused(layer_re(1) + r": entry '\./': whiteout of the root directory"),
        umoci=Peer("refuses"),
        gnutar=Peer("refuses", "cannot turn `.` into a device, exits 2"),
    ),
    Case(
        name="opaque-climb",
        area="whiteouts",
        input="layer 1: `../sentinel/.wh..wh..opq`",
        imgtool="refused (exit 1): `… path '../sentinel/.wh..wh..opq' escapes the root`",
        layers=lambda env: [ONE, L(Opaque(env.up))],
        expect=Refused(layer_re(1) + r": entry '\.\./sentinel/\.wh\.\.wh\.\.opq': .*escapes the root"),
        umoci=Peer("confines", "cleans the name to `sentinel/`: nothing to hide"),
        gnutar=Peer("refuses", "skips the member (`Member name contains '..'`), exits 2"),
    ),
    Case(
        name="opaque-via-escaping-symlink",
        area="whiteouts",
        input="layer 0: `a`, `x -> ../../..` (24 levels); layer 1: `x/$S/.wh..wh..opq`",
        imgtool="confined: `x/$S` resolves inside the image, where it does not exist: nothing hidden",
        layers=lambda env: [L(File("a", b"a"), Symlink("x", CLIMB)), L(Opaque(f"x/{env.s}"))],
        expect=Confined(lambda env: {"a": F(b"a"), "x": Sym(CLIMB)}),
        cat=b"a",
        umoci=OK_UMOCI,
        gnutar=Peer("writes outside", "follows `x` and creates `.wh..wh..opq` in the host directory"),
    ),
    Case(
        name="opaque-root-via-symlink",
        area="whiteouts",
        input="layer 0: `a`, `x -> ..`; layer 1: `x/.wh..wh..opq`",
        imgtool="confined: `x` resolves to the image root, whose lower contents are hidden: an empty tree",
        layers=lambda env: [L(File("a", b"a"), Symlink("x", "..")), L(Opaque("x"))],
        expect=Confined(lambda env: {}),
        cat=Refused(r"^/a: no such file in the image$"),
        which=False,
        umoci=Peer("not run", "it would resolve `..` on the host if it were wrong"),
        gnutar=Peer("not run", "it would create `.wh..wh..opq` above the rootfs"),
    ),
    Case(
        name="overlay-opaque-over-symlink",
        area="whiteouts",
        input="layer 0: `x -> /$S`; layer 1: `x/` as an overlay-opaque directory, then `x/f`",
        imgtool="confined: the directory replaces the symlink; `x/f` is written inside",
        layers=lambda env: [L(Symlink("x", f"/{env.s}")), L(OverlayOpaque("x"), File("x/f", b"f"))],
        expect=Confined(lambda env: {"x": D(), "x/f": F(b"f")}),
        probe="/x/f",
        cat=b"f",
        umoci=OK_UMOCI,
        gnutar=OK_TAR,
    ),
    # -- special files ----------------------------------------------------------------------------------
    Case(
        name="device-nodes",
        area="special files",
        input="`dev/mem` (char 1/1), `dev/sda` (block 8/0), `run/fifo`",
        imgtool="confined: the nodes are created inside the output (as root); `cat /dev/mem`: exit 1",
        layers=lambda env: [L(CharDev("dev/mem", 1, 1), BlockDev("dev/sda", 8, 0), Fifo("run/fifo"))],
        expect=Confined(lambda env: {"dev/mem": Chr(1, 1), "dev/sda": Blk(8, 0), "run/fifo": Pipe()}),
        probe="/dev/mem",
        cat=Refused(r"^/dev/mem: is not a regular file \(char\)$"),
        umoci=OK_UMOCI,
        gnutar=OK_TAR,
        needs_root=True,
    ),
    Case(
        name="fifo-then-file",
        area="special files",
        input="layer 0: fifo `p`; layer 1: file `p`",
        imgtool="confined: `p` is a regular file (the fifo is never opened)",
        layers=lambda env: [L(Fifo("p")), L(File("p", b"data"))],
        expect=Confined(lambda env: {"p": F(b"data")}),
        probe="/p",
        cat=b"data",
        umoci=OK_UMOCI,
        gnutar=OK_TAR,
    ),
    Case(
        name="proc-names",
        area="special files",
        input="files `proc/self/root/$S/pwned`, `proc/1/environ`, `sys/kernel/notes`, `dev/fd/0`",
        imgtool="confined: ordinary files inside the output; `cat /proc/self/environ` finds nothing",
        layers=lambda env: [
            L(
                File(f"proc/self/root/{env.s}/pwned", PWNED),
                File("proc/1/environ", b"env"),
                File("sys/kernel/notes", b"notes"),
                File("dev/fd/0", b"stdin"),
            )
        ],
        expect=Confined(
            lambda env: {
                f"proc/self/root/{env.s}/pwned": F(PWNED),
                "proc/1/environ": F(b"env"),
                "sys/kernel/notes": F(b"notes"),
                "dev/fd/0": F(b"stdin"),
            }
        ),
        probe="/proc/self/environ",
        cat=Refused(r"^/proc/self/environ: no such file in the image$"),
        which=False,
        umoci=OK_UMOCI,
        gnutar=OK_TAR,
    ),
    Case(
        name="proc-symlink-parent",
        area="special files",
        input="layer 0: `x -> /proc/self/root`; layer 1: `x/$S/etc/passwd`",
        imgtool="confined: lands at `proc/self/root/$S/etc/passwd` inside the output",
        layers=lambda env: [L(Symlink("x", "/proc/self/root")), L(File(f"x/{env.s}/etc/passwd", PWNED))],
        expect=Confined(
            lambda env: {"x": Sym("/proc/self/root"), f"proc/self/root/{env.s}/etc/passwd": F(PWNED)}
        ),
        probe="/x/$S/etc/passwd",
        cat=PWNED,
        umoci=OK_UMOCI,
        gnutar=Peer("writes outside", "follows `x` through the host's /proc/self/root"),
    ),
    # -- the root ---------------------------------------------------------------------------------------
    Case(
        name="root-as-symlink",
        area="root",
        input="`./` as a symlink to `/$S`, then `./pwned`",
        imgtool=f"refused (exit 1): `… entry './': {REFUSE_ROOT_REPLACE}`",
        layers=lambda env: [L(Symlink("./", f"/{env.s}"), File("./pwned", PWNED))],
        expect=Refused(layer_re(0) + r": entry '\./': " + REFUSE_ROOT_REPLACE),
        umoci=Peer("refuses"),
        gnutar=Peer("refuses", "cannot replace `.`, exits 2"),
    ),
    Case(
        name="root-as-file",
        area="root",
        input="`.` as a regular file",
        imgtool=f"refused (exit 1): `… entry '.': {REFUSE_ROOT_REPLACE}`",
        layers=lambda env: [L(File(".", PWNED))],
        expect=Refused(layer_re(0) + r": entry '\.': " + REFUSE_ROOT_REPLACE),
        umoci=Peer("refuses"),
        gnutar=Peer("refuses", "cannot replace `.`, exits 2"),
    ),
    Case(
        name="root-as-hardlink",
        area="root",
        input="file `a`, then `./` as a hardlink to `a`",
        imgtool=f"refused (exit 1): `… entry './': {REFUSE_ROOT_REPLACE}`",
        layers=lambda env: [L(File("a", b"a"), Hardlink("./", "a"))],
        expect=Refused(layer_re(0) + r": entry '\./': " + REFUSE_ROOT_REPLACE),
        umoci=Peer("refuses"),
        gnutar=Peer("refuses", "cannot replace `.`, exits 2"),
    ),
    # -- tar structure ----------------------------------------------------------------------------------
    Case(
        name="truncated-tar-data",
        area="tar",
        input="uncompressed layer cut inside a member's data (digests match the cut bytes)",
        imgtool="refused (exit 1): `… tar archive is truncated inside the data of a member (N bytes …)`",
        layers=lambda env: [L(File("a", BIG))[:100_000]],
        expect=Refused(
            layer_re(0) + r": tar archive is truncated inside the data of a member \(\d+ bytes missing\)"
        ),
        umoci=Peer("refuses", "`unexpected EOF`"),
        gnutar=Peer("refuses", "`Unexpected EOF in archive`, exits 2; the partial file stays"),
    ),
    Case(
        name="truncated-tar-header",
        area="tar",
        input="uncompressed layer cut inside the second header",
        imgtool="refused (exit 1): `… tar archive is truncated inside a header at offset N`",
        layers=lambda env: [L(File("a", b"a"), File("b", b"b"))[: 1024 + 100]],
        expect=Refused(layer_re(0) + r": tar archive is truncated inside a header at offset 1024"),
        umoci=Peer("refuses", "`unexpected EOF`"),
        gnutar=Peer("confines", "extracts `a` and stops at the cut without an error"),
    ),
    Case(
        name="missing-end-blocks",
        area="tar",
        input="a layer without its two end-of-archive blocks",
        imgtool="confined, with a warning: `… tar archive ends without end-of-archive blocks`",
        layers=lambda env: [make_layer([File("a", b"hello\n")], end_blocks=False)],
        expect=Confined(
            lambda env: {"a": F(b"hello\n")},
            warning=layer_re(0) + r": tar archive ends without end-of-archive blocks$",
        ),
        cat=b"hello\n",
        umoci=OK_UMOCI,
        gnutar=OK_TAR,
    ),
    Case(
        name="bad-header-checksum",
        area="tar",
        input="a header byte changed, its checksum left as it was",
        imgtool="refused (exit 1): `… invalid tar header (bad checksum) at offset 0`",
        layers=lambda env: [flip_byte(L(File("a", b"a"), fmt=tarfile.USTAR_FORMAT), 1)],
        expect=Refused(layer_re(0) + r": invalid tar header \(bad checksum\) at offset 0"),
        umoci=Peer("refuses", "`invalid tar header`"),
        gnutar=Peer("refuses", "`This does not look like a tar archive`, exits 2"),
    ),
    Case(
        name="malformed-pax",
        area="tar",
        input="a PAX extended header holding `nonsense` (no record length)",
        imgtool="refused (exit 1): `layer 0 (…): tar header at offset 0: malformed PAX record: no length`",
        layers=lambda env: [L(raw("pax", b"x", data=b"nonsense\n"), File("a", b"a"))],
        expect=Refused(layer_re(0) + r": .*malformed PAX record"),
        umoci=Peer("refuses", "`invalid tar header`"),
        gnutar=Peer("refuses", "`Malformed extended header`, exits 2"),
    ),
    Case(
        name="unknown-type",
        area="tar",
        input="a member of type `Z`",
        imgtool="refused (exit 1): `… entry 'a': unsupported tar entry type b'Z'`",
        layers=lambda env: [L(raw("a", b"Z"))],
        expect=Refused(layer_re(0) + r": entry 'a': unsupported tar entry type b'Z'"),
        umoci=Peer("refuses", "`unknown typeflag`"),
        gnutar=Peer("confines", "extracts it as a regular file, with a warning"),
    ),
    Case(
        name="smuggled-after-end",
        area="tar",
        input="a second tar (`../sentinel/pwned`) appended after the end-of-archive blocks",
        imgtool="confined: reading stops at the end-of-archive marker; the digest still covers every byte",
        layers=lambda env: [ONE + L(File(f"{env.up}/pwned", PWNED))],
        expect=Confined(lambda env: {"a": F(b"hello\n")}),
        cat=b"hello\n",
        umoci=OK_UMOCI,
        gnutar=OK_TAR,
    ),
    Case(
        name="duplicate-entries",
        area="tar",
        input="one layer: file `a` twice; file `d`, then dir `d/` and `d/x`; dir `e/`, then file `e`",
        imgtool="confined: applied in order, the later entry wins",
        layers=lambda env: [
            L(
                File("a", b"first"),
                File("a", b"second"),
                File("d", b"file"),
                Dir("d/"),
                File("d/x", b"x"),
                Dir("e/"),
                File("e/y", b"y"),
                File("e", b"file e"),
            )
        ],
        expect=Confined(lambda env: {"a": F(b"second"), "d": D(), "d/x": F(b"x"), "e": F(b"file e")}),
        cat=b"second",
        umoci=OK_UMOCI,
        gnutar=Peer(
            "refuses", "will not put file `e` over the directory (`Cannot open: File exists`), exits 2"
        ),
    ),
    Case(
        name="parent-is-file",
        area="tar",
        input="file `a`, then `a/b`",
        imgtool="refused (exit 1): `… entry /a/b: parent /a is not a directory`",
        layers=lambda env: [L(File("a", b"a"), File("a/b", PWNED))],
        expect=Refused(layer_re(0) + r": entry /a/b: parent /a is not a directory"),
        umoci=Peer("refuses", "`not a directory`"),
        gnutar=Peer("refuses", "`Cannot open: Not a directory`, exits 2"),
    ),
    # -- compression and digests ------------------------------------------------------------------------
    Case(
        name="truncated-gzip",
        area="compression",
        input="gzip layer cut in half (descriptor digest and size match the cut blob)",
        imgtool="refused (exit 1): `… blob: gzip stream is truncated`; verify: `broken`",
        layers=lambda env: [Layer(L(File("a", BIG)), compression="gzip", postprocess=cut_half)],
        expect=Refused(layer_re(0) + r" blob: gzip stream is truncated", stage="blob", verify="broken"),
        umoci=Peer("refuses", "`unexpected EOF`"),
        gnutar=Peer("refuses", "`unexpected end of file`, exits 2"),
    ),
    Case(
        name="corrupt-gzip",
        area="compression",
        input="gzip layer with one byte flipped in the middle (descriptor matches)",
        imgtool="refused (exit 1): `… blob: corrupt gzip data: …`; verify: `broken`",
        layers=lambda env: [Layer(L(File("a", BIG)), compression="gzip", postprocess=flip_middle)],
        expect=Refused(layer_re(0) + r" blob: corrupt gzip data: ", stage="blob", verify="broken"),
        umoci=Peer("refuses"),
        gnutar=Peer("refuses", "gzip reports the damage, exits 2"),
    ),
    Case(
        name="truncated-zstd",
        area="compression",
        input="zstd layer cut in half (descriptor matches)",
        imgtool="refused (exit 1): `… zstd stream is truncated`; verify reports `broken`",
        layers=lambda env: [Layer(L(File("a", BIG)), compression="zstd", postprocess=cut_half)],
        expect=Refused(
            layer_re(0) + r" blob: .*(zstd.*truncated|truncated.*zstd)", stage="blob", verify="broken"
        ),
        umoci=Peer("refuses", "umoci 0.4.7 does not read zstd layers at all"),
        gnutar=Peer("refuses", "zstd reports the truncation, exits 2"),
    ),
    Case(
        name="corrupt-zstd",
        area="compression",
        input="zstd layer with one byte flipped in the middle (descriptor matches)",
        imgtool="refused (exit 1): `… blob: corrupt zstd data: …`; verify: `broken`",
        layers=lambda env: [Layer(L(File("a", BIG)), compression="zstd", postprocess=flip_middle)],
        expect=Refused(layer_re(0) + r" blob: corrupt zstd data: ", stage="blob", verify="broken"),
        umoci=Peer("refuses", "umoci 0.4.7 does not read zstd layers at all"),
        gnutar=Peer("refuses", "zstd reports the damage, exits 2"),
    ),
    Case(
        name="digest-mismatch",
        area="digests",
        input="layer blob changed after its digest was taken",
        imgtool="refused (exit 1): `… blob: digest mismatch: expected sha256:…, got …`; verify: `mismatch`",
        layers=lambda env: [Layer(ONE, fault=TAMPERED)],
        expect=Refused(
            layer_re(0) + r" blob: digest mismatch: expected sha256:[0-9a-f]{64}, got sha256:[0-9a-f]{64}$",
            stage="blob",
            verify="mismatch",
        ),
        umoci=Peer("refuses", "`verify blob digest`"),
        gnutar=Peer("confines", "checks no digest: extracts the changed layer"),
    ),
    Case(
        name="missing-layer-blob",
        area="digests",
        input="the manifest names a layer blob that is not there",
        imgtool="OCI: refused (exit 1) `… layer blob is not present in the image`, verify `missing`, inspect"
        " shows `absent`; docker-archive: `layer … is missing from the archive` for every command",
        layers=lambda env: [Layer(ONE, fault=MISSING)],
        expect=Refused(
            layer_re(0) + r": layer blob is not present in the image$", stage="blob", verify="missing"
        ),
        formats={
            "docker": Refused(r": layer [0-9a-f]{64}/layer\.tar is missing from the archive$", stage="open")
        },
        umoci=Peer("refuses", "`no such file or directory`"),
        gnutar=Peer("refuses", "`Cannot open: No such file or directory`, exits 2"),
    ),
    Case(
        name="missing-config-blob",
        area="digests",
        input="the manifest names a config blob that is not there",
        imgtool="refused (exit 1) by every command: `… config … is missing`",
        layers=lambda env: [ONE],
        spec={"config_fault": MISSING},
        expect=Refused(r"config (blob )?(sha256:)?[0-9a-f]{64}(\.json)? is missing", stage="open"),
        umoci=Peer("refuses"),
        gnutar=NA_TAR_JSON,
    ),
    # -- JSON -------------------------------------------------------------------------------------------
    Case(
        name="manifest-not-json",
        area="json",
        input="OCI: the manifest blob is `this is not JSON {`; docker-archive: manifest.json is",
        imgtool="refused (exit 1) by every command: `…: manifest…: not valid JSON: …`",
        layers=lambda env: [ONE],
        oci_entries=_manifest_not_json,
        docker_members=_replace_member("manifest.json", NOT_JSON),
        expect=Refused(r": manifest(\.json)?: not valid JSON: ", stage="open"),
        umoci=Peer("refuses"),
        gnutar=NA_TAR_JSON,
    ),
    Case(
        name="config-not-json",
        area="json",
        input="the config blob is `this is not JSON {` (its digest matches)",
        imgtool="refused (exit 1) by every command: `…: config sha256:…: not valid JSON: …`",
        layers=lambda env: [ONE],
        spec={"raw_config": NOT_JSON},
        expect=Refused(r": config sha256:[0-9a-f]{64}: not valid JSON: ", stage="open"),
        umoci=Peer("refuses"),
        gnutar=NA_TAR_JSON,
    ),
    Case(
        name="manifest-wrong-types",
        area="json",
        input="OCI: manifest `layers` is an object; docker-archive: manifest.json `Layers` is an object",
        imgtool="refused (exit 1) by every command: `… field 'layers' must be a list`",
        layers=lambda env: [ONE],
        spec={"edit_manifest": _manifest_layers_wrong_type},
        docker_manifest=_layers_wrong_type,
        expect=Refused(r": manifest(\.json\[0\])?: field '[Ll]ayers' must be a list", stage="open"),
        umoci=Peer("refuses"),
        gnutar=NA_TAR_JSON,
    ),
    Case(
        name="config-wrong-types",
        area="json",
        input="config `rootfs.diff_ids` is a string",
        imgtool="refused (exit 1) by every command: `field 'diff_ids' must be a list`",
        layers=lambda env: [ONE],
        spec={"edit_config": _config_diff_ids_wrong_type},
        expect=Refused(r"field 'diff_ids' must be a list", stage="open"),
        umoci=Peer("refuses"),
        gnutar=NA_TAR_JSON,
    ),
    Case(
        name="config-rootfs-wrong-type",
        area="json",
        input="config `rootfs` is `true` instead of an object",
        imgtool="refused (exit 1) by every command, naming the config",
        layers=lambda env: [ONE],
        spec={"edit_config": _config_rootfs_wrong_type},
        expect=Refused(r"config sha256:[0-9a-f]{64}.*rootfs", stage="open"),
        umoci=Peer("refuses"),
        gnutar=NA_TAR_JSON,
    ),
    Case(
        name="descriptor-negative-size",
        area="json",
        input="OCI: the layer descriptor's size is -5 (docker-archive has no sizes: the layer is fine there)",
        imgtool="refused (exit 1) by every command: `… field 'size' must be a non-negative integer`",
        layers=lambda env: [ONE],
        spec={"edit_manifest": _layer_size(-5)},
        expect=Refused(r"manifest layers\[0\]: field 'size' must be a non-negative integer", stage="open"),
        formats={"docker": Confined(lambda env: {"a": F(b"hello\n")})},
        cat=b"hello\n",
        umoci=Peer("confines", "does not check the descriptor's size"),
        gnutar=NA_TAR_JSON,
    ),
    Case(
        name="descriptor-absurd-size",
        area="json",
        input="OCI: the layer descriptor's size is 10^18 (docker-archive has no sizes)",
        imgtool="refused (exit 1): `… blob: blob is truncated: N of 1000000000000000000 bytes present`",
        layers=lambda env: [ONE],
        spec={"edit_manifest": _layer_size(10**18)},
        expect=Refused(
            layer_re(0) + r" blob: blob is truncated: \d+ of 1000000000000000000 bytes present",
            stage="blob",
            verify="broken",
        ),
        formats={"docker": Confined(lambda env: {"a": F(b"hello\n")})},
        cat=b"hello\n",
        umoci=Peer("refuses"),
        gnutar=NA_TAR_JSON,
    ),
    Case(
        name="index-loop",
        area="json",
        input="OCI: an index whose entry is the index itself; docker-archive: `Layers` names"
        " `loop/layer.tar`, a symlink loop between archive members",
        imgtool="refused (exit 1) by every command: OCI `image index sha256:…: digest mismatch` (a true loop"
        " cannot hash to itself); docker-archive `loop/layer.tar: too many links in the archive`",
        layers=lambda env: [ONE],
        oci_entries=_index_loop,
        docker_manifest=_member_loop,
        docker_members=_add_member_loop,
        expect=Refused(r"image index sha256:[0-9a-f]{64}: (digest mismatch|.*refers back)", stage="open"),
        formats={"docker": Refused(r"loop/layer\.tar: too many links in the archive", stage="open")},
        umoci=Peer("refuses"),
        gnutar=NA_TAR_JSON,
    ),
    Case(
        name="contradictory-duplicates",
        area="json",
        input="docker-archive: two different `manifest.json` members (skopeo reads the first, tar keeps the"
        " last); OCI: two different manifests with the same ref name and platform",
        imgtool="refused (exit 1) as ambiguous: two different `manifest.json` members, or two images for"
        " one ref and platform",
        layers=lambda env: [ONE],
        oci_entries=_same_ref_twice,
        docker_members=_dup_manifest_json,
        expect=Refused(r"(ambiguous|several images|duplicate|more than one)", stage="open"),
        umoci=Peer("refuses", "`tag is ambiguous`", r"ambiguous"),
        gnutar=NA_TAR_JSON,
    ),
    # -- sizes and numbers ------------------------------------------------------------------------------
    Case(
        name="negative-size",
        area="sizes",
        input="a member whose size field is -1 (GNU base-256)",
        imgtool="refused (exit 1): `… entry 'a': negative size -1`",
        layers=lambda env: [L(raw("a", size=-1), fmt=tarfile.GNU_FORMAT)],
        expect=Refused(layer_re(0) + r": entry 'a': negative size -1"),
        umoci=Peer("refuses", "`invalid tar header`"),
        gnutar=Peer("refuses", "exits 2"),
    ),
    Case(
        name="absurd-size",
        area="sizes",
        input="a member whose PAX size is 10^18 bytes (1 EB), followed by 1 byte",
        imgtool="refused (exit 1): `… tar archive is truncated inside the data of a member (…)`",
        layers=lambda env: [L(raw("a", data=b"x", pax={"size": str(10**18)}))],
        expect=Refused(
            layer_re(0) + r": tar archive is truncated inside the data of a member \(\d+ bytes missing\)"
        ),
        umoci=Peer("refuses", "`unexpected EOF`"),
        gnutar=Peer("refuses", "`Unexpected EOF in archive`, exits 2"),
    ),
    Case(
        name="absurd-mtime",
        area="sizes",
        input="file `clock` with PAX mtime 10^20 (beyond any time_t)",
        imgtool="flatten to a directory fails naming the entry (one line, exit 1); every other command"
        " succeeds (ls shows the time as `@SECONDS`, a tar keeps it in a PAX record)",
        layers=lambda env: [L(raw("clock", data=b"tick", pax={"mtime": "100000000000000000000"}))],
        expect=Confined(lambda env: {"clock": F(b"tick")}),
        overrides={"flatten-dir": Refused(r"/clock\b|'clock'")},
        probe="/clock",
        cat=b"tick",
        umoci=Peer("refuses", "`invalid tar header`"),
        gnutar=Peer("refuses", "`Extended header mtime=… is out of range`, exits 2"),
    ),
    Case(
        name="absurd-owner",
        area="sizes",
        input="file `owned` with PAX uid 2^40 (beyond any uid_t)",
        imgtool="flatten to a directory fails naming the entry (one line, exit 1); every other command"
        " succeeds (a tar keeps the owner in a PAX record)",
        layers=lambda env: [L(raw("owned", data=b"o", pax={"uid": str(2**40)}))],
        expect=Confined(lambda env: {"owned": F(b"o")}),
        overrides={"flatten-dir": Refused(r"/owned\b|'owned'")},
        probe="/owned",
        cat=b"o",
        umoci=Peer("confines", "exits 0, the uid cut to 32 bits: the file is owned by root"),
        gnutar=Peer("refuses", "`Cannot change ownership`, exits 2"),
        needs_root=True,
    ),
    Case(
        name="absurd-device",
        area="sizes",
        input="character device `dev/huge` with major 2^40 (GNU base-256)",
        imgtool="flatten to a directory fails naming the entry (one line, exit 1); every other command"
        " succeeds (a tar keeps the number in GNU base-256)",
        layers=lambda env: [L(CharDev("dev/huge", 2**40, 5), fmt=tarfile.GNU_FORMAT)],
        expect=Confined(lambda env: {"dev/huge": Chr(2**40, 5)}),
        overrides={"flatten-dir": Refused(r"/dev/huge\b|'dev/huge'")},
        probe="/dev/huge",
        cat=Refused(r"^/dev/huge: is not a regular file \(char\)$"),
        umoci=Peer("confines", "exits 0, the major number cut to 32 bits: device 0/5"),
        gnutar=Peer("refuses", "exits 2"),
        needs_root=True,
    ),
    # -- names the filesystem cannot hold, names that are not UTF-8 ---------------------------------------
    Case(
        name="non-utf8-names",
        area="encoding",
        input="files `caf\\xe9` (Latin-1) and `\\xff\\xfe/x`",
        imgtool="confined: names kept as bytes, shown as `\\xNN` in tables, JSON and messages",
        layers=lambda env: [L(File(b"caf\xe9", b"latin-1"), File(b"\xff\xfe/x", b"x"))],
        expect=Confined(lambda env: {b"caf\xe9": F(b"latin-1"), b"\xff\xfe/x": F(b"x")}),
        probe="/caf\udce9",
        cat=b"latin-1",
        umoci=OK_UMOCI,
        gnutar=OK_TAR,
    ),
    Case(
        name="non-utf8-escape",
        area="encoding",
        input="entry `\\xff\\n/../../pwned` (not UTF-8, a newline, and it climbs)",
        imgtool="refused (exit 1) with one line: `… entry '\\xff\\n/../../pwned': path … escapes the root`",
        layers=lambda env: [L(File(b"\xff\n/../../pwned", PWNED))],
        expect=Refused(layer_re(0) + r": entry '\\xff\\n/\.\./\.\./pwned': .*escapes the root$"),
        umoci=Peer("confines", "cleans the name to `pwned`"),
        gnutar=Peer("refuses", "skips the member (`Member name contains '..'`), exits 2"),
    ),
    Case(
        name="long-component",
        area="filesystem",
        input="file `d/` + 300 `x` (a name longer than 255 bytes)",
        imgtool="flatten to a directory: refused (exit 1) `cannot write /d/xxx…: File name too long`;"
        " every other command succeeds (a tar can hold the name)",
        layers=lambda env: [L(File("d/" + "x" * 300, b"long"))],
        expect=Confined(lambda env: {"d/" + "x" * 300: F(b"long")}),
        overrides={"flatten-dir": Refused(r"^cannot write /d/x{300}: File name too long$")},
        probe="/d/" + "x" * 300,
        cat=b"long",
        umoci=Peer("refuses", "`file name too long`"),
        gnutar=Peer("refuses", "`Cannot open: File name too long`, exits 2"),
    ),
    Case(
        name="long-path",
        area="filesystem",
        input="file 20 directories of 250 bytes deep (a path of 5000 bytes, beyond PATH_MAX)",
        imgtool="flatten to a directory: refused (exit 1) `cannot write /ddd…: File name too long`;"
        " every other command succeeds",
        layers=lambda env: [L(File("/".join(["d" * 250] * 20), b"deep"))],
        expect=Confined(lambda env: {"/".join(["d" * 250] * 20): F(b"deep")}),
        overrides={"flatten-dir": Refused(r"^cannot write /d{250}/.*: File name too long$")},
        probe="/" + "/".join(["d" * 250] * 20),
        cat=b"deep",
        umoci=Peer("refuses", "`file name too long`"),
        gnutar=Peer("refuses", "`Cannot open: File name too long`, exits 2"),
    ),
    Case(
        name="terminal-escapes",
        area="encoding",
        input="CSI `ESC [31m`, OSC `ESC ]0;title BEL`, C1 `\\x9b`, DEL, CR and backspace in a file name,"
        " `created_by`, RepoTags, Env, Entrypoint, Cmd, WorkingDir, User, labels and os/arch",
        imgtool="confines; every table, JSON document and message shows them escaped (`\\x1b[31m`, `\\x9b`,"
        " `\\x7f`, `\\r`, `\\x08`; JSON `\\u001b`, `\\u009b`): nothing reaches the terminal raw",
        layers=lambda env: [
            Layer(L(File("a", b"hello\n"), File(f"n{TERMINAL_ESCAPES}", b"x")), created_by=TERMINAL_ESCAPES)
        ],
        expect=Confined(lambda env: {"a": F(b"hello\n"), f"n{TERMINAL_ESCAPES}": F(b"x")}),
        cat=b"hello\n",
        spec={
            "env": [f"E={TERMINAL_ESCAPES}"],
            "entrypoint": [TERMINAL_ESCAPES],
            "cmd": [TERMINAL_ESCAPES],
            "working_dir": f"/{TERMINAL_ESCAPES}",
            "user": TERMINAL_ESCAPES,
            "labels": {TERMINAL_ESCAPES: TERMINAL_ESCAPES},
            "os": f"linux{TERMINAL_ESCAPES}",
            "architecture": f"amd64{TERMINAL_ESCAPES}",
        },
        docker_manifest=lambda manifest: manifest[0].update(RepoTags=[f"t{TERMINAL_ESCAPES}:1"]),
        umoci=OK_UMOCI,
        gnutar=OK_TAR,
    ),
    Case(
        name="sparse-file",
        area="tar",
        input="file `a` as GNU tar writes a sparse file (PAX sparse 1.0): 5 bytes at 1000, 3 at 9000,"
        " of 12000",
        imgtool="confined: `a` is the expanded file, its holes zeros (a tar output holds a plain file)",
        layers=lambda env: [L(_sparse_1x0("a", [(1000, b"hello"), (9000, b"end")], 12_000))],
        expect=Confined(lambda env: {"a": F(_SPARSE_A)}),
        cat=_SPARSE_A,
        umoci=Peer("confines"),
        gnutar=Peer("confines"),
    ),
    Case(
        name="sparse-overlap",
        area="tar",
        input="a sparse file (PAX sparse 1.0) whose map's regions overlap: 1000+5, then 1002+3",
        imgtool="refused (exit 1): `… entry 'a': bad sparse map: region 1002+3 overlaps or precedes the one"
        " before`",
        layers=lambda env: [L(_sparse_1x0("a", [(1000, b"hello"), (1002, b"end")], 12_000))],
        expect=Refused(
            layer_re(0) + r": entry 'a': bad sparse map: region 1002\+3 overlaps or precedes the one"
        ),
        umoci=Peer("refuses", "`invalid tar header`", stderr="invalid tar header"),
        gnutar=Peer("confines", "exits 0 with a wrong `a`: 1005 bytes (not 12000), the second region lost"),
    ),
    Case(
        name="symlink-long-target",
        area="tar",
        input="symlink `l` whose target is 5000 bytes (beyond PATH_MAX), then file `a`",
        imgtool="refused (exit 1): `… entry 'l': symlink target of 5000 bytes (the limit is 4095, the"
        " kernel's PATH_MAX)`",
        layers=lambda env: [L(Symlink("l", "x/" * 2500), File("a", b"a"))],
        expect=Refused(layer_re(0) + r": entry 'l': symlink target of 5000 bytes \(the limit is 4095"),
        umoci=Peer("refuses", "`file name too long`"),
        gnutar=Peer("refuses", "`Cannot create symlink to …: File name too long`, exits 2"),
    ),
    Case(
        name="aufs-bookkeeping",
        area="whiteouts",
        input="a layer saved by Docker's aufs driver: `.wh..wh.plnk/9.9` and hardlinks `a`, `b` to it,"
        " `.wh..wh.aufs`, `.wh..wh.orph/x`",
        imgtool="confined, as Docker applies it: no `.wh..wh.*` in the tree; `a` and `b` are the file"
        " `.wh..wh.plnk/9.9` holds (one inode)",
        layers=lambda env: [
            L(
                Dir(".wh..wh.plnk/"),
                File(".wh..wh.plnk/9.9", b"linked\n"),
                Hardlink("a", ".wh..wh.plnk/9.9"),
                Hardlink("b", ".wh..wh.plnk/9.9"),
                File(".wh..wh.aufs", b""),
                Dir(".wh..wh.orph/"),
                File(".wh..wh.orph/x", b"x"),
            )
        ],
        expect=Confined(
            lambda env: {"a": F(b"linked\n"), "b": F(b"linked\n")}, links=lambda env: [["a", "b"]]
        ),
        cat=b"linked\n",
        umoci=Peer("confines", "writes `.wh..wh.plnk/` and `.wh..wh.orph/` into the rootfs"),
        gnutar=Peer("confines", "extracts the bookkeeping as ordinary files"),
    ),
)


CASE_BY_NAME: Final = {case.name: case for case in CASES}


# -- building the images -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    """A case's image on disk: the reference to open, the path it occupies, and the layer blob files
    (in order; a missing one is a path that does not exist)."""

    reference: str
    path: Path
    layer_blobs: list[Path]


def build_image(case: Case, fmt: Format, where: Path, env: Env) -> Built:
    """Write the case's image in ``fmt`` under ``where``."""
    layers = list(case.layers(env))
    if fmt == "oci":
        spec = ImageSpec(layers, compression="gzip", **case.spec)
        entries = list(case.oci_entries(spec)) if case.oci_entries else [Entry(spec, ref=OCI_REF)]
        result = write_oci_layout(where / "oci", entries, extra_files=case.oci_files)
        blobs = [
            where / "oci" / "blobs" / "sha256" / digest.partition(":")[2]
            for image in result.images[:1]
            for digest in image.layer_digests
        ]
        return Built(result.reference(OCI_REF), where / "oci", blobs)
    spec = ImageSpec(layers, compression="none", **case.spec)
    archive = write_docker_archive(
        where / "image.tar",
        [(spec, [TAG])],
        style="legacy",
        layer_compression=None,
        edit_manifest_json=case.docker_manifest,
        edit_members=case.docker_members,
    )
    return Built(archive.reference(), where / "image.tar", [])


def render_table() -> str:
    """The Markdown table of docs/hostile-inputs.md, one row per case."""
    lines = [
        "| case | input | imgtool | umoci 0.4.7 | GNU tar 1.34 |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines.extend(row(case) for case in CASES)
    return "\n".join(lines)


def row(case: Case) -> str:
    cells = [f"`{case.name}`", case.input, case.imgtool, case.umoci.text(), case.gnutar.text()]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


if __name__ == "__main__":
    print(render_table())
