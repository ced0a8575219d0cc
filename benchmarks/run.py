#!/usr/bin/env python3
"""Measure imgtool side by side with umoci and GNU tar on a generated benchmark image.

Rows run interleaved round-robin (every row once per round, for N rounds). Each run is timed
wall-clock around the child process(es); peak RSS and CPU time come from ``os.wait4``. Output
directories are created and removed outside the timed section. The page cache is not dropped
(that needs root and a quiet machine); every row reads an image that is already in the cache
after the first round, so the numbers are warm-cache numbers.

The Markdown report goes to stdout; progress goes to stderr; ``--json`` writes the raw numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import zstandard

if not __package__:  # run as a script (python benchmarks/run.py): make the benchmarks package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import services

HERE: Final = Path(__file__).resolve().parent
CHUNK: Final = 1 << 20
STDERR_TAIL: Final = 2_000


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    title: str
    what: str
    tool: str  # "umoci", "tar", "imgtool" (the rows --baseline repeats), "skopeo" or "docker"
    versus: str | None  # the key of the row whose median this row's is divided by, for the ratio column
    service: str = ""  # "registry" or "docker": the rows that need that service started for the run
    needs: tuple[str, ...] = ()  # other programs the row runs (skipped when one is missing)


REGISTRY_NEEDS: Final = ("docker-registry",)
DOCKER_NEEDS: Final = ("dockerd", "docker")
ROWS: Final = (
    Row(
        "umoci",
        "umoci raw unpack",
        "reference unpacker: OCI layout to a fresh rootfs directory",
        "umoci",
        None,
    ),
    Row(
        "imgtool-dir",
        "imgtool flatten -o DIR",
        "flatten to a fresh directory (empty cache)",
        "imgtool",
        "umoci",
    ),
    Row(
        "imgtool-tar",
        "imgtool flatten -o FILE.tar",
        "flatten to a tar file (empty cache)",
        "imgtool",
        "umoci",
    ),
    Row(
        "imgtool-pipe",
        "imgtool flatten -o - (pipe)",
        "flatten to stdout, read through a pipe by cat into /dev/null (empty cache)",
        "imgtool",
        "umoci",
    ),
    Row(
        "tar-flat",
        "GNU tar -x flat.tar",
        "extract the already-flattened tree: floor for writing the result",
        "tar",
        "umoci",
    ),
    Row(
        "tar-layers",
        "GNU tar -x 10 layer tars",
        "extract the decompressed layers in order, no whiteout handling: write-volume reference",
        "tar",
        "umoci",
    ),
    Row(
        "which-cold",
        "imgtool which-layer (cold)",
        "one path; fresh empty cache directory",
        "imgtool",
        "umoci",
    ),
    Row("which-warm", "imgtool which-layer (warm)", "same query, cache already populated", "imgtool", None),
    Row(
        "ls-warm",
        "imgtool ls / -R (warm)",
        "list the whole flattened tree, cache populated",
        "imgtool",
        None,
    ),
    Row(
        "diff-warm",
        "imgtool diff layers (warm)",
        "per-layer change summary, cache populated",
        "imgtool",
        None,
    ),
    # A registry on 127.0.0.1 (plain HTTP), every request through the byte-counting proxy.
    Row(
        "pull-skopeo",
        "skopeo copy docker:// oci:",
        "pull from the local registry into a fresh OCI layout: the peer",
        "skopeo",
        None,
        "registry",
        ("docker-registry", "skopeo"),
    ),
    Row(
        "pull-imgtool",
        "imgtool copy docker:// oci:",
        "the same pull with imgtool (empty cache)",
        "imgtool",
        "pull-skopeo",
        "registry",
        REGISTRY_NEEDS,
    ),
    Row(
        "reg-which",
        "imgtool which-layer docker:// (cold)",
        "one path asked of the registry's image directly; fresh empty cache",
        "imgtool",
        "reg-pull-which",
        "registry",
        REGISTRY_NEEDS,
    ),
    Row(
        "reg-pull-which",
        "skopeo copy, then imgtool which-layer oci:",
        "pull-then-query: the same answer from a fresh pull (empty cache)",
        "skopeo",
        None,
        "registry",
        ("docker-registry", "skopeo"),
    ),
    Row(
        "reg-cat",
        "imgtool cat docker:// (cold)",
        "one file read from the registry's image directly; fresh empty cache",
        "imgtool",
        "reg-pull-cat",
        "registry",
        REGISTRY_NEEDS,
    ),
    Row(
        "reg-pull-cat",
        "skopeo copy, then imgtool cat oci:",
        "pull-then-query: the same file from a fresh pull (empty cache)",
        "skopeo",
        None,
        "registry",
        ("docker-registry", "skopeo"),
    ),
    # A private dockerd with the image loaded (docker load) once before the rounds.
    Row(
        "store-export",
        "docker create + docker export | tar -x",
        "the image's tree from the engine: a container created, exported and extracted: the peer",
        "docker",
        None,
        "docker",
        DOCKER_NEEDS,
    ),
    Row(
        "store-flatten",
        "imgtool flatten docker-storage: -o DIR",
        "flatten the image in place from Docker's data root to a fresh directory (empty cache)",
        "imgtool",
        "store-export",
        "docker",
        DOCKER_NEEDS,
    ),
    Row(
        "store-save-flatten",
        "docker save, then imgtool flatten -o DIR",
        "docker save to a file, flatten that archive to a fresh directory (empty cache)",
        "docker",
        "store-export",
        "docker",
        DOCKER_NEEDS,
    ),
    Row(
        "store-which",
        "imgtool which-layer docker-storage: (cold)",
        "one path asked of the image in Docker's data root; fresh empty cache",
        "imgtool",
        "store-save-which",
        "docker",
        DOCKER_NEEDS,
    ),
    Row(
        "store-save-which",
        "docker save, then imgtool which-layer",
        "docker save to a file, the same path asked of that archive (empty cache)",
        "docker",
        None,
        "docker",
        DOCKER_NEEDS,
    ),
)
ROW_BY_KEY: Final = {row.key: row for row in ROWS}
WARM: Final = ("which-warm", "ls-warm", "diff-warm")
QUERY_ROWS: Final = ("reg-which", "reg-pull-which", "store-which", "store-save-which")  # which-layer answers
TREE_ROWS: Final = ("store-export", "store-flatten", "store-save-flatten")  # a directory counted
REMOTE_REPO: Final = "imgtool-bench"  # the image's name in the local registry
REMOTE_TAG: Final = "bench"  # its tag there, and the ref name of the layouts pulled from it
STORE_TAG: Final = "imgtool-bench:latest"  # its name in the private dockerd
DOCKER_DRIVERS: Final = ("overlay2", "vfs")  # tried in this order
BASELINE: Final = "base:"  # key prefix of the rows that run the --baseline imgtool command


def plain_key(key: str) -> str:
    """The row key without the baseline prefix."""
    return key.removeprefix(BASELINE)


def row_for(key: str) -> Row:
    row = ROW_BY_KEY[plain_key(key)]
    if key.startswith(BASELINE):
        return dataclasses.replace(row, key=key, title=f"{row.title} [baseline]")
    return row


@dataclass(slots=True)
class Sample:
    seconds: float
    maxrss_kib: int
    cpu_seconds: float
    fetched_bytes: int | None = None  # what the run fetched from the registry (rows that use one)


@dataclass(slots=True)
class Result:
    row: Row
    command: list[str] = field(default_factory=list)
    command_text: str = ""
    samples: list[Sample] = field(default_factory=list)
    status: str = "ok"  # ok, failed, skipped
    reason: str = ""
    stderr_tail: str = ""

    def seconds(self) -> list[float]:
        return [s.seconds for s in self.samples]

    def median(self) -> float | None:
        return statistics.median(self.seconds()) if self.samples else None


@dataclass(slots=True)
class Invocation:
    commands: list[list[str]]
    env: dict[str, str]
    stdout: Path
    cleanup: list[Path]
    finish: list[list[str]] = field(default_factory=list)  # commands run right after, untimed (docker rm)


class RunError(Exception):
    def __init__(self, message: str, stderr_tail: str = "") -> None:
        super().__init__(message)
        self.stderr_tail = stderr_tail


# --------------------------------------------------------------------------------------------------
# Running and measuring child processes.


def tail(path: Path, limit: int = STDERR_TAIL) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - limit))
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def find_gnu_time() -> str | None:
    path = shutil.which("time")
    if path is None:
        return None
    code, out, err = quick([path, "--version"])
    return path if code == 0 and "GNU" in out + err else None


def run_measured(inv: Invocation, stderr: Path, timeout: float, gnu_time: str | None) -> Sample:
    """Run the commands one after another and time them together.

    Peak RSS is the largest of any single process of the run: ``ru_maxrss`` of the child as reported by
    wait4 covers the child and the descendants it waited for. A child forked straight from this Python
    process would report this process's own RSS (the kernel keeps the pre-exec high-water mark), so when
    GNU time is available each command runs under it and its report of the real child is used.
    """
    maxrss = 0
    cpu = 0.0
    report = stderr.with_suffix(".rusage")
    with inv.stdout.open("wb") as out, stderr.open("wb") as err:
        start = time.perf_counter()
        for cmd in inv.commands:
            report.unlink(missing_ok=True)
            argv = (
                cmd
                if gnu_time is None
                else [gnu_time, "-o", str(report), "-f", "rusage %M %U %S", "--", *cmd]
            )
            try:
                proc = subprocess.Popen(
                    argv,
                    stdout=out,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                    env=inv.env,
                    start_new_session=True,
                )
            except OSError as exc:
                raise RunError(f"cannot start {cmd[0]!r}: {exc.strerror or exc}") from exc
            timed_out = threading.Event()

            def kill(pid: int = proc.pid, flag: threading.Event = timed_out) -> None:
                flag.set()
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)

            timer = threading.Timer(timeout, kill)
            timer.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            finally:
                timer.cancel()
            proc.returncode = code = os.waitstatus_to_exitcode(status)
            if gnu_time is None:
                maxrss = max(maxrss, usage.ru_maxrss)
                cpu += usage.ru_utime + usage.ru_stime
            else:
                fields = next(
                    (ln.split()[1:] for ln in tail(report).splitlines() if ln.startswith("rusage ")), None
                )
                if fields is not None and len(fields) == 3:
                    maxrss = max(maxrss, int(fields[0]))
                    cpu += float(fields[1]) + float(fields[2])
            if timed_out.is_set():
                raise RunError(f"timed out after {timeout:.0f} s: {shlex.join(cmd)}", tail(stderr))
            if code != 0:
                what = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
                err.flush()
                raise RunError(f"{what}: {shlex.join(cmd)}", tail(stderr))
        seconds = time.perf_counter() - start
    return Sample(seconds, maxrss, cpu)


def quick(cmd: Sequence[str], timeout: float = 60, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    try:
        proc = subprocess.run(
            list(cmd),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, "", str(exc)
    return proc.returncode, proc.stdout, proc.stderr


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def count_tree(root: Path) -> int:
    total = 0
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                total += 1
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return total


def file_digest(path: Path) -> tuple[str, int]:
    """The sha256 (hex) and size of a file."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def count_tar(path: Path) -> int:
    names: set[str] = set()
    with tarfile.open(path, "r:*") as tf:
        for member in tf:
            name = member.name.removeprefix("./").strip("/")
            if name and name != ".":
                names.add(name)
    return len(names)


