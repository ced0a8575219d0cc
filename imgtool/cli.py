"""The command line: parse arguments, call the library, render. No image logic lives here."""

from __future__ import annotations

import functools
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, ParamSpec, TypeVar

import click

from imgtool import __version__
from imgtool.errors import ImgtoolError, UsageError
from imgtool.image import Image
from imgtool.index import IndexCache
from imgtool.output import (
    DEFAULT_TABLE_FORMAT,
    TABLE_FORMATS,
    TerminalProgress,
    human_size,
    style,
    table,
    to_json,
    use_colour,
)
from imgtool.progress import NoProgress, Progress
from imgtool.sources import open_image

P = ParamSpec("P")
R = TypeVar("R")

_debug = False

EXAMPLE_IMAGE = "docker-archive:img.tar"


def warn(message: str) -> None:
    click.echo(f"imgtool: warning: {message}", err=True)


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"imgtool: error: {message}", err=True)
    sys.exit(code)


def progress_for(quiet: bool) -> Progress:
    return TerminalProgress() if sys.stderr.isatty() and not quiet else NoProgress()


def cache_for(no_cache: bool) -> IndexCache | None:
    return None if no_cache else IndexCache()


# -- shared options ----------------------------------------------------------------------------

image_argument = click.argument("image", metavar="IMAGE")
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


def opened(reference: str, platform: str | None) -> Image:
    return open_image(reference, platform)


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

    IMAGE is a docker-save tarball, an OCI archive or an OCI layout directory
    (detected from what is there), or explicitly one of
    oci:DIR[:REF], oci-archive:PATH[:REF], docker-archive:PATH[:NAME:TAG|:@N].
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
    Example:
      imgtool inspect docker-archive:img.tar:busybox:latest --json
    """
    from imgtool.summary import describe_image

    with opened(image, platform) as img:
        doc = describe_image(img)
    if as_json:
        click.echo(to_json(doc))
        return
    fields = [
        ("Reference", doc["reference"]),
        ("Manifest", f"{doc['manifest_digest'] or '(none)'} ({doc['manifest_media_type']})"),
        ("Config", doc["config_digest"]),
        ("Platform", doc["platform"]),
        ("Created", doc["created"] or "-"),
        ("Tags", ", ".join(doc["tags"]) or "-"),
        ("Entrypoint", _command_text(doc["entrypoint"])),
        ("Cmd", _command_text(doc["cmd"])),
        ("WorkingDir", doc["working_dir"] or "-"),
        ("User", doc["user"] or "-"),
        ("Env", "\n".join(doc["env"]) or "-"),
    ]
    for name, value in fields:
        lines = str(value).splitlines() or [""]
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
            layer["media_type"].rsplit(".", 1)[-1] if not no_trunc else layer["media_type"],
            layer["compression"],
            _one_line(layer["created_by"], None if no_trunc else 60),
        )
        for layer in doc["layers"]
    ]
    click.echo(
        table(rows, ["#", "digest", "diff_id", "size", "type", "compression", "created_by"], table_format)
    )


def _command_text(value: Any) -> str:
    if not value:
        return "-"
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def _one_line(text: str | None, limit: int | None) -> str:
    if not text:
        return "-"
    flat = " ".join(text.split())
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
      imgtool verify oci:./layout:latest
    """
    from imgtool.verify import all_ok, verify_image

    with opened(image, platform) as img:
        findings = verify_image(img, progress_for(quiet or as_json))
    if as_json:
        click.echo(to_json([f.__dict__ if not hasattr(f, "__slots__") else _slots(f) for f in findings]))
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


def _slots(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}


@cli.command()
@image_argument
@click.option(
    "-o",
    "--output",
    required=True,
    metavar="DIR|FILE.tar|-",
    help="A directory (must not exist or be empty), a .tar file, or - for a tar stream on stdout.",
)
@click.option(
    "--tar", "force_tar", is_flag=True, help="Write a tar file even if the name does not end in .tar."
)
@click.option("--force", is_flag=True, help="Replace a non-empty output directory or an existing tar file.")
@click.option("--layers", "upto", type=int, metavar="N", help="Stop after layer N (0 is the bottom layer).")
@click.option(
    "--provenance",
    type=click.Path(dir_okay=False, writable=True),
    metavar="FILE",
    help="Also write which layer supplied each path (TSV, or JSON if FILE ends in .json).",
)
@click.option(
    "--max-size",
    type=int,
    metavar="BYTES",
    help="Refuse a layer whose uncompressed tar exceeds BYTES (default: the free space at the output).",
)
@platform_option
@no_cache_option
@quiet_option
def flatten(
    image: str,
    output: str,
    force_tar: bool,
    force: bool,
    upto: int | None,
    provenance: str | None,
    max_size: int | None,
    platform: str | None,
    no_cache: bool,
    quiet: bool,
) -> None:
    """Apply an image's layers and write the root filesystem a container would see.

    Whiteouts (.wh.NAME, .wh..wh..opq and their overlayfs forms) are applied
    as docker, containerd and umoci apply them. Nothing is written outside
    the output, and a directory output appears only once it is complete.

    \b
    Examples:
      imgtool flatten img.tar -o rootfs
      imgtool flatten oci:layout:app -o rootfs.tar --provenance paths.tsv
      imgtool flatten img.tar -o - | tar -t
    """
    from imgtool.export import flatten_to_tar_file, write_tar
    from imgtool.rootfs import flatten_to_dir
    from imgtool.view import merged_view

    progress = progress_for(quiet)
    limit = max_size if max_size is not None else _free_space(output)
    with opened(image, platform) as img:
        view = merged_view(
            img, upto=upto, cache=cache_for(no_cache), progress=progress, max_size=limit, warn=warn
        )
        if output == "-":
            stdout = sys.stdout.buffer
            write_tar(view, stdout, progress, limit)
            stdout.flush()
        elif force_tar or output.endswith(".tar"):
            flatten_to_tar_file(view, output, progress, limit, force)
        else:
            stats = flatten_to_dir(view, output, force=force, progress=progress, max_size=limit, warn=warn)
            if not quiet:
                data = human_size(stats.data_bytes)
                click.echo(f"imgtool: wrote {stats.paths} paths ({data} of file data) to {output}", err=True)
        if provenance:
            from imgtool.provenance import write_provenance

            write_provenance(view, provenance)


def _free_space(output: str) -> int | None:
    if output == "-":
        return None
    directory = os.path.dirname(os.path.abspath(output)) or "."
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


# -- entry point -------------------------------------------------------------------------------


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; every ImgtoolError becomes one ``imgtool: error:`` line and its exit code."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None, prog_name="imgtool", standalone_mode=False
        )
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        fail("interrupted", 130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
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
        fail(f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}", 1)
    sys.exit(result if isinstance(result, int) else 0)


def _quiet_broken_pipe() -> NoReturn:
    """The reader went away (``imgtool ... | head``): exit without a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(141)


__all__ = ["UsageError", "cli", "functools", "main"]
