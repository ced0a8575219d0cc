"""The command line: parse arguments, call the library, render. No image logic lives here."""

from __future__ import annotations

import gc
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

import click

from imgtool import __version__
from imgtool.console import render
from imgtool.console.completion import COMPLETE_VAR, SHELLS, completion_script
from imgtool.console.output import TerminalProgress, clean, use_colour
from imgtool.console.params import IMAGE, IMAGE_PATH, image_argument, image_options
from imgtool.errors import ImgtoolError, UsageError
from imgtool.image.model import Platform
from imgtool.merge.index import IndexCache
from imgtool.ops.common import Reading
from imgtool.progress import NoProgress, Progress
from imgtool.sources import open_image
from imgtool.system.libc import keep_freed_memory

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


def reading(no_cache: bool = False, quiet: bool = False) -> Reading:
    """How the commands read layers: the index cache unless --no-cache, a progress bar on a terminal."""
    return Reading(None if no_cache else IndexCache(), progress_for(quiet), warn)


def out(text: str) -> None:
    click.echo(text, nl=False)


def colour() -> bool:
    return use_colour(sys.stdout)


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
@click.option("--no-trunc", is_flag=True, help="Show full digests in the layer table.")
@image_options(cache=False, quiet=False)
def inspect(image: str, no_trunc: bool, platform: Platform | None, as_json: bool, table_format: str) -> None:
    """Show an image's manifest, config, platform and layers.

    \b
    Examples:
      imgtool inspect examples/sample.tar
      imgtool inspect oci:examples/sample-oci:1.1 --json
    """
    from imgtool.ops import summary

    with open_image(image, platform) as img:
        doc = summary.describe_image(img)
    for message in doc["warnings"]:
        warn(message)
    out(render.json_text(doc) if as_json else render.inspect_text(doc, no_trunc, table_format))


@cli.command()
@image_argument
@image_options(cache=False)
def verify(image: str, platform: Platform | None, quiet: bool, as_json: bool, table_format: str) -> None:
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
    out(render.verify_json(findings) if as_json else render.verify_text(findings, table_format, colour()))
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
@image_options(output=False)
def flatten(
    image: str,
    output: str,
    force_tar: bool,
    force: bool,
    safe: bool,
    upto: int | None,
    provenance: str | None,
    max_size: int | None,
    platform: Platform | None,
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

    with open_image(image, platform) as img:
        result = flatten_image(
            img,
            sys.stdout.buffer if output == "-" else output,
            as_tar=force_tar or output == "-" or output.endswith(".tar"),
            force=force,
            upto=upto,
            cache=None if no_cache else IndexCache(),
            progress=progress_for(quiet),
            max_size=max_size if max_size is not None else default_max_size(output),
            provenance=provenance,
            safe=safe,
            warn=warn,
        )
    note = render.safe_note(result.safe) if result.safe is not None and not quiet else None
    if note:
        click.echo(note, err=True)
    if output == "-":
        sys.stdout.buffer.flush()
    if not quiet:
        click.echo(render.wrote_note(result, output), err=True)


@cli.command("which-layer")
@image_argument
@click.argument("paths", nargs=-1, required=True, metavar="PATH...", type=IMAGE_PATH)
@image_options()
def which_layer(
    image: str,
    paths: tuple[str, ...],
    platform: Platform | None,
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
    from imgtool.ops.which import which_layer as which

    with open_image(image, platform) as img:
        result = which(img, list(paths), reading(no_cache, quiet or as_json))
    out(render.which_json(result) if as_json else render.which_text(result, table_format, colour()))
    if not result.all_found:
        sys.exit(1)


@cli.command("ls")
@image_argument
@click.argument("path", default="/", required=False, type=IMAGE_PATH)
@click.option("-R", "--recursive", is_flag=True, help="List everything below PATH.")
@click.option("--layer", "layer_number", type=int, metavar="N", help="The tree as it stood after layer N.")
@click.option(
    "--only", is_flag=True, help="With --layer: only layer N's own entries (whiteouts as deletions)."
)
@click.option(
    "-L", "--dereference", is_flag=True, help="Show what each symlink points to, not the link itself."
)
@image_options()
def ls(
    image: str,
    path: str,
    recursive: bool,
    layer_number: int | None,
    only: bool,
    dereference: bool,
    platform: Platform | None,
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
    from imgtool.ops.listing import list_image

    if only and layer_number is None:
        raise UsageError("--only needs --layer N")
    with open_image(image, platform) as img:
        listing = list_image(
            img,
            path,
            reading(no_cache, quiet or as_json),
            recursive=recursive,
            layer=layer_number,
            only=only,
            dereference=dereference,
        )
    out(render.ls_json(listing) if as_json else render.ls_text(listing, table_format))


@cli.command("cat")
@image_argument
@click.argument("path", type=IMAGE_PATH)
@image_options(quiet=False, output=False)
def cat(image: str, path: str, platform: Platform | None, no_cache: bool) -> None:
    """Write a file of the final image to stdout.

    Symlinks are followed inside the image. Only the layer holding the file is read.

    \b
    Example:
      imgtool cat examples/sample.tar /etc/app/app.conf
    """
    from imgtool.ops.readfile import cat as cat_file

    with open_image(image, platform) as img:
        cat_file(img, path, sys.stdout.buffer, reading(no_cache, quiet=True))
        sys.stdout.buffer.flush()


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
@image_options()
def diff_layers(
    image: str,
    first: int | None,
    second: int | None,
    verbose: bool,
    top: int,
    platform: Platform | None,
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
    from imgtool.ops.diff import diff_layers as diff

    with open_image(image, platform) as img:
        result = diff(img, reading(no_cache, quiet or as_json), first, second, top)
    if as_json:
        out(render.diff_layers_json(result))
    else:
        out(render.diff_layers_text(result, verbose, table_format, colour()))


@diff_group.command("images")
@click.argument("image1", metavar="IMAGE1", type=IMAGE)
@click.argument("image2", metavar="IMAGE2", type=IMAGE)
@image_options()
def diff_images(
    image1: str,
    image2: str,
    platform: Platform | None,
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
    from imgtool.ops.diff import diff_images as diff

    with open_image(image1, platform) as first, open_image(image2, platform) as second:
        result = diff(first, second, reading(no_cache, quiet or as_json))
    if as_json:
        out(render.diff_images_json(result, image1, image2))
    else:
        out(render.diff_images_text(result, table_format, colour()))
    if not result.identical:
        sys.exit(1)


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
