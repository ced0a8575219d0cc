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
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import zstandard

HERE: Final = Path(__file__).resolve().parent
CHUNK: Final = 1 << 20
STDERR_TAIL: Final = 2_000


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    title: str
    what: str
    tool: str  # "umoci", "tar" or "imgtool"
    ratio: bool  # show the ratio to umoci's median


ROWS: Final = (
    Row(
        "umoci",
        "umoci raw unpack",
        "reference unpacker: OCI layout to a fresh rootfs directory",
        "umoci",
        False,
    ),
    Row(
        "imgtool-dir", "imgtool flatten -o DIR", "flatten to a fresh directory (empty cache)", "imgtool", True
    ),
    Row("imgtool-tar", "imgtool flatten -o FILE.tar", "flatten to a tar file (empty cache)", "imgtool", True),
    Row(
        "imgtool-pipe",
        "imgtool flatten -o - (pipe)",
        "flatten to stdout, read through a pipe by cat into /dev/null (empty cache)",
        "imgtool",
        True,
    ),
    Row(
        "tar-flat",
        "GNU tar -x flat.tar",
        "extract the already-flattened tree: floor for writing the result",
        "tar",
        True,
    ),
    Row(
        "tar-layers",
        "GNU tar -x 10 layer tars",
        "extract the decompressed layers in order, no whiteout handling: write-volume reference",
        "tar",
        True,
    ),
    Row("which-cold", "imgtool which-layer (cold)", "one path; fresh empty cache directory", "imgtool", True),
    Row("which-warm", "imgtool which-layer (warm)", "same query, cache already populated", "imgtool", False),
    Row(
        "ls-warm",
        "imgtool ls / -R (warm)",
        "list the whole flattened tree, cache populated",
        "imgtool",
        False,
    ),
    Row(
        "diff-warm",
        "imgtool diff layers (warm)",
        "per-layer change summary, cache populated",
        "imgtool",
        False,
    ),
)
ROW_BY_KEY: Final = {row.key: row for row in ROWS}
WARM: Final = ("which-warm", "ls-warm", "diff-warm")
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


def quick(cmd: Sequence[str], timeout: float = 60) -> tuple[int, str, str]:
    try:
        proc = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
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
        if key in ("imgtool-dir", "umoci") and inv.cleanup and inv.cleanup[0].is_dir():
            n = count_tree(inv.cleanup[0])
            flag = "" if ref is None or n == ref else "  **MISMATCH**"
            self.notes.append(f"{title}: {n:,} entries in the output{against}{flag}")
        elif key == "imgtool-tar" and inv.cleanup and inv.cleanup[0].is_file():
            try:
                n = count_tar(inv.cleanup[0])
            except (tarfile.TarError, OSError) as exc:
                self.notes.append(f"{title}: output is not a readable tar ({exc})  **MISMATCH**")
            else:
                flag = "" if ref is None or n == ref else "  **MISMATCH**"
                self.notes.append(f"{title}: {n:,} distinct members{against}{flag}")
        elif key in ("which-cold", "which-warm"):
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
            elif tool == "imgtool" and not imgtool_found:
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
                if len(inv.commands) > 1:
                    res.command_text += f"; ... one run per layer tar, {len(inv.commands)} in order"
                if self.args.sync:
                    os.sync()
                try:
                    sample = run_measured(
                        inv, self.scratch / f"{key}.stderr", self.args.timeout, self.gnu_time
                    )
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
                if self.args.cleanup_each:
                    for path in inv.cleanup:
                        remove(path)
                else:
                    deferred.extend(inv.cleanup)
        # Outputs are removed only now: ext4 skips recently freed inodes when it allocates new ones,
        # so deleting a tree of thousands of files makes the next run's file creation much slower.
        for path in deferred:
            remove(path)
        remove(self.scratch)
        return results


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
    umoci = results.get("umoci")
    base = umoci.median() if umoci is not None else None
    lines = [
        f"# imgtool benchmark, {facts['date']}",
        "",
        f"- Machine: {facts['cpu']}; {facts['cores']} cores; {facts['ram']} RAM; {facts['kernel']}",
        f"- Work dir filesystem: {facts['filesystem']}",
        f"- Tools: {facts['umoci']}; {facts['tar']}; imgtool: {facts['imgtool']}; {facts['python']}",
        f"- Image: {image_line(image)}",
        f"- Method: {args.rounds} rounds, rows interleaved round-robin, each round starting one row later; "
        f"{'sync before every run; ' if args.sync else ''}page cache not dropped (warm-cache numbers); "
        + ("output removed after each run; " if args.cleanup_each else "outputs kept until the last round; ")
        + "peak RSS is the largest single process "
        f"of the run ({'GNU time' if gnu_time else 'wait4'}), CPU is user+system of the child processes",
        "",
        "| Row | What | Median s | Min s | Max s | CPU s (median) | Peak RSS MiB | x umoci | Status |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for res in results.values():
        med = res.median()
        secs = res.seconds()
        cpu = statistics.median([s.cpu_seconds for s in res.samples]) if res.samples else None
        rss = max((s.maxrss_kib for s in res.samples), default=None)
        ratio = f"{med / base:.2f}" if res.row.ratio and med is not None and base else ""
        if res.status == "ok":
            status = "ok"
        elif res.samples:
            status = f"{res.status} after {len(res.samples)} round(s)"
        else:
            status = res.status
        if res.reason and res.status == "skipped":
            status += f": {res.reason}"
        lines.append(
            f"| {res.row.title} | {res.row.what} | {fmt_s(med)} | {fmt_s(min(secs, default=None))} | "
            f"{fmt_s(max(secs, default=None))} | {fmt_s(cpu)} | "
            f"{'-' if rss is None else f'{rss / 1024:.0f}'} | {ratio} | {status} |"
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
        },
        "results": rows,
        "notes": notes,
    }


def parse_keys(text: str | None) -> list[str]:
    if not text:
        return []
    keys = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in ROW_BY_KEY]
    if unknown:
        raise SystemExit(f"unknown row(s) {', '.join(unknown)}; known: {', '.join(ROW_BY_KEY)}")
    return keys


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], epilog=f"rows: {', '.join(ROW_BY_KEY)}"
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
    facts = machine_facts(args.workdir, bench.imgtool)
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
