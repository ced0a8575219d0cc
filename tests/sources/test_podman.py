"""containers-storage written by the real podman, in private state, with the overlay and the vfs
driver: images pulled from an OCI layout and an OCI archive, and containers that ran and added,
changed, chmodded and deleted files and directories. imgtool on the store agrees with ``podman
save``, ``podman diff`` and ``podman export`` taken while podman still had the containers.

podman runs here with private state only (``--root``, ``--runroot``, ``--tmpdir``, the runtime's
state directory, the network configuration directory, ``CONTAINERS_CONF`` and
``XDG_CONFIG_HOME``), and in the mount namespace of :class:`tests.helpers.realtools.Builder`, which
hides the host's ``/var/lib/containers`` (containers/image's blob-info cache) behind a private one.

Two things this machine's kind needs, said where they are passed: the runtime is runc, since
crun (1.8) refuses a host whose cgroups are in "hybrid" mode (v1 hierarchies beside a cgroup2
mount that has a controller enabled); and the container's file and process limits are set at or
below this process's own, since podman as root asks for more (``nofile=1048576``) and raising a
hard limit needs ``CAP_SYS_RESOURCE``, which a container running these tests may not have.

A second container is never run: the same changes are made by the image's own shell, chrooted
into the container's ``podman mount`` point. Where podman cannot run a container even so, the
first is made that way too, and the test of a container still running skips, saying why.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imgtool.sources import open_image
from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import (
    Dir,
    Entry,
    File,
    ImageSpec,
    Opaque,
    Symlink,
    Whiteout,
    make_layer,
    write_oci_archive,
    write_oci_layout,
)
from tests.helpers.realtools import Builder, ToolError, find_static_busybox, requires
from tests.helpers.treesnap import tar_listing

pytestmark = [
    requires("podman", "runc", "busybox"),
    pytest.mark.skipif(os.geteuid() != 0, reason="podman runs as root here (rootless needs subuid ranges)"),
]

# What the container does: adds a file, a directory tree and a hard link; changes a file's data;
# chmods a file and a directory (a copy-up of metadata); deletes a symlink and a directory tree;
# replaces a directory by a new one (an opaque directory in overlay's upper). (Not a file by a
# directory: podman 4.3's diff then fails, stat-ing the new directory's files below the old file.)
CHANGES = " && ".join(
    [
        "echo new > /etc/new.txt",
        "ln /etc/new.txt /etc/new-link",
        "echo changed > /etc/b",
        "chmod 600 /opt/y",
        "chmod 700 /srv/keep",
        "rm /etc/l",
        "rm -r /srv/gone",
        "mkdir -p /srv/newdir/sub",
        "echo s > /srv/newdir/sub/f",
        "rm -r /srv/again",
        "mkdir /srv/again",
        "echo fresh > /srv/again/fresh",
    ]
)

# The paths podman diff leaves out by design (libpod's list of the mount points the runtime
# needs, which podman creates in the container's own layer): imgtool shows them, as podman export
# does.
PODMAN_MOUNT_POINTS = frozenset(
    {
        "/dev",
        "/etc/hostname",
        "/etc/hosts",
        "/etc/mtab",
        "/etc/resolv.conf",
        "/proc",
        "/run",
        "/run/.containerenv",
        "/run/secrets",
        "/sys",
    }
)


def _images(base: Path) -> None:
    busybox = find_static_busybox()
    assert busybox is not None
    app = [
        make_layer(
            [
                Dir("bin/"),
                File("bin/busybox", busybox.read_bytes(), mode=0o755),
                Symlink("bin/sh", "busybox"),
                Dir("etc/"),
                File("etc/a", b"a\n"),
                File("etc/b", b"bb\n"),
                Dir("opt/"),
                File("opt/x", b"x\n"),
                Dir("srv/"),
                Dir("srv/keep/"),
                File("srv/keep/k", b"k\n"),
                Dir("srv/gone/"),
                File("srv/gone/g", b"g\n"),
                Dir("srv/again/"),
                File("srv/again/old", b"old\n"),
            ]
        ),
        make_layer([Whiteout("etc/a"), Opaque("opt/"), File("opt/y", b"yy\n"), Symlink("etc/l", "b")]),
    ]
    write_oci_layout(base / "app-layout", [Entry(ImageSpec(app), ref="v1")])
    wh = [
        make_layer(
            [Dir("etc/"), File("etc/a", b"a"), File("etc/b", b"bb"), Dir("opt/"), File("opt/x", b"x")]
        ),
        make_layer([Whiteout("etc/a"), Opaque("opt/"), File("opt/y", b"yy"), Symlink("etc/l", "b")]),
    ]
    write_oci_archive(base / "wh.tar", [Entry(ImageSpec(wh, compression="none"), ref="v1")])


class Podman:
    """podman with private state, in the mount namespace and environment of a :class:`Builder`."""

    def __init__(self, base: Path, driver: str) -> None:
        self.tools = Builder(base / "tools", storage_driver=driver)
        self.tools.env["XDG_CONFIG_HOME"] = str(self.tools.config_dir)
        self.state = base / "state"
        self.state.mkdir()
        # podman refuses a run root longer than 50 characters: a short one beside the temp dirs.
        self.runroot = Path(tempfile.mkdtemp(prefix="podman-run-", dir="/tmp"))
        self.driver = driver
        # At or below this process's own limits: raising them needs CAP_SYS_RESOURCE.
        self.limits = [
            f"--ulimit={name}={min(1024, resource.getrlimit(which)[1])}"
            for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC))
        ]

    @property
    def argv(self) -> list[str]:
        return [
            "podman",
            f"--root={self.tools.root}",
            f"--runroot={self.runroot}",
            f"--storage-driver={self.driver}",
            f"--tmpdir={self.tools.tmpdir}",
            "--cgroup-manager=cgroupfs",
            "--events-backend=file",
            "--runtime=runc",  # crun refuses hybrid cgroups
            f"--runtime-flag=root={self.state}/runc",
            f"--network-config-dir={self.state}/networks",
        ]

    def close(self) -> None:
        self.tools.close()
        shutil.rmtree(self.runroot, ignore_errors=True)

    def __call__(self, *args: str) -> str:
        return self.tools.run(*self.argv, *args)

    def shell(self, script: str) -> str:
        """``script`` run by sh, with ``$podman`` the podman command line (one mount namespace)."""
        return self.tools.run("/bin/sh", "-c", f"podman={shlex.quote(shlex.join(self.argv))}; {script}")


@dataclass(frozen=True)
class Engine:
    root: Path
    run: Path
    driver: str
    base: Path
    ran: str | None  # why the container could not run (None: it ran)
    diffs: dict[str, list[str]]  # podman diff of each container
    exports: dict[str, Path]  # podman export of each container
    saved: dict[str, Path]  # podman save (docker-archive) of each image
    podman: Podman

    def image(self, name: str) -> str:
        return f"containers-storage:[{self.driver}@{self.root}+{self.run}]{name}"

    def container(self, name: str) -> str:
        return f"podman-container:[{self.driver}@{self.root}+{self.run}]{name}"


@pytest.fixture(scope="module", params=["overlay", "vfs"])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    base = tmp_path_factory.mktemp(f"podman-{request.param}")
    _images(base)
    podman = Podman(base, request.param)
    policy = f"--signature-policy={podman.tools.policy}"
    for source, name in ((f"oci:{base}/app-layout:v1", "app:1"), (f"oci-archive:{base}/wh.tar:v1", "wh:1")):
        podman("tag", podman("pull", "-q", policy, source).strip(), f"localhost/{name}")
    ran: str | None = None
    try:
        podman(
            "run", "--name=box", "--network=none", *podman.limits, "localhost/app:1", "/bin/sh", "-c", CHANGES
        )
    except ToolError as exc:
        ran = f"podman cannot run a container here: {exc.stderr.strip().splitlines()[-1]}"
        podman("rm", "-f", "box")
        _change_through_mount(podman, "box")
    _change_through_mount(podman, "mounted")  # always: that way of making changes is tested too
    diffs = {name: podman("diff", name).splitlines() for name in CONTAINERS}
    exports = {name: base / f"{name}-export.tar" for name in CONTAINERS}
    for name, path in exports.items():
        podman("export", "-o", str(path), name)
    saved = {name: base / f"{name.partition(':')[0]}-saved.tar" for name in ("app:1", "wh:1")}
    for name, path in saved.items():
        podman("save", "-q", "--format=docker-archive", "-o", str(path), f"localhost/{name}")
    try:
        yield Engine(
            podman.tools.root, podman.runroot, request.param, base, ran, diffs, exports, saved, podman
        )
    finally:
        podman.close()


CONTAINERS = ("box", "mounted")  # run (where podman can run one), and changed through podman mount


def _change_through_mount(podman: Podman, name: str) -> None:
    """A container made, never run, and changed by the image's own shell chrooted into its root
    as podman mounts it: the kernel's overlay makes the copy-ups and whiteouts as for a run."""
    podman("create", f"--name={name}", "--network=none", "localhost/app:1", "/bin/true")
    podman.shell(
        f'mnt=$($podman mount {name}) && chroot "$mnt" /bin/sh -c {shlex.quote(CHANGES)}; '
        f"rc=$?; $podman umount {name} >/dev/null; exit $rc"
    )


