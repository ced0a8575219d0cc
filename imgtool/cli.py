"""The command line: parse arguments, call the library, render. No image logic lives here."""

from __future__ import annotations

import dataclasses
import gc
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import click

from imgtool import __version__
from imgtool.console.completion import (
    COMPLETE_VAR,
    SHELLS,
    complete_image,
    complete_image_path,
    completion_script,
)
from imgtool.console.output import (
    DEFAULT_TABLE_FORMAT,
    TABLE_FORMATS,
    TerminalProgress,
    change_word,
    clean,
    escape_text,
    human_size,
    style,
    table,
    to_json,
    use_colour,
)
from imgtool.errors import ImgtoolError, UsageError
from imgtool.image.image import Image
from imgtool.merge.index import IndexCache
from imgtool.progress import NoProgress, Progress
from imgtool.sources import open_image
from imgtool.system.libc import keep_freed_memory

if TYPE_CHECKING:
    from imgtool.merge.changes import ChangeRecorder
    from imgtool.merge.view import MergedView

P = ParamSpec("P")
R = TypeVar("R")

_debug = False


def warn(message: str) -> None:
    click.echo(f"imgtool: warning: {clean(message)}", err=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """The one error line. Messages quote the image's strings as they are (file names already escaped
    by paths.escape): the whole line goes through clean(), which escapes what a terminal would act on
    and leaves the backslashes of escaped names alone."""
    click.echo(f"imgtool: error: {clean(message)}", err=True)
    sys.exit(code)


def progress_for(quiet: bool) -> Progress:
    return TerminalProgress() if sys.stderr.isatty() and not quiet else NoProgress()


def cache_for(no_cache: bool) -> IndexCache | None:
    return None if no_cache else IndexCache()


# -- shared options ----------------------------------------------------------------------------

image_argument = click.argument("image", metavar="IMAGE", shell_complete=complete_image)
platform_option = click.option(
    "--platform",
    metavar="OS/ARCH[/VARIANT]",
    help="Which image of a multi-platform index to use (default: this machine's platform).",
)
no_cache_option = click.option(
    "--no-cache", is_flag=True, help="Do not read or write the layer index cache ($XDG_CACHE_HOME/imgtool)."
)
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary on stderr.")


def output_options(func: Callable[P, R]) -> Callable[P, R]:
    """Adds --json and --format to a command."""
    func = click.option(
        "--format",
        "table_format",
        type=click.Choice(TABLE_FORMATS),
        default=DEFAULT_TABLE_FORMAT,
        show_default=True,
        metavar="FORMAT",
        help="Table style, any of tabulate's formats (plain, simple, github, grid, ...).",
    )(func)
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(func)


def short(digest: object, full: bool = False) -> str:
    text = str(digest)
    return text if full or ":" not in text else text[: text.index(":") + 13]


# -- the group ---------------------------------------------------------------------------------


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    invoke_without_command=False,
    no_args_is_help=True,
)
@click.version_option(__version__, "-V", "--version", prog_name="imgtool", message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="Show a traceback when something fails.")
def cli(debug: bool) -> None:
    """Inspect, flatten and take apart container images.

    \b
    IMAGE is a path to a docker-save tarball, an OCI archive or an OCI layout
    directory (imgtool looks at what is there), or one of:
      oci:DIR[:REF]                        an OCI layout directory
      oci-archive:PATH[:REF]               an OCI archive (tar of a layout)
      docker-archive:PATH[:NAME:TAG|:@N]   a docker-save tarball

    \b
    Examples:
      imgtool inspect examples/sample.tar
      imgtool flatten examples/sample.tar -o rootfs
      imgtool which-layer examples/sample.tar /etc/app/app.conf

    Exit status: 0 success; 1 a failure, or a negative answer (a path absent,
    images that differ, a digest mismatch); 2 a usage error; 130 interrupted.
    """
    global _debug  # noqa: PLW0603 - the error funnel in main() needs it
    _debug = debug