# --------------------------------------------------------------------------------------------------
# Facts about the machine, the tools and the image.


def read_text(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def filesystem_of(path: Path) -> str:
    target = str(path.resolve())
    best = ("", "unknown", "")
    for line in read_text("/proc/self/mounts").splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mnt = parts[1].encode().decode("unicode_escape")
        inside = target == mnt or target.startswith(mnt.rstrip("/") + "/")
        if inside and len(mnt) >= len(best[0]):
            best = (mnt, parts[2], parts[0])
    return f"{best[1]} ({best[2]} on {best[0]})" if best[0] else "unknown"


def machine_facts(workdir: Path, imgtool: Sequence[str]) -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in read_text("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    mem_kib = next(
        (
            int(line.split()[1])
            for line in read_text("/proc/meminfo").splitlines()
            if line.startswith("MemTotal:")
        ),
        0,
    )
    facts = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": f"{os.cpu_count()} online, {len(os.sched_getaffinity(0))} usable",
        "ram": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()} (runner)",
        "filesystem": filesystem_of(workdir),
    }
    code, out, err = quick(["umoci", "--version"]) if shutil.which("umoci") else (-1, "", "not installed")
    facts["umoci"] = out.strip() if code == 0 else f"unavailable ({(err or out).strip()[:200]})"
    code, out, err = quick(["tar", "--version"]) if shutil.which("tar") else (-1, "", "not installed")
    facts["tar"] = out.splitlines()[0] if code == 0 and out else f"unavailable ({err.strip()[:200]})"
    code, out, err = quick([*imgtool, "--version"])
    text = (out.strip().splitlines() or [""])[0]
    facts["imgtool"] = (
        text
        if code == 0 and text
        else f"unavailable ({shlex.join(imgtool)} --version: {(err or out).strip()[-300:] or f'exit {code}'})"
    )
    return facts