def _json(imgtool_cli: ImgtoolCli, *args: str) -> Any:
    run = imgtool_cli(*args)
    assert run.code == 0, run.stderr
    return json.loads(run.stdout)


def _container_layer_dir(engine: Engine, name: str) -> Path:
    containers = json.loads((engine.root / f"{engine.driver}-containers" / "containers.json").read_text())
    layer: str = next(c for c in containers if name in c["names"])["layer"]
    return (
        engine.root / "overlay" / layer / "diff"
        if engine.driver == "overlay"
        else engine.root / "vfs/dir" / layer
    )


def _opaque_dirs(engine: Engine, name: str) -> set[str]:
    """The directories the container's overlay upper directory marks opaque (none with vfs)."""
    if engine.driver != "overlay":
        return set()
    top = _container_layer_dir(engine, name)
    found = set()
    for dirpath, _, _ in os.walk(top):
        names = os.listxattr(dirpath, follow_symlinks=False)
        if "trusted.overlay.opaque" in names and os.getxattr(dirpath, "trusted.overlay.opaque") == b"y":
            found.add("/" + os.path.relpath(dirpath, top))
    return found


def _ancestors(path: str) -> Iterator[str]:
    while (path := path.rpartition("/")[0]) != "":
        yield path


def _in_podman_words(changes: list[dict[str, Any]], opaque: set[str], driver: str) -> list[str]:
    """imgtool's changes said as podman diff says them: podman leaves out its mount points, names
    a deleted directory but not what it held, calls a directory the container replaced (opaque in
    overlay's upper) deleted, listing what it holds now as added, and counts no directory mtime."""
    words = {"added": "A", "modified": "C", "deleted": "D"}
    gone = [c["path"] for c in changes if c["change"] == "deleted" and c["type"] == "dir"] + sorted(opaque)
    # podman does not look at a directory's mtime. Reading overlay's upper directory, it calls a
    # directory changed when an entry right in it was added or deleted; comparing two trees (vfs),
    # when anything below it changed (or, with either, when its own mode or owner did).
    if driver == "overlay":
        parents = {c["path"].rpartition("/")[0] for c in changes if c["change"] in ("added", "deleted")}
    else:
        parents = {p for c in changes for p in _ancestors(c["path"])}
    said = []
    for change in changes:
        path = change["path"]
        if path in PODMAN_MOUNT_POINTS:
            assert change["change"] == "added", change
            continue
        if change["change"] == "deleted" and any(path.startswith(f"{d}/") for d in gone):
            continue
        if change["type"] == "dir" and change.get("what") == ["mtime"] and path not in parents:
            continue
        said.append(f"{'D' if path in opaque else words[change['change']]} {path}")
    return sorted(said)