@cli.command()
@image_argument
@platform_option
@click.option("--no-trunc", is_flag=True, help="Show full digests in the layer table.")
@output_options
def inspect(image: str, platform: str | None, no_trunc: bool, as_json: bool, table_format: str) -> None:
    """Show an image's manifest, config, platform and layers.

    \b
    Examples:
      imgtool inspect examples/sample.tar
      imgtool inspect oci:examples/sample-oci:1.1 --json
    """
    from imgtool.image.model import short_layer_type
    from imgtool.ops.summary import describe_image

    with open_image(image, platform) as img:
        doc = describe_image(img)
    for message in doc["warnings"]:
        warn(message)
    if as_json:
        click.echo(to_json(doc))
        return
    fields = [
        ("Reference", doc["reference"]),
        (
            "Manifest",
            f"{doc['manifest_digest'] or '(none)'} ({doc['manifest_media_type']}"
            + (", derived from manifest.json as skopeo derives it)" if doc["manifest_synthesized"] else ")"),
        ),
        *_index_fields(doc["index"]),
        ("Config", doc["config_digest"]),
        ("Platform", escape_text(doc["platform"])),
        ("Created", escape_text(doc["created"] or "-")),
        ("Tags", ", ".join(escape_text(str(tag)) for tag in doc["tags"]) or "-"),
        ("Entrypoint", _command_text(doc["entrypoint"])),
        ("Cmd", _command_text(doc["cmd"])),
        ("WorkingDir", escape_text(str(doc["working_dir"] or "-"))),
        ("User", escape_text(str(doc["user"] or "-"))),
        ("Env", "\n".join(escape_text(str(var)) for var in doc["env"]) or "-"),
    ]
    for name, value in fields:
        lines = [clean(line) for line in str(value).split("\n")]
        click.echo(f"{name + ':':<12} {lines[0]}")
        for line in lines[1:]:
            click.echo(f"{'':<12} {line}")
    click.echo()
    rows = [
        (
            layer["index"],
            short(layer["digest"], no_trunc),
            short(layer["diff_id"], no_trunc),
            human_size(layer["size"]),
            layer["media_type"] if no_trunc else short_layer_type(layer["media_type"]),
            layer["compression"],
            _one_line(layer["created_by"], None if no_trunc else 60),
        )
        for layer in doc["layers"]
    ]
    click.echo(
        table(rows, ["#", "digest", "diff_id", "size", "type", "compression", "created_by"], table_format)
    )


def _index_fields(index: dict[str, Any] | None) -> list[tuple[str, str]]:
    """inspect's lines for the image index the manifest was chosen from: its digest, every entry."""
    if index is None:
        return []
    entries = index["manifests"]
    platforms = [escape_text(entry["platform"] or "-") for entry in entries]
    width = max(len(platform) for platform in platforms)
    lines = [
        f"{platform:<{width}}  {entry['digest']}"
        + (" (this image)" if entry["chosen"] else " (attestation)" if entry["attestation"] else "")
        for platform, entry in zip(platforms, entries, strict=True)
    ]
    shown = index["digest"] or "index.json"
    return [("Index", f"{shown} ({escape_text(index['media_type'])})"), ("Platforms", "\n".join(lines))]


def _command_text(value: Any) -> str:
    if not value:
        return "-"
    if isinstance(value, list):
        return " ".join(escape_text(str(v)) for v in value)
    return escape_text(str(value))


def _one_line(text: str | None, limit: int | None) -> str:
    """``text`` (a layer's created_by) on one line: whitespace runs as one space, the rest escaped as
    file names are, cut to ``limit`` characters."""
    if not text:
        return "-"
    flat = escape_text(" ".join(text.split()))
    if limit is not None and len(flat) > limit:
        return flat[: limit - 3] + "..."
    return flat


@cli.command()
@image_argument
@platform_option
@quiet_option
@output_options
def verify(image: str, platform: str | None, quiet: bool, as_json: bool, table_format: str) -> None:
    """Check every blob of an image against its digest.

    Reads each layer in full and checks its blob digest and its diff_id.
    Exits 0 only if everything matches.

    \b
    Example:
      imgtool verify examples/sample.tar
    """
    from imgtool.ops.verify import all_ok, verify_image

    with open_image(image, platform) as img:
        findings = verify_image(img, progress_for(quiet or as_json))
    if as_json:
        click.echo(to_json([dataclasses.asdict(f) for f in findings]))
    else:
        colour = use_colour(sys.stdout)
        rows = [
            (
                f.blob,
                f.kind,
                f.expected,
                style(f.status, "green" if f.status == "ok" else "red", colour),
                f.detail,
            )
            for f in findings
        ]
        click.echo(table(rows, ["blob", "kind", "expected", "status", "detail"], table_format))
    if not all_ok(findings):
        sys.exit(1)