def peer_version(program: str) -> str:
    """The first line of ``PROGRAM --version``, or why there is none."""
    if shutil.which(program) is None:
        return f"{program}: not installed"
    code, out, err = quick([program, "--version"])
    line = (out.strip() or err.strip()).splitlines()[:1]
    if code != 0 or not line:
        return f"{program}: unavailable (exit {code})"
    return line[0] if line[0].startswith(program) else f"{program}: {line[0]}"


@dataclass(frozen=True, slots=True)
class LayerBlob:
    path: Path
    media_type: str
    size: int


@dataclass(frozen=True, slots=True)
class ImageInfo:
    layout: Path
    ref: str
    manifest_digest: str
    layers: list[LayerBlob]
    shape: dict[str, Any] | None


def blob_path(layout: Path, digest: str) -> Path:
    algo, _, hexa = digest.partition(":")
    return layout / "blobs" / algo / hexa


def read_image(layout: Path, ref: str) -> ImageInfo:
    index = json.loads((layout / "index.json").read_text())
    manifests = index.get("manifests", [])
    chosen = [
        m for m in manifests if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref
    ]
    if not chosen:
        raise SystemExit(f"{layout}: no manifest with ref name {ref!r} in index.json")
    digest = chosen[0]["digest"]
    manifest = json.loads(blob_path(layout, digest).read_text())
    layers = [
        LayerBlob(blob_path(layout, d["digest"]), d["mediaType"], int(d["size"])) for d in manifest["layers"]
    ]
    shape_file = layout.with_name(layout.name + ".shape.json")
    shape = json.loads(shape_file.read_text()) if shape_file.is_file() else None
    return ImageInfo(layout, ref, digest, layers, shape)


def decompressed(blob: LayerBlob) -> Iterator[bytes]:
    with blob.path.open("rb") as f:
        if blob.media_type.endswith("+gzip") or blob.media_type.endswith(".gzip"):
            dec = zlib.decompressobj(31)
            while chunk := f.read(CHUNK):
                yield dec.decompress(chunk)
                while dec.eof and dec.unused_data:  # concatenated gzip members
                    rest = dec.unused_data
                    dec = zlib.decompressobj(31)
                    yield dec.decompress(rest)
            yield dec.flush()
        elif blob.media_type.endswith("+zstd") or blob.media_type.endswith(".zstd"):
            with zstandard.ZstdDecompressor().stream_reader(f) as reader:
                while chunk := reader.read(CHUNK):
                    yield chunk
        else:
            while chunk := f.read(CHUNK):
                yield chunk


# --------------------------------------------------------------------------------------------------
# The benchmark.


@dataclass(slots=True)
class RegistryRun:
    """The local registry with the image pushed to it, and the counting proxy the rows go through."""

    registry: services.LocalRegistry
    proxy: services.CountingProxy

    @property
    def remote(self) -> str:
        return f"{self.proxy.host}/{REMOTE_REPO}:{REMOTE_TAG}"

    def close(self) -> None:
        self.proxy.close()
        self.registry.close()