@pytest.mark.parametrize("name", CONTAINERS)
def test_container_diff_is_podman_diff(imgtool_cli: ImgtoolCli, engine: Engine, name: str) -> None:
    ref = engine.container(name)
    layers = _json(imgtool_cli, "diff", "layers", "--json", ref)["layers"]
    assert layers[-1]["created_by"] == f"the writable layer of container {name}"
    opaque = _opaque_dirs(engine, name)
    assert opaque == ({"/srv/again"} if engine.driver == "overlay" else set())
    assert _in_podman_words(layers[-1]["changes"], opaque, engine.driver) == sorted(engine.diffs[name])
    if name == "box" and engine.ran is None:  # what podman diff leaves out: the mount points of the run
        shown = {c["path"] for c in layers[-1]["changes"]}
        assert {"/dev", "/proc", "/sys", "/run/.containerenv"} <= shown
    which = _json(imgtool_cli, "which-layer", "--json", ref, "/etc/new.txt")
    assert which[0]["layer"]["created_by"] == f"the writable layer of container {name}"
    assert _json(imgtool_cli, "which-layer", "--json", ref, "/srv/keep/k")[0]["layer"]["index"] == 0
    assert imgtool_cli("cat", ref, "/etc/b").stdout_bytes == b"changed\n"
    assert imgtool_cli("cat", ref, "/srv/again/old").code != 0