@cli.command()
@image_argument
@click.option(
    "-o",
    "--output",
    required=True,
    metavar="DIR|FILE.tar|-",
    help="A directory (must not exist or be empty), a .tar file, or - for a tar stream on stdout. "
    "A symlink there is refused, never followed.",
)
@click.option(
    "--tar", "force_tar", is_flag=True, help="Write a tar file even if the name does not end in .tar."
)
@click.option("--force", is_flag=True, help="Replace a non-empty output directory or an existing tar file.")
@click.option(
    "--safe",
    is_flag=True,
    help="Leave out device nodes, setuid/setgid bits and all but user.* xattrs (to look at files, "
    "not to run them).",
)
@click.option("--layers", "upto", type=int, metavar="N", help="Stop after layer N (0 is the bottom layer).")
@click.option(
    "--provenance",
    type=click.Path(dir_okay=False, writable=True),
    metavar="FILE",
    help="Also write which layer supplied each path (TSV, or JSON if FILE ends in .json); it goes "
    "into place with the output. A symlink there is refused.",
)
@click.option(
    "--max-size",
    type=int,
    metavar="BYTES",
    help="Refuse a layer whose uncompressed tar exceeds BYTES (default: the free space at the output; "
    "for -o -, in TMPDIR).",
)
@platform_option
@no_cache_option
@quiet_option
def flatten(
    image: str,
    output: str,
    force_tar: bool,
    force: bool,
    safe: bool,
    upto: int | None,
    provenance: str | None,
    max_size: int | None,
    platform: str | None,
    no_cache: bool,
    quiet: bool,
) -> None:
    """Write the image's root filesystem to a directory or a tar.

    The layers are applied in order, as a container would see them: whiteouts
    (.wh.NAME, .wh..wh..opq and their overlayfs forms) as docker, containerd
    and umoci apply them. Nothing is written outside the output, and a
    directory output appears only once it is complete (its root 0700 until then).

    The output is exact by default: run as root, device nodes, setuid files and
    security xattrs are created as the image says. --safe leaves them out.

    While it works, flatten keeps .NAME.imgtool-PID-* beside the output and
    .imgtool-spool-PID-* there or in TMPDIR; if it is killed, the next flatten
    in the same place removes those of a PID that is gone.

    \b
    Examples:
      imgtool flatten examples/sample.tar -o rootfs
      imgtool flatten examples/sample.tar -o rootfs.tar --layers 1 --provenance paths.tsv
      imgtool flatten oci:examples/sample-oci:1.1 -o - | tar -t
    """
    from imgtool.flatten.api import default_max_size
    from imgtool.flatten.api import flatten as flatten_image

    as_tar = force_tar or output == "-" or output.endswith(".tar")
    with open_image(image, platform) as img:
        result = flatten_image(
            img,
            sys.stdout.buffer if output == "-" else output,
            as_tar=as_tar,
            force=force,
            upto=upto,
            cache=cache_for(no_cache),
            progress=progress_for(quiet),
            max_size=max_size if max_size is not None else default_max_size(output),
            provenance=provenance,
            safe=safe,
            warn=warn,
        )
    if result.safe is not None and not quiet:
        changed = [
            f"left out {result.safe.devices} device nodes" if result.safe.devices else "",
            f"cleared setuid/setgid bits of {result.safe.setid} entries" if result.safe.setid else "",
            f"dropped {result.safe.xattrs} extended attributes" if result.safe.xattrs else "",
        ]
        if any(changed):
            click.echo("imgtool: --safe: " + ", ".join(word for word in changed if word), err=True)
    if output == "-":
        sys.stdout.buffer.flush()
    if not quiet:
        data = human_size(result.data_bytes)
        dest = "stdout" if output == "-" else output
        click.echo(f"imgtool: wrote {result.paths} paths ({data} of file data) to {dest}", err=True)


def _merged(
    img: Image,
    *,
    no_cache: bool,
    quiet: bool = False,
    upto: int | None = None,
    recorder: ChangeRecorder | None = None,
) -> MergedView:
    from imgtool.merge.view import merged_view

    return merged_view(
        img, upto=upto, cache=cache_for(no_cache), progress=progress_for(quiet), recorder=recorder, warn=warn
    )


def _mode(entry: Any) -> str:
    return f"{entry.mode:04o}"