class Bench:
    def __init__(self, args: argparse.Namespace, image: ImageInfo) -> None:
        self.args = args
        self.image = image
        self.workdir: Path = args.workdir
        self.imgtool: list[str] = shlex.split(args.imgtool)
        self.baseline: list[str] = shlex.split(args.baseline) if args.baseline else []
        self.prep: Path = self.workdir / "prep" / image.manifest_digest.replace(":", "-")[:23]
        self.scratch: Path = self.workdir / "run"
        self.notes: list[str] = []
        self.gnu_time = find_gnu_time()
        if self.gnu_time is None:
            self.notes.append(
                "GNU time not found: peak RSS comes from wait4 and is at least the runner's own RSS "
                f"({resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB), as a forked child "
                "keeps its pre-exec high-water mark"
            )
        self.reference_entries: int | None = None
        self.image_arg = f"oci:{image.layout}:{image.ref}"
        self.which_path: str = args.which_path or (
            (image.shape or {}).get("query_paths", {}).get("base") or "/usr/lib/os-release"
        )
        self.cat_path: str = args.cat_path or (
            (image.shape or {}).get("query_paths", {}).get("top") or "/etc/passwd"
        )
        self.registry: RegistryRun | None = None
        self.dockerd: services.PrivateDockerd | None = None
        self.docker_state: Path | None = None

    def log(self, msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    def env(self, cache: Path | None) -> dict[str, str]:
        env = dict(os.environ)
        if cache is not None:
            env["XDG_CACHE_HOME"] = str(cache)
        return env

    # ---- preparation (untimed) ----------------------------------------------------------------

    def umoci_cmd(self, rootfs: Path) -> list[str]:
        cmd = ["umoci", "raw", "unpack"]
        if os.geteuid() != 0:
            cmd.append("--rootless")
        return [*cmd, "--image", f"{self.image.layout}:{self.image.ref}", str(rootfs)]

    def prepare_flat_tar(self) -> Path:
        flat = self.prep / "flat.tar"
        stats = self.prep / "reference.json"
        if flat.is_file() and stats.is_file():
            self.reference_entries = int(json.loads(stats.read_text())["entries"])
            return flat
        rootfs = self.prep / "reference-rootfs"
        remove(rootfs)
        self.prep.mkdir(parents=True, exist_ok=True)
        self.log("prepare: umoci reference unpack and flat.tar (once per image)")
        code, out, err = quick(self.umoci_cmd(rootfs), timeout=self.args.timeout)
        if code != 0:
            raise RunError(f"umoci reference unpack failed (exit {code})", (err or out)[-STDERR_TAIL:])
        entries = count_tree(rootfs)
        tmp = flat.with_suffix(".tmp")
        code, out, err = quick(["tar", "-C", str(rootfs), "-cf", str(tmp), "."], timeout=self.args.timeout)
        if code != 0:
            raise RunError(f"tar -cf flat.tar failed (exit {code})", (err or out)[-STDERR_TAIL:])
        tmp.rename(flat)
        stats.write_text(json.dumps({"entries": entries}) + "\n")
        remove(rootfs)
        self.reference_entries = entries
        return flat

    def prepare_layer_tars(self) -> list[Path]:
        out_dir = self.prep / "layers"
        done = out_dir / ".complete"
        paths = [out_dir / f"{i:02d}.tar" for i in range(len(self.image.layers))]
        if done.is_file():
            return paths
        self.log("prepare: decompressing layer blobs to plain tars (once per image)")
        remove(out_dir)
        out_dir.mkdir(parents=True)
        for blob, path in zip(self.image.layers, paths, strict=True):
            with path.open("wb") as f:
                for chunk in decompressed(blob):
                    f.write(chunk)
        done.write_text("")
        return paths

    # ---- services (untimed, once per run) --------------------------------------------------------

    def start_registry(self) -> RegistryRun:
        """docker-registry with the image pushed to it (skopeo copy from the layout, or imgtool copy
        where skopeo is missing), and the counting proxy in front of it."""
        self.log("prepare: starting docker-registry on 127.0.0.1 and pushing the image to it")
        registry = services.LocalRegistry(self.scratch / "registry")
        try:
            dest = f"docker://{registry.host}/{REMOTE_REPO}:{REMOTE_TAG}"
            source = f"oci:{self.image.layout}:{self.image.ref}"
            if shutil.which("skopeo"):
                push = ["skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false"]
            else:
                push = [*self.imgtool, "copy", "--plain-http", "--quiet"]
            code, out, err = quick([*push, source, dest], timeout=self.args.timeout)
            if code != 0:
                raise services.ServiceError(
                    f"pushing the image failed (exit {code}): {(err or out).strip()[-600:]}"
                )
            proxy = services.CountingProxy(("127.0.0.1", registry.port))
        except BaseException:
            registry.close()
            raise
        self.notes.append(
            f"Registry rows: docker-registry on 127.0.0.1, filesystem storage, plain HTTP; image pushed "
            f"once with {push[0]}; every request of the rows goes through a byte-counting TCP proxy"
        )
        return RegistryRun(registry, proxy)

    def start_dockerd(self) -> services.PrivateDockerd:
        """A private dockerd (the first storage driver that starts) with the image loaded into it."""
        self.docker_state = Path(tempfile.mkdtemp(prefix="imgtool-bench-"))  # short: socket paths
        said: list[str] = []
        for driver in DOCKER_DRIVERS:
            self.log(f"prepare: starting a private dockerd (storage driver {driver})")
            state = self.docker_state / driver
            state.mkdir()
            try:
                daemon = services.PrivateDockerd(self.scratch / f"docker-{driver}", state, driver)
            except services.ServiceError as exc:
                said.append(str(exc))
                continue
            break
        else:
            raise services.ServiceError("; ".join(said))
        try:
            self.log(f"prepare: docker load of the image as {STORE_TAG}")
            manifest = json.loads(blob_path(self.image.layout, self.image.manifest_digest).read_text())
            config = manifest["config"]["digest"]
            layers = [d["digest"] for d in manifest["layers"]]
            daemon.load(
                lambda stream: services.write_docker_archive(
                    stream, self.image.layout, config, layers, STORE_TAG
                ),
                timeout=self.args.timeout,
            )
        except BaseException:
            daemon.close()
            raise
        self.notes.append(
            f"Docker rows: a private dockerd, storage driver {daemon.driver}, data root in the work dir, "
            "the image loaded once with docker load; imgtool reads the data root in place while the "
            "daemon idles"
        )
        return daemon

    def start_services(self, results: dict[str, Result]) -> None:
        """Start what the rows still to run need; a service that cannot start skips its rows."""
        wanted = {res.row.service for res in results.values() if res.status == "ok" and res.row.service}
        for service in sorted(wanted):
            try:
                if service == "registry":
                    self.registry = self.start_registry()
                else:
                    self.dockerd = self.start_dockerd()
            except services.ServiceError as exc:
                for res in results.values():
                    if res.row.service == service and res.status == "ok":
                        res.status, res.reason = "skipped", str(exc)
                self.log(f"note: skipping the {service} rows: {exc}")

    def stop_services(self) -> None:
        if self.registry is not None:
            self.registry.close()
            self.registry = None
        if self.dockerd is not None:
            self.dockerd.close()
            self.dockerd = None
        if self.docker_state is not None:
            remove(self.docker_state)
            self.docker_state = None

    # ---- one run of one row ----------------------------------------------------------------------

    def invocation(self, key: str, round_no: int, flat: Path | None, layers: list[Path]) -> Invocation:
        base = self.scratch / f"{key.replace(':', '-')}-{round_no}"
        stdout = self.scratch / f"{key.replace(':', '-')}.stdout"
        img = self.baseline if key.startswith(BASELINE) else self.imgtool
        warm_cache = self.scratch / ("base-warm-cache" if key.startswith(BASELINE) else "warm-cache")
        scratch_key, key = key.replace(":", "-"), plain_key(key)
        if key == "umoci":
            return Invocation([self.umoci_cmd(base)], self.env(None), stdout, [base])
        if key == "imgtool-dir":
            cache = self.fresh(self.scratch / f"{scratch_key}-cache")
            return Invocation(
                [[*img, "flatten", self.image_arg, "-o", str(base), "--quiet"]],
                self.env(cache),
                stdout,
                [base, cache],
            )
        if key == "imgtool-tar":
            cache = self.fresh(self.scratch / f"{scratch_key}-cache")
            out = base.with_suffix(".tar")
            return Invocation(
                [[*img, "flatten", self.image_arg, "-o", str(out), "--quiet"]],
                self.env(cache),
                stdout,
                [out, cache],
            )
        if key == "imgtool-pipe":
            cache = self.fresh(self.scratch / f"{scratch_key}-cache")
            flatten = shlex.join([*img, "flatten", self.image_arg, "-o", "-", "--quiet"])
            return Invocation(
                [["bash", "-c", f"set -o pipefail; {flatten} | cat > /dev/null"]],
                self.env(cache),
                stdout,
                [cache],
            )
        if key == "tar-flat":
            assert flat is not None
            self.fresh(base)
            return Invocation([["tar", "-C", str(base), "-xf", str(flat)]], self.env(None), stdout, [base])
        if key == "tar-layers":
            self.fresh(base)
            return Invocation(
                [["tar", "-C", str(base), "-xf", str(p)] for p in layers], self.env(None), stdout, [base]
            )
        if key == "which-cold":
            cache = self.fresh(self.scratch / f"{scratch_key}-cache")
            return Invocation(
                [[*img, "which-layer", self.image_arg, self.which_path]], self.env(cache), stdout, [cache]
            )
        if key == "which-warm":
            return Invocation(
                [[*img, "which-layer", self.image_arg, self.which_path]], self.env(warm_cache), stdout, []
            )
        if key == "ls-warm":
            return Invocation([[*img, "ls", self.image_arg, "/", "-R"]], self.env(warm_cache), stdout, [])
        if key == "diff-warm":
            return Invocation([[*img, "diff", "layers", self.image_arg]], self.env(warm_cache), stdout, [])
        if ROW_BY_KEY[key].service == "registry":
            return self.registry_invocation(key, img, base, stdout, scratch_key)
        if ROW_BY_KEY[key].service == "docker":
            return self.docker_invocation(key, img, base, stdout, scratch_key)
        raise ValueError(key)

    def skopeo_pull(self, layout: Path) -> list[str]:
        assert self.registry is not None
        return [
            "skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
            f"docker://{self.registry.remote}", f"oci:{layout}:{REMOTE_TAG}",
        ]  # fmt: skip

    def registry_invocation(
        self, key: str, img: list[str], base: Path, stdout: Path, scratch_key: str
    ) -> Invocation:
        assert self.registry is not None
        remote = f"docker://{self.registry.remote}"
        cache = self.fresh(self.scratch / f"{scratch_key}-cache")
        env = self.env(cache)
        if key == "pull-skopeo":
            return Invocation([self.skopeo_pull(base)], env, stdout, [base, cache])
        if key == "pull-imgtool":
            pull = [*img, "copy", "--plain-http", "--quiet", remote, f"oci:{base}:{REMOTE_TAG}"]
            return Invocation([pull], env, stdout, [base, cache])
        if key == "reg-which":
            query = [*img, "which-layer", "--plain-http", remote, self.which_path]
            return Invocation([query], env, stdout, [cache])
        if key == "reg-cat":
            return Invocation([[*img, "cat", "--plain-http", remote, self.cat_path]], env, stdout, [cache])
        pulled = f"oci:{base}:{REMOTE_TAG}"
        if key == "reg-pull-which":
            query = [*img, "which-layer", pulled, self.which_path]
            return Invocation([self.skopeo_pull(base), query], env, stdout, [base, cache])
        if key == "reg-pull-cat":
            query = [*img, "cat", pulled, self.cat_path]
            return Invocation([self.skopeo_pull(base), query], env, stdout, [base, cache])
        raise ValueError(key)

    def docker_invocation(
        self, key: str, img: list[str], base: Path, stdout: Path, scratch_key: str
    ) -> Invocation:
        assert self.dockerd is not None
        cache = self.fresh(self.scratch / f"{scratch_key}-cache")
        env = {**self.dockerd.env, "XDG_CACHE_HOME": str(cache)}
        stored = f"docker-storage:[{self.dockerd.data_root}]{STORE_TAG}"
        saved = base.with_suffix(".docker.tar")
        save = ["docker", "save", "-o", str(saved), STORE_TAG]
        if key == "store-export":
            name = f"imgtool-bench-{base.name}"
            self.fresh(base)
            script = (
                f"set -o pipefail; docker create --pull=never --network=none --name {shlex.quote(name)} "
                f"{STORE_TAG} /none >/dev/null && docker export {shlex.quote(name)} | "
                f"tar -C {shlex.quote(str(base))} -xf -"
            )
            rm = ["docker", "rm", "--force", name]
            return Invocation([["bash", "-c", script]], env, stdout, [base, cache], finish=[rm])
        if key == "store-flatten":
            return Invocation(
                [[*img, "flatten", stored, "-o", str(base), "--quiet"]], env, stdout, [base, cache]
            )
        if key == "store-save-flatten":
            flatten = [*img, "flatten", f"docker-archive:{saved}", "-o", str(base), "--quiet"]
            return Invocation([save, flatten], env, stdout, [base, saved, cache])
        if key == "store-which":
            return Invocation([[*img, "which-layer", stored, self.which_path]], env, stdout, [cache])
        if key == "store-save-which":
            query = [*img, "which-layer", f"docker-archive:{saved}", self.which_path]
            return Invocation([save, query], env, stdout, [saved, cache])
        raise ValueError(key)

    @staticmethod
    def fresh(path: Path) -> Path:
        remove(path)
        path.mkdir(parents=True)
        return path

    def check_output(self, full_key: str, inv: Invocation) -> None:
        """First-round sanity notes, outside the timed section."""
        title = row_for(full_key).title
        key = plain_key(full_key)
        model = (self.image.shape or {}).get("surviving", {}).get("entries")
        if key == "umoci":
            ref, against = model, f" (generator model: {model:,})" if model is not None else ""
        elif self.reference_entries is not None:
            ref, against = self.reference_entries, f" (umoci: {self.reference_entries:,})"
        else:
            ref, against = model, f" (generator model: {model:,})" if model is not None else ""
        if key in ("imgtool-dir", "umoci", *TREE_ROWS) and inv.cleanup and inv.cleanup[0].is_dir():
            n = count_tree(inv.cleanup[0])
            if key == "store-export":  # what a container adds: /.dockerenv, /etc/hosts, /dev/console, ...
                flag = "" if ref is None else f", {n - ref:+,} from Docker's init layer"
            else:
                flag = "" if ref is None or n == ref else "  **MISMATCH**"
            self.notes.append(f"{title}: {n:,} entries in the output{against}{flag}")
        elif key in ("pull-skopeo", "pull-imgtool") and inv.cleanup:
            self.notes.append(f"{title}: {self.pulled_manifest(inv.cleanup[0])}")
        elif key in ("reg-cat", "reg-pull-cat"):
            digest, size = file_digest(inv.stdout)
            self.notes.append(f"{title} {self.cat_path}: {size:,} bytes, sha256:{digest[:16]}…")
        elif key == "imgtool-tar" and inv.cleanup and inv.cleanup[0].is_file():
            try:
                n = count_tar(inv.cleanup[0])
            except (tarfile.TarError, OSError) as exc:
                self.notes.append(f"{title}: output is not a readable tar ({exc})  **MISMATCH**")
            else:
                flag = "" if ref is None or n == ref else "  **MISMATCH**"
                self.notes.append(f"{title}: {n:,} distinct members{against}{flag}")
        elif key in ("which-cold", "which-warm", *QUERY_ROWS):
            text = [" ".join(ln.split()) for ln in inv.stdout.read_text(errors="replace").splitlines()]
            answer = " / ".join(ln for ln in text if ln)[:160].rstrip()
            self.notes.append(f"{title} {self.which_path}: `{answer}`")
            if key == "which-cold" and inv.cleanup:
                size = sum(p.stat().st_size for p in inv.cleanup[0].rglob("*") if p.is_file())
                self.notes.append(f"{title}: cache directory holds {size / 1024:,.0f} KiB afterwards")
        elif key in ("ls-warm", "diff-warm"):
            with inv.stdout.open("rb") as f:
                lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(CHUNK), b""))
            self.notes.append(f"{title}: {lines:,} lines of output")

    def pulled_manifest(self, layout: Path) -> str:
        """What a pull wrote, against the layout the registry was given."""
        try:
            index = json.loads((layout / "index.json").read_text())
            digests = [m["digest"] for m in index["manifests"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"no readable index.json in the pulled layout ({exc})  **MISMATCH**"
        same = digests == [self.image.manifest_digest]
        blobs = sum(1 for _ in (layout / "blobs").rglob("*"))
        return (
            f"manifest {', '.join(d[:19] + '…' for d in digests)}, "
            f"{'the same as the source layout' if same else '**MISMATCH** against the source layout'}; "
            f"{blobs} entries under blobs/"
        )

    # ---- the whole benchmark -----------------------------------------------------------------------

    def run(self, keys: list[str]) -> dict[str, Result]:
        results = {k: Result(row_for(k)) for k in keys}
        remove(self.scratch)
        self.scratch.mkdir(parents=True)

        have_umoci = shutil.which("umoci") is not None
        tar_path = shutil.which("tar")
        gnu_tar = tar_path is not None and "GNU tar" in quick(["tar", "--version"])[1]
        for key, res in results.items():
            command = self.baseline if key.startswith(BASELINE) else self.imgtool
            imgtool_found = shutil.which(command[0]) is not None if command else False
            tool = res.row.tool
            if tool == "umoci" and not have_umoci:
                res.status, res.reason = "skipped", "umoci is not installed"
            elif tool == "tar" and not gnu_tar:
                res.status, res.reason = "skipped", "GNU tar is not installed"
            elif key == "tar-flat" and not have_umoci:
                res.status, res.reason = "skipped", "flat.tar is built with umoci, which is not installed"
            elif missing := [p for p in res.row.needs if shutil.which(p) is None]:
                are = "is" if len(missing) == 1 else "are"
                res.status, res.reason = "skipped", f"{' and '.join(missing)} {are} not installed"
            elif res.row.service == "docker" and os.geteuid() != 0:
                res.status, res.reason = "skipped", "a private dockerd needs root"
            elif (tool == "imgtool" or res.row.service) and not imgtool_found:
                res.status = "failed"
                res.reason = f"command not found: {command[0] if command else '(empty)'}"
            if res.status == "skipped":
                self.log(f"note: skipping {res.row.title}: {res.reason}")

        flat: Path | None = None
        layers: list[Path] = []
        wants_flat = "tar-flat" in results and results["tar-flat"].status == "ok"
        wants_reference = have_umoci and any(k in results for k in ("imgtool-dir", "imgtool-tar"))
        if wants_flat or wants_reference:
            try:
                flat = self.prepare_flat_tar()
            except RunError as exc:
                self.notes.append(f"reference preparation failed: {exc}")
                if "tar-flat" in results:
                    results["tar-flat"].status, results["tar-flat"].reason = "failed", str(exc)
                    results["tar-flat"].stderr_tail = exc.stderr_tail
        if "tar-layers" in results and results["tar-layers"].status == "ok":
            layers = self.prepare_layer_tars()
        try:
            self.start_services(results)
            self.rounds(results, flat, layers)
        finally:
            self.stop_services()
        remove(self.scratch)
        return results

    def rounds(self, results: dict[str, Result], flat: Path | None, layers: list[Path]) -> None:
        self.fresh(self.scratch / "warm-cache")
        self.fresh(self.scratch / "base-warm-cache")
        for key, warm in results.items():
            if plain_key(key) not in WARM or warm.status != "ok":
                continue
            self.log(f"prepare: priming the cache for {warm.row.title}")
            inv = self.invocation(key, 0, flat, layers)
            warm.command = inv.commands[0]
            warm.command_text = shlex.join(warm.command)
            try:
                run_measured(inv, self.scratch / f"{key}.stderr", self.args.timeout, self.gnu_time)
            except RunError as exc:
                warm.status, warm.reason, warm.stderr_tail = "failed", f"priming call: {exc}", exc.stderr_tail

        deferred: list[Path] = []
        keys = list(results)
        for round_no in range(1, self.args.rounds + 1):
            # Each round starts one row later, so that no row always runs right after the same other row
            # (a run that deletes thousands of files slows the file creation of the run after it).
            shift = (round_no - 1) % len(keys)
            for key in keys[shift:] + keys[:shift]:
                res = results[key]
                if res.status != "ok":
                    continue
                inv = self.invocation(key, round_no, flat, layers)
                res.command = inv.commands[0]
                res.command_text = shlex.join(res.command)
                if key == "tar-layers":
                    res.command_text += f"; ... one run per layer tar, {len(inv.commands)} in order"
                elif len(inv.commands) > 1:
                    res.command_text = " && ".join(shlex.join(cmd) for cmd in inv.commands)
                if self.args.sync:
                    os.sync()
                counted = self.registry.proxy if self.registry and res.row.service == "registry" else None
                if counted is not None:
                    counted.take()  # what earlier runs left is not this run's
                try:
                    sample = run_measured(
                        inv, self.scratch / f"{key}.stderr", self.args.timeout, self.gnu_time
                    )
                    if counted is not None:
                        sample.fetched_bytes = counted.take().fetched
                except RunError as exc:
                    res.status, res.reason, res.stderr_tail = "failed", str(exc), exc.stderr_tail
                    self.log(f"round {round_no}: {res.row.title}: FAILED ({exc})")
                else:
                    res.samples.append(sample)
                    self.log(
                        f"round {round_no}: {res.row.title}: {sample.seconds:.3f} s, "
                        f"{sample.maxrss_kib / 1024:.0f} MiB peak RSS"
                    )
                    if round_no == 1:
                        self.check_output(key, inv)
                for cmd in inv.finish:
                    code, out, err = quick(cmd, timeout=self.args.timeout, env=inv.env)
                    if code != 0:
                        self.notes.append(f"`{shlex.join(cmd)}` failed: {(err or out).strip()[-300:]}")
                if self.args.cleanup_each:
                    for path in inv.cleanup:
                        remove(path)
                else:
                    deferred.extend(inv.cleanup)
        # Outputs are removed only now: ext4 skips recently freed inodes when it allocates new ones,
        # so deleting a tree of thousands of files makes the next run's file creation much slower.
        for path in deferred:
            remove(path)


# --------------------------------------------------------------------------------------------------
# Reporting.


def fmt_s(x: float | None) -> str:
    if x is None:
        return "-"
    if x < 1:
        return f"{x:.3f}"
    return f"{x:.2f}" if x < 100 else f"{x:.1f}"


def image_line(image: ImageInfo) -> str:
    blob_bytes = sum(b.size for b in image.layers)
    kinds = sorted({b.media_type.rsplit("+", 1)[-1] if "+" in b.media_type else "tar" for b in image.layers})
    text = (
        f"`oci:{image.layout}:{image.ref}` ({image.manifest_digest[:19]}…): {len(image.layers)} layers, "
        f"{'/'.join(kinds)}, {blob_bytes / 1e9:.2f} GB of blobs"
    )
    shape = image.shape
    if shape:
        t, s = shape["totals"], shape["surviving"]
        text += (
            f", {t['tar_bytes'] / 1e9:.2f} GB of layer tars, {t['entries']:,} tar entries, "
            f"{t['whiteouts']:,} whiteouts, {t['opaques']:,} opaque dirs; flattened: {s['entries']:,} "
            f"entries, {s['file_bytes'] / 1e9:.2f} GB of file data (generator scale {shape['scale']})"
        )
    return text


def markdown(
    results: dict[str, Result],
    facts: dict[str, str],
    image: ImageInfo,
    args: argparse.Namespace,
    notes: list[str],
    *,
    gnu_time: str | None,
) -> str:
    fetched = any(s.fetched_bytes is not None for res in results.values() for s in res.samples)
    lines = [
        f"# imgtool benchmark, {facts['date']}",
        "",
        f"- Machine: {facts['cpu']}; {facts['cores']} cores; {facts['ram']} RAM; {facts['kernel']}",
        f"- Work dir filesystem: {facts['filesystem']}",
        f"- Tools: {facts['umoci']}; {facts['tar']}; imgtool: {facts['imgtool']}; {facts['python']}"
        + (f"; {facts['peers']}" if facts.get("peers") else ""),
        f"- Image: {image_line(image)}",
        f"- Method: {args.rounds} rounds, rows interleaved round-robin, each round starting one row later; "
        f"{'sync before every run; ' if args.sync else ''}page cache not dropped (warm-cache numbers); "
        + ("output removed after each run; " if args.cleanup_each else "outputs kept until the last round; ")
        + "peak RSS is the largest single process "
        f"of the run ({'GNU time' if gnu_time else 'wait4'}), CPU is user+system of the child processes",
        "",
        "| Row | What | Median s | Min s | Max s | CPU s (median) | Peak RSS MiB | "
        + ("Fetched MB (median) | " if fetched else "")
        + "Ratio | Status |",
        "|---|---|---:|---:|---:|---:|---:|" + ("---:|" if fetched else "") + "---:|---|",
    ]
    for res in results.values():
        med = res.median()
        secs = res.seconds()
        cpu = statistics.median([s.cpu_seconds for s in res.samples]) if res.samples else None
        rss = max((s.maxrss_kib for s in res.samples), default=None)
        versus, to = ratio_to(results, res)
        ratio = f"{versus:.2f} x {to}" if versus is not None else ""
        got = [s.fetched_bytes for s in res.samples if s.fetched_bytes is not None]
        fetched_cell = f"{statistics.median(got) / 1e6:,.1f} | " if got else "- | "
        if res.status == "ok":
            status = "ok"
        elif res.samples:
            status = f"{res.status} after {len(res.samples)} round(s)"
        else:
            status = res.status
        if res.reason and res.status == "skipped":
            status += f": {res.reason}"
        title, what = (text.replace("|", "\\|") for text in (res.row.title, res.row.what))
        lines.append(
            f"| {title} | {what} | {fmt_s(med)} | {fmt_s(min(secs, default=None))} | "
            f"{fmt_s(max(secs, default=None))} | {fmt_s(cpu)} | "
            f"{'-' if rss is None else f'{rss / 1024:.0f}'} | {fetched_cell if fetched else ''}{ratio} | "
            f"{status} |"
        )
    failures = [r for r in results.values() if r.status == "failed"]
    if failures:
        lines += ["", "## Failures", ""]
        for res in failures:
            lines.append(f"- **{res.row.title}**: {res.reason}")
            if res.stderr_tail:
                lines += ["", "  ```", *("  " + ln for ln in res.stderr_tail.splitlines()[-20:]), "  ```"]
    lines += ["", "## Notes", ""]
    lines += [f"- {n}" for n in notes] or ["- (none)"]
    lines += ["", "## Commands", ""]
    for res in results.values():
        if res.command_text:
            lines.append(f"- {res.row.title}: `{res.command_text}`")
    return "\n".join(lines) + "\n"


def ratio_to(results: dict[str, Result], res: Result) -> tuple[float | None, str]:
    """The row's median over the median of the row it is measured against, and that row's key."""
    peer = results.get(res.row.versus) if res.row.versus else None
    med, base = res.median(), peer.median() if peer is not None else None
    if med is None or not base or res.row.versus is None:
        return None, ""
    return med / base, res.row.versus


def as_json(
    results: dict[str, Result],
    facts: dict[str, str],
    image: ImageInfo,
    args: argparse.Namespace,
    notes: list[str],
) -> dict[str, Any]:
    base = results["umoci"].median() if "umoci" in results else None
    rows: dict[str, Any] = {}
    for key, res in results.items():
        med = res.median()
        rows[key] = {
            "title": res.row.title,
            "what": res.row.what,
            "status": res.status,
            "reason": res.reason,
            "stderr_tail": res.stderr_tail,
            "command": res.command,
            "command_text": res.command_text,
            "seconds": res.seconds(),
            "maxrss_kib": [s.maxrss_kib for s in res.samples],
            "cpu_seconds": [s.cpu_seconds for s in res.samples],
            "median_seconds": med,
            "min_seconds": min(res.seconds(), default=None),
            "max_seconds": max(res.seconds(), default=None),
            "ratio_to_umoci": med / base if med is not None and base else None,
            "versus": res.row.versus,
            "ratio": ratio_to(results, res)[0],
            "fetched_bytes": [s.fetched_bytes for s in res.samples],
        }
    return {
        "machine": facts,
        "image": {
            "layout": str(image.layout),
            "ref": image.ref,
            "manifest": image.manifest_digest,
            "blob_bytes": sum(b.size for b in image.layers),
            "layers": len(image.layers),
            "shape": image.shape,
        },
        "settings": {
            "rounds": args.rounds,
            "sync": args.sync,
            "timeout": args.timeout,
            "imgtool": args.imgtool,
            "baseline": args.baseline,
            "which_path": args.which_path,
            "cat_path": args.cat_path,
        },
        "results": rows,
        "notes": notes,
    }


GROUPS: Final = {group: [row.key for row in ROWS if row.service == group] for group in ("registry", "docker")}


def parse_keys(text: str | None) -> list[str]:
    """Row keys, comma-separated; a group name ("registry", "docker") stands for its rows."""
    if not text:
        return []
    keys = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in ROW_BY_KEY and k not in GROUPS]
    if unknown:
        raise SystemExit(
            f"unknown row(s) {', '.join(unknown)}; known: {', '.join(ROW_BY_KEY)} "
            f"and the groups {', '.join(GROUPS)}"
        )
    return [row for k in keys for row in GROUPS.get(k, [k])]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog=f"rows: {', '.join(ROW_BY_KEY)}; groups (for --only and --skip): "
        + "; ".join(f"{g}: {', '.join(keys)}" for g, keys in GROUPS.items()),
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=HERE / "work",
        help="scratch and cache directory (default: benchmarks/work, git-ignored)",
    )
    p.add_argument(
        "--image",
        type=Path,
        default=None,
        help="OCI layout directory to measure (default: WORKDIR/image, as written by generate.py)",
    )
    p.add_argument("--ref", default="bench", help="ref name of the image in index.json (default: bench)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--imgtool",
        default="imgtool",
        help='the imgtool command, split like a shell would (e.g. "python -m imgtool")',
    )
    p.add_argument(
        "--baseline",
        default=None,
        help="a second imgtool command (an earlier version, say): its rows run interleaved with the "
        "others in the same rounds, marked [baseline], for before/after figures from one run",
    )
    p.add_argument("--only", default=None, help="comma-separated rows to run")
    p.add_argument("--skip", default=None, help="comma-separated rows to leave out")
    p.add_argument(
        "--which-path",
        default=None,
        help="path asked of which-layer (default: the generator's base-layer query path)",
    )
    p.add_argument(
        "--cat-path",
        default=None,
        help="file read by the cat rows (default: the generator's top-layer query path, /etc/passwd)",
    )
    p.add_argument("--no-sync", dest="sync", action="store_false", help="do not sync before each run")
    p.add_argument(
        "--cleanup-each",
        action="store_true",
        help="remove each run's output right after it (default: keep all outputs until the end, since "
        "deleting thousands of files slows the next run's file creation on ext4)",
    )
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds before a run is killed")
    p.add_argument("--json", type=Path, default=None, help="also write the raw numbers as JSON here")
    p.add_argument("--markdown", type=Path, default=None, help="also write the Markdown report here")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    args.workdir = args.workdir.resolve()
    args.image = (args.image or args.workdir / "image").resolve()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.image / "index.json").is_file():
        print(
            f"{args.image}: not an OCI layout (no index.json); run benchmarks/generate.py first",
            file=sys.stderr,
        )
        return 2
    image = read_image(args.image, args.ref)
    keys = parse_keys(args.only) or list(ROW_BY_KEY)
    skip = set(parse_keys(args.skip))
    keys = [k for k in ROW_BY_KEY if k in keys and k not in skip]
    if args.baseline:
        keys += [BASELINE + k for k in keys if ROW_BY_KEY[k].tool == "imgtool"]
    args.workdir.mkdir(parents=True, exist_ok=True)
    bench = Bench(args, image)
    if not args.which_path:
        args.which_path = bench.which_path
    if not args.cat_path:
        args.cat_path = bench.cat_path
    facts = machine_facts(args.workdir, bench.imgtool)
    peers = dict.fromkeys(p for k in keys for p in ROW_BY_KEY[plain_key(k)].needs)
    facts["peers"] = "; ".join(peer_version(p) for p in peers)
    results = bench.run(keys)
    report = markdown(results, facts, image, args, bench.notes, gnu_time=bench.gnu_time)
    sys.stdout.write(report)
    if args.markdown is not None:
        args.markdown.write_text(report)
    if args.json is not None:
        args.json.write_text(json.dumps(as_json(results, facts, image, args, bench.notes), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