@pytest.mark.parametrize("name", CONTAINERS)
def test_container_flatten_is_podman_export(
    imgtool_cli: ImgtoolCli, engine: Engine, tmp_path: Path, name: str
) -> None:
    out = tmp_path / f"{name}.tar"
    run = imgtool_cli("flatten", engine.container(name), "-o", str(out))
    assert run.code == 0, run.stderr
    ours, theirs = tar_listing(out), tar_listing(engine.exports[name])
    assert ours == theirs
    assert ours["srv/keep"][1] == 0o700 and ours["opt/y"][1] == 0o600
    assert "srv/gone" not in ours and "srv/again/old" not in ours


def _without_digests(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_digests(v) for k, v in value.items() if k not in ("layer_digest", "digest")}
    if isinstance(value, list):
        return [_without_digests(v) for v in value]
    return value


@pytest.mark.parametrize("name", ["app:1", "wh:1"])
def test_store_image_answers_as_podman_save(imgtool_cli: ImgtoolCli, engine: Engine, name: str) -> None:
    stored, saved = engine.image(f"localhost/{name}"), str(engine.saved[name])
    a, b = _json(imgtool_cli, "inspect", "--json", stored), _json(imgtool_cli, "inspect", "--json", saved)
    assert a["config_digest"] == b["config_digest"]
    assert [layer["diff_id"] for layer in a["layers"]] == [layer["diff_id"] for layer in b["layers"]]
    assert a["transport"] == "containers-storage" and f"localhost/{name}" in a["tags"]
    # The store serves the layers podman pulled (gzip for app:1) as tars: their blob digests differ
    # from podman save's uncompressed ones, everything else is the same.
    assert _without_digests(_json(imgtool_cli, "ls", "-R", "--json", stored)) == _without_digests(
        _json(imgtool_cli, "ls", "-R", "--json", saved)
    )
    for path in ("/opt/y", "/etc/l", "/etc/b"):
        assert _without_digests(
            _json(imgtool_cli, "which-layer", "--json", stored, path)
        ) == _without_digests(_json(imgtool_cli, "which-layer", "--json", saved, path))
    rows = _json(imgtool_cli, "verify", "--json", stored)
    assert [(r["kind"], r["status"]) for r in rows if r["kind"] == "diff_id"] == [("diff_id", "ok")] * 2
    flat = [engine.base / f"flat-{engine.driver}-{name}-{i}.tar" for i in range(2)]
    for ref, dest in zip((stored, saved), flat, strict=True):
        run = imgtool_cli("flatten", ref, "-o", str(dest))
        assert run.code == 0, run.stderr
    assert flat[0].read_bytes() == flat[1].read_bytes()
    run = imgtool_cli("diff", "images", stored, saved)
    assert run.code == 0, run.stdout + run.stderr


@pytest.mark.parametrize("name", ["app:1", "wh:1"])
def test_rebuilt_layers_are_podman_save_layers(engine: Engine, name: str) -> None:
    """Each layer rebuilt from the store's tar-split is byte for byte the layer podman saves."""
    with tarfile.open(engine.saved[name]) as archive:
        manifest = json.load(_member(archive, "manifest.json"))
        saved = [_member(archive, layer).read() for layer in manifest[0]["Layers"]]
    with open_image(engine.image(f"localhost/{name}")) as image:
        rebuilt = []
        for layer in image.layers:
            with layer.open() as stream:
                chunks = []
                while chunk := stream.read(1 << 16):
                    chunks.append(chunk)
                stream.finish()
            rebuilt.append(b"".join(chunks))
    assert rebuilt == saved


def _member(archive: tarfile.TarFile, name: str) -> Any:
    extracted = archive.extractfile(name)
    assert extracted is not None
    return extracted