@cli.command("which-layer")
@image_argument
@click.argument("paths", nargs=-1, required=True, metavar="PATH...", shell_complete=complete_image_path)
@platform_option
@no_cache_option
@quiet_option
@output_options
def which_layer(
    image: str,
    paths: tuple[str, ...],
    platform: str | None,
    no_cache: bool,
    quiet: bool,
    as_json: bool,
    table_format: str,
) -> None:
    """Say which layer supplies each PATH, and its history.

    PATH may be a shell pattern ('/usr/lib/*.so*'); symlinks in PATH are followed
    inside the image, as a container would see them. Exits 1 if a path is absent.

    \b
    Example:
      imgtool which-layer examples/sample.tar /bin/hello '/etc/app/*'
    """
    from imgtool.merge.changes import ChangeLog
    from imgtool.ops.which import answers_for, to_json

    log = ChangeLog()
    with open_image(image, platform) as img:
        view = _merged(img, no_cache=no_cache, quiet=quiet or as_json, recorder=log)
        answers = answers_for(view.tree, log, list(paths))
        if as_json:
            click.echo(to_json_list([to_json(img, a) for a in answers]))
        else:
            for number, item in enumerate(answers):
                if number:
                    click.echo()
                _render_answer(img, item, table_format)
    if not all(a.exists for a in answers):
        sys.exit(1)


def to_json_list(items: list[Any]) -> str:
    return to_json(items)


def _render_answer(img: Image, item: Any, table_format: str) -> None:
    from imgtool.layers.paths import display, escape
    from imgtool.layers.tarstream import Kind
    from imgtool.merge.changes import ChangeWord

    if item.unmatched_pattern:
        click.echo(f"{escape_text(item.asked)}: no path in the image matches")
        return
    name = display(item.path)
    node = item.node
    if node is None:
        removed = item.removed_by
        if removed is not None:
            layer = img.layers[removed.layer]
            click.echo(
                f"{name}: not in the image: {removed.change} by layer {removed.layer} ({short(layer.digest)})"
            )
        else:
            click.echo(f"{name}: not in the image: no layer ever had it")
    else:
        layer_text = "the base (implied root)" if node.layer < 0 else f"layer {node.layer}"
        click.echo(f"{name}")
        for step in item.via:
            target = escape(step.target)
            click.echo(f"  via symlink {display(step.path)} -> {target} (layer {step.layer})")
        if node.layer >= 0:
            layer = img.layers[node.layer]
            click.echo(
                f"  supplied by {layer_text}  {short(layer.digest)}  {_one_line(layer.created_by, 70)}"
            )
        content = node.content
        if content is None:
            click.echo("  dir  0755  0:0  (implied by entries below it)")
        else:
            entry = node.entry
            kind = entry.kind_name if entry is not None else Kind.DIR.word
            size = human_size(content.size) if content.kind == Kind.FILE else "-"
            link = f"  -> {_linkname_text(entry)}" if entry is not None and entry.link else ""
            click.echo(f"  {kind}  {size}  {_mode(content)}  {content.uid}:{content.gid}{link}")
    if item.history:
        colour = use_colour(sys.stdout)
        rows = [
            (
                c.layer,
                short(img.layers[c.layer].digest),
                change_word(c.change, colour),
                ", ".join(c.what) or ("unchanged" if c.change == ChangeWord.MODIFIED else "-"),
                c.kind,
            )
            for c in item.history
        ]
        lines = table(rows, ["layer", "digest", "change", "what", "type"], table_format).splitlines()
        click.echo("  history:")
        for line in lines:
            click.echo(f"    {line}")


def _linkname_text(entry: Any) -> str:
    from imgtool.layers.paths import display, escape
    from imgtool.layers.tarstream import Kind

    if entry.kind == Kind.SYMLINK:
        return escape(entry.link)
    return display(entry.link)