@pytest.fixture(scope="module")
def live(engine: Engine) -> Iterator[str]:
    """A container still running (its overlay mounted, its upper directory live) after making the
    changes: its podman diff and podman export are taken while it runs."""
    if engine.ran is not None:
        pytest.skip(engine.ran)
    podman = engine.podman
    script = f"{CHANGES} && touch /ready && exec sleep 600"
    run = shlex.join(["run", "-d", "--name=live", "--network=none", *podman.limits, "localhost/app:1"])
    try:
        podman.shell(
            f"$podman {run} /bin/sh -c {shlex.quote(script)} >/dev/null || exit 1; "
            "for i in $(seq 600); do $podman diff live | grep -qx 'A /ready' && break; sleep 0.05; done; "
            "$podman diff live | grep -qx 'A /ready' || { echo 'no /ready after 30 s' >&2; exit 1; }; "
            f"$podman diff live >{engine.base}/live.diff && $podman export -o {engine.base}/live.tar live"
        )
        yield "live"
    finally:
        podman("rm", "--force", "--ignore", "--time=0", "live")


def test_running_container_read_in_place(
    imgtool_cli: ImgtoolCli, engine: Engine, live: str, tmp_path: Path
) -> None:
    assert engine.podman("inspect", "--format={{.State.Status}}", live).strip() == "running"
    changes = _json(imgtool_cli, "diff", "layers", "--json", engine.container(live))["layers"][-1]["changes"]
    podman_diff = (engine.base / "live.diff").read_text().splitlines()
    assert "A /ready" in podman_diff
    assert _in_podman_words(changes, _opaque_dirs(engine, live), engine.driver) == sorted(podman_diff)
    out = tmp_path / "live.tar"
    run = imgtool_cli("flatten", engine.container(live), "-o", str(out))
    assert run.code == 0, run.stderr
    assert tar_listing(out) == tar_listing(engine.base / "live.tar")


@pytest.mark.parametrize("engine", ["overlay"], indirect=True)  # vfs mounts nothing: a plain directory
def test_podman_mount_point_read_as_overlay_mount(
    imgtool_cli: ImgtoolCli, engine: Engine, tmp_path: Path
) -> None:
    """The overlay podman mounts for the container, read through mountinfo, is the container."""
    imgtool = shlex.join([sys.executable, "-m", "imgtool"])
    engine.podman.shell(
        f"mnt=$($podman mount box) && {imgtool} flatten overlay-mount:$mnt -o {tmp_path}/mount.tar && "
        f"{imgtool} diff layers --json overlay-mount:$mnt > {tmp_path}/mount.json; "
        "rc=$?; $podman umount box >/dev/null; exit $rc"
    )
    run = imgtool_cli("flatten", engine.container("box"), "-o", str(tmp_path / "container.tar"))
    assert run.code == 0, run.stderr
    assert (tmp_path / "mount.tar").read_bytes() == (tmp_path / "container.tar").read_bytes()
    # Layer by layer: the image's layers as podman's lower directories, the container's on top.
    ours = json.loads((tmp_path / "mount.json").read_text())["layers"]
    theirs = _json(imgtool_cli, "diff", "layers", "--json", engine.container("box"))["layers"]
    # A directory a layer's tar does not hold is made when podman unpacks it, with the time of
    # that day: the walk of the unpacked layer sees that mtime, the tar-split does not.
    assert [_but_dir_mtimes(layer["changes"]) for layer in ours] == [
        _but_dir_mtimes(layer["changes"]) for layer in theirs
    ]
    assert ours[-1]["created_by"] == f"overlay upper directory {_container_layer_dir(engine, 'box')}"


def _but_dir_mtimes(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in changes if not (c["type"] == "dir" and c.get("what") == ["mtime"])]


def test_container_by_id_and_its_layer_unverifiable(imgtool_cli: ImgtoolCli, engine: Engine) -> None:
    container_id = engine.podman("inspect", "--format={{.Id}}", "box").strip()
    by_name = _json(imgtool_cli, "diff", "layers", "--json", engine.container("box"))["layers"]
    for selector in (container_id, container_id[:12]):
        assert _json(imgtool_cli, "diff", "layers", "--json", engine.container(selector))["layers"] == by_name
    rows = _json(imgtool_cli, "verify", "--json", engine.container("box"))
    assert [(r["blob"], r["kind"], r["status"]) for r in rows] == [
        ("config", "application/vnd.oci.image.config.v1+json", "ok"),  # the manifest is synthesized
        ("layer 0", "blob", "unverifiable"),  # gzip in the registry's manifest, kept unpacked
        ("layer 0", "diff_id", "ok"),
        ("layer 1", "blob", "unverifiable"),
        ("layer 1", "diff_id", "ok"),
        ("layer 2", "blob", "unverifiable"),  # the container's own layer: nothing to check it against
        ("layer 2", "diff_id", "unverifiable"),
    ]
    assert imgtool_cli("verify", engine.container("box")).code == 0