@cli.command("ls")
@image_argument
@click.argument("path", default="/", required=False, shell_complete=complete_image_path)
@click.option("-R", "--recursive", is_flag=True, help="List everything below PATH.")
@click.option("--layer", "layer_number", type=int, metavar="N", help="The tree as it stood after layer N.")
@click.option(
    "--only", is_flag=True, help="With --layer: only layer N's own entries (whiteouts as deletions)."
)
@click.option(
    "-L", "--dereference", is_flag=True, help="Show what each symlink points to, not the link itself."
)
@platform_option
@no_cache_option
@quiet_option
@output_options
def ls(
    image: str,
    path: str,
    recursive: bool,
    layer_number: int | None,
    only: bool,
    dereference: bool,
    platform: str | None,
    no_cache: bool,
    quiet: bool,
    as_json: bool,
    table_format: str,
) -> None:
    """List the image's tree, with the layer of each entry.

    PATH (default /) is listed as the final image has it, or as it stood after
    layer N; with --only, layer N's own entries are listed, whiteouts included.
    PATH may be a shell pattern ('/usr/lib/*.so*'), each match listed as if named.
    Symlinks in PATH's parents are followed inside the image; PATH itself, if a
    symlink, is listed as the link unless it leads to a directory (or with -L).

    \b
    Examples:
      imgtool ls examples/sample.tar /etc
      imgtool ls examples/sample.tar '/usr/bin/h*'
      imgtool ls examples/sample.tar / -R --layer 3 --only
    """
    from imgtool.layers.paths import display
    from imgtool.layers.tarstream import Kind
    from imgtool.merge.index import index_image
    from imgtool.merge.lookup import normalize_query
    from imgtool.merge.view import check_layer_number
    from imgtool.ops.listing import list_layer, list_query, mode_string, row_json, time_string

    if only and layer_number is None:
        raise UsageError("--only needs --layer N")
    target = normalize_query(path)
    with open_image(image, platform) as img:
        check_layer_number(img, layer_number, "--layer")
        if only:
            assert layer_number is not None
            indexes = index_image(
                img,
                cache=cache_for(no_cache),
                progress=progress_for(quiet or as_json),
                upto=layer_number,
                warn=warn,
            )
            rows = list_layer(indexes[layer_number], layer_number, target)
        else:
            view = _merged(img, no_cache=no_cache, quiet=quiet or as_json, upto=layer_number)
            rows = list_query(view.tree, path, recursive, dereference)
        digests = [str(layer.digest) for layer in img.layers]
    if as_json:
        click.echo(to_json([row_json(r, digests) for r in rows]))
        return
    table_rows = []
    file, whiteout, opaque, symlink = Kind.FILE, Kind.WHITEOUT.word, Kind.OPAQUE.word, Kind.SYMLINK.word
    for row in rows:
        entry = row.entry
        name = display(row.path)
        if row.kind in (whiteout, opaque):
            name = f"{name} ({'deleted' if row.kind == whiteout else 'opaque: lower contents hidden'})"
        elif row.target is not None:
            name = f"{name} {'->' if row.kind == symlink else '=>'} {row.target}"
        table_rows.append(
            (
                mode_string(entry),
                f"{entry.uid}:{entry.gid}",
                str(entry.size) if entry.kind == file else "",
                time_string(entry.mtime_ns),
                "-" if row.layer is None else str(row.layer),
                name,
            )
        )
    click.echo(table(table_rows, ["mode", "owner", "size", "mtime", "layer", "path"], table_format))


@cli.command("cat")
@image_argument
@click.argument("path", shell_complete=complete_image_path)
@platform_option
@no_cache_option
def cat(image: str, path: str, platform: str | None, no_cache: bool) -> None:
    """Write a file of the final image to stdout.

    Symlinks are followed inside the image. Only the layer holding the file is read.

    \b
    Example:
      imgtool cat examples/sample.tar /etc/app/app.conf
    """
    from imgtool.merge.lookup import normalize_query
    from imgtool.ops.readfile import read_file

    with open_image(image, platform) as img:
        view = _merged(img, no_cache=no_cache, quiet=True)
        out = sys.stdout.buffer
        read_file(img, view.tree, normalize_query(path), out)
        out.flush()


@cli.group("diff")
def diff_group() -> None:
    """Compare layers of one image, or two images.

    \b
    Examples:
      imgtool diff layers examples/sample.tar
      imgtool diff images examples/sample.tar oci:examples/sample-oci:1.1
    """


@diff_group.command("layers")
@image_argument
@click.argument("first", type=int, required=False, metavar="[A")
@click.argument("second", type=int, required=False, metavar="[B]]")
@click.option("-v", "--verbose", is_flag=True, help="List every change of every layer.")
@click.option("--top", default=10, show_default=True, help="How many space-wasting paths to show.")
@platform_option
@no_cache_option
@quiet_option
@output_options
def diff_layers(
    image: str,
    first: int | None,
    second: int | None,
    verbose: bool,
    top: int,
    platform: str | None,
    no_cache: bool,
    quiet: bool,
    as_json: bool,
    table_format: str,
) -> None:
    """Show what each layer changed, or layer A against layer B.

    Without A: a summary per layer (added, modified, deleted) and the space that
    later layers made unreachable. With A: every change of layer A. With A and B:
    the tree after layer A against the tree after layer B (as git diff A B: with
    B below A, what would undo the layers between them).

    \b
    Examples:
      imgtool diff layers examples/sample.tar          # a summary per layer, and wasted space
      imgtool diff layers examples/sample.tar 2 -v     # every change of layer 2
      imgtool diff layers examples/sample.tar 1 3      # after layer 1 against after layer 3
    """
    from imgtool.merge.changes import ChangeLog
    from imgtool.merge.view import apply_indexes, check_layer_number
    from imgtool.ops.diff import change_json, compare_trees, efficiency, summarize_layers

    log = ChangeLog()
    with open_image(image, platform) as img:
        check_layer_number(img, first, "A =")
        check_layer_number(img, second, "B =")
        if first is not None and second is not None:
            view = _merged(img, no_cache=no_cache, quiet=quiet or as_json, upto=max(first, second))
            lower = apply_indexes(img, view.indexes, upto=min(first, second))
            changes = compare_trees(*((lower, view.tree) if first <= second else (view.tree, lower)))
            if as_json:
                click.echo(
                    to_json({"from": first, "to": second, "changes": [change_json(c) for c in changes]})
                )
            elif changes:
                _render_changes(changes, table_format)
            else:
                click.echo(f"no changes from layer {first} to layer {second}")
            return
        view = _merged(img, no_cache=no_cache, quiet=quiet or as_json, recorder=log)
        summaries = summarize_layers(img, log)
        waste = efficiency(view, log, top)
    if first is not None:
        summaries = [summaries[first]]
        verbose = True
    if as_json:
        docs = [
            {
                "index": s.index,
                "digest": s.digest,
                "created_by": s.created_by,
                "changes": [change_json(c) for c in s.changes],
                "summary": {
                    "added": s.added,
                    "modified": s.modified,
                    "metadata_only": s.metadata_only,
                    "deleted": s.deleted,
                    "bytes_added": s.bytes_added,
                    "bytes_unreachable": s.bytes_unreachable,
                },
            }
            for s in summaries
        ]
        click.echo(to_json(docs))
        return
    rows = [
        (
            s.index,
            _one_line(s.created_by, 50),
            s.added,
            f"{s.modified} ({s.metadata_only} metadata only)" if s.metadata_only else s.modified,
            s.deleted,
            human_size(s.bytes_added),
            human_size(s.bytes_unreachable),
        )
        for s in summaries
    ]
    headers = ["#", "created_by", "added", "modified", "deleted", "bytes added", "bytes made unreachable"]
    click.echo(table(rows, headers, table_format))
    if verbose:
        for s in summaries:
            click.echo(f"\nlayer {s.index} ({short(s.digest)}): {_one_line(s.created_by, 80)}")
            _render_changes(s.changes, table_format)
    if first is None:
        click.echo()
        click.echo(
            f"Image efficiency: {waste.score * 100:.1f}%  (layers store {human_size(waste.stored_bytes)}, "
            f"the final tree holds {human_size(waste.final_bytes)}, wasted {human_size(waste.wasted_bytes)})"
        )
        if waste.top_wasters:
            from imgtool.layers.paths import display

            top_rows = [(human_size(b), n, display(p)) for p, b, n in waste.top_wasters]
            click.echo(table(top_rows, ["wasted", "versions lost", "path"], table_format))


def _render_changes(changes: list[Any], table_format: str) -> None:
    from imgtool.layers.paths import display
    from imgtool.layers.tarstream import Kind

    colour = use_colour(sys.stdout)
    file = Kind.FILE.word
    rows = [
        (
            change_word(c.change, colour),
            c.kind,
            human_size(c.size) if c.kind == file else "",
            ", ".join(c.what),
            display(c.path),
        )
        for c in changes
    ]
    click.echo(table(rows, ["change", "type", "size", "what", "path"], table_format))


@diff_group.command("images")
@click.argument("image1", metavar="IMAGE1", shell_complete=complete_image)
@click.argument("image2", metavar="IMAGE2", shell_complete=complete_image)
@platform_option
@no_cache_option
@quiet_option
@output_options
def diff_images(
    image1: str,
    image2: str,
    platform: str | None,
    no_cache: bool,
    quiet: bool,
    as_json: bool,
    table_format: str,
) -> None:
    """Compare the final trees of two images.

    Exits 0 if they are identical, 1 if they differ.

    \b
    Example:
      imgtool diff images examples/sample.tar oci:examples/sample-oci:1.1
    """
    from imgtool.merge.changes import ChangeWord
    from imgtool.ops.diff import change_json, compare_trees, shared_layers

    with open_image(image1, platform) as first, open_image(image2, platform) as second:
        view1 = _merged(first, no_cache=no_cache, quiet=quiet or as_json)
        view2 = _merged(second, no_cache=no_cache, quiet=quiet or as_json)
        changes = compare_trees(view1.tree, view2.tree)
        base, shared = shared_layers(first, second)
    counts = {
        word: sum(1 for c in changes if c.change == word)
        for word in (ChangeWord.ADDED, ChangeWord.MODIFIED, ChangeWord.DELETED)
    }
    if as_json:
        click.echo(
            to_json(
                {
                    "first": image1,
                    "second": image2,
                    "identical": not changes,
                    "shared_base_layers": base,
                    "shared_diff_ids": shared,
                    "changes": [change_json(c) for c in changes],
                    "summary": counts,
                }
            )
        )
    else:
        if changes:
            _render_changes(changes, table_format)
            click.echo()
        click.echo(
            f"{counts[ChangeWord.ADDED]} added, {counts[ChangeWord.MODIFIED]} modified, "
            f"{counts[ChangeWord.DELETED]} deleted; " + _shared_text(base, len(shared))
        )
    if changes:
        sys.exit(1)


def _shared_text(base: int, shared: int) -> str:
    """The layers two images have in common, said once when they are all the shared base."""

    def layers(count: int) -> str:
        return f"{count} layer{'' if count == 1 else 's'}"

    if shared == base:
        return f"{layers(base)} in common, all at the base" if base else "no layers in common"
    return f"{layers(shared)} in common, {base} of them at the base"


@cli.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    \b
    Examples:
      imgtool completion bash > ~/.local/share/bash-completion/completions/imgtool
      imgtool completion zsh > ~/.zfunc/_imgtool
      imgtool completion fish > ~/.config/fish/completions/imgtool.fish
    """
    click.echo(completion_script(cli, shell), nl=False)


# -- entry point -------------------------------------------------------------------------------


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; every ImgtoolError becomes one ``imgtool: error:`` line and its exit code."""
    signal.signal(signal.SIGTERM, _interrupt)
    keep_freed_memory()
    # Indexes, trees and change logs are large and free of reference cycles: the cycle collector
    # would only walk them again and again (a tenth of a warm which-layer's time).
    collecting = gc.isenabled()
    gc.disable()
    try:
        _main(list(argv) if argv is not None else sys.argv[1:])
    finally:
        if collecting:
            gc.enable()


def _main(args: list[str]) -> NoReturn:
    if os.environ.get(COMPLETE_VAR):
        cli.main(args=args, prog_name="imgtool")  # shell completion: click answers and exits
    try:
        with cli.make_context("imgtool", args) as ctx:
            result = cli.invoke(ctx)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        fail("interrupted", 130)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else "")
        sys.exit(0)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        fail(f"{exc.format_message()}{hint}", 2)
    except click.ClickException as exc:
        fail(exc.format_message(), exc.exit_code)
    except ImgtoolError as exc:
        if _debug:
            traceback.print_exc()
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BrokenPipeError:
        _quiet_broken_pipe()
    except OSError as exc:
        if _debug:
            traceback.print_exc()
        name = os.fsdecode(exc.filename) if isinstance(exc.filename, (str, bytes)) else exc.filename
        fail(f"{f'{name}: ' if name else ''}{exc.strerror or exc}", 1)
    except Exception as exc:  # a bug; the user still gets one line, and --debug the traceback
        if _debug:
            traceback.print_exc()
        fail(f"internal error: {type(exc).__name__}: {exc} (a bug in imgtool; --debug shows where)", 1)
    sys.exit(result if isinstance(result, int) else 0)


def _quiet_broken_pipe() -> NoReturn:
    """The reader went away (``imgtool ... | head``): exit without a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(141)
