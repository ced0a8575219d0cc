"""The command line: each command parses its arguments, makes one library call (imported when the
command runs, so that each loads only what it uses) and renders what it returns."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from imgtool.console import params as p
from imgtool.console import render
from imgtool.console.app import cli
from imgtool.console.completion import SHELLS, completion_script
from imgtool.console.funnel import fail, run, show, show_bytes, warn
from imgtool.sources import catalog, open_image

__all__ = ["cli", "entry", "fail", "main", "warn"]


@cli.command()
@p.image_argument
@click.option("--no-trunc", is_flag=True, help="Show full digests in the layer table.")
@p.raw_options
@p.image_options(cache=False, quiet=False)
def inspect(image: str, no_trunc: bool, document: str | None, opts: p.ImageOptions) -> None:
    """Show an image's manifest, config, platform and layers.

    \b
    Examples:
      imgtool inspect examples/sample.tar
      imgtool inspect oci:examples/sample-oci:1.1 --json
      imgtool inspect oci:examples/sample-oci:1.1 --raw | jq .layers
    """
    from imgtool.ops import summary
    from imgtool.ops.raw import raw_document

    with open_image(image, opts.platform, opts.registry) as img:
        if document is not None:
            show_bytes(*raw_document(img, document, opts.platform is not None))
            return
        facts = summary.describe_image(img)
    for message in facts.warnings:
        warn(message)
    show(render.inspect(facts, no_trunc, opts))


@cli.command()
@p.image_argument
@p.image_options(cache=False)
def verify(image: str, opts: p.ImageOptions) -> None:
    """Check every blob of an image against its digest.

    Reads each layer in full and checks its blob digest and its diff_id.
    Exits 0 only if everything matches.

    \b
    Example:
      imgtool verify examples/sample.tar
    """
    from imgtool.ops.verify import all_ok, verify_image

    with open_image(image, opts.platform, opts.registry) as img:
        findings = verify_image(img, opts.progress)
    show(render.verify(findings, opts), all_ok(findings))


@cli.command()
@p.image_argument
@p.flatten_options
@p.image_options(output=False)
def flatten(image: str, how: p.FlattenOptions, opts: p.ImageOptions) -> None:
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
    from imgtool.flatten.api import flatten as flatten_image  # loaded for flatten only

    output = how.output
    with open_image(image, opts.platform, opts.registry) as img:
        target = sys.stdout.buffer if output == "-" else output
        result = flatten_image(img, target, **how.arguments(opts.reading()))
    if output == "-":
        sys.stdout.buffer.flush()
    for note in [] if opts.quiet else render.flatten_notes(result, output):
        click.echo(note, err=True)


@cli.command("which-layer")
@p.image_argument
@click.argument("paths", nargs=-1, required=True, metavar="PATH...", type=p.IMAGE_PATH)
@p.image_options()
def which_layer(image: str, paths: tuple[str, ...], opts: p.ImageOptions) -> None:
    """Say which layer supplies each PATH, and its history.

    PATH may be a shell pattern ('/usr/lib/*.so*'); symlinks in PATH are followed
    inside the image, as a container would see them. Exits 1 if a path is absent.

    \b
    Example:
      imgtool which-layer examples/sample.tar /bin/hello '/etc/app/*'
    """
    from imgtool.ops.which import which_layer as which

    with open_image(image, opts.platform, opts.registry) as img:
        result = which(img, list(paths), opts.reading())
    show(render.which(result, opts), result.all_found)


@cli.command("ls")
@p.image_argument
@click.argument("path", default="/", required=False, type=p.IMAGE_PATH)
@p.ls_options
@p.image_options()
def ls(image: str, path: str, how: p.LsOptions, opts: p.ImageOptions) -> None:
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
      imgtool ls examples/sample.tar / -R --type f --sort size
    """
    from imgtool.ops.listing import list_image

    arguments = how.arguments()
    with open_image(image, opts.platform, opts.registry) as img:
        listing = list_image(img, path, opts.reading(), **arguments)
    show(render.ls(listing, opts))


@cli.command("cat")
@p.image_argument
@click.argument("path", type=p.IMAGE_PATH)
@p.layer_option
@p.image_options(quiet=False, output=False)
def cat(image: str, path: str, layer_number: int | None, opts: p.ImageOptions) -> None:
    """Write a file of the final image to stdout.

    With --layer N, the file as it stood after layer N. Symlinks are followed
    inside the image. Only the layer holding the file is read.

    \b
    Examples:
      imgtool cat examples/sample.tar /etc/app/app.conf
      imgtool cat examples/sample.tar /opt/app/share/install.log --layer 1
    """
    from imgtool.ops.readfile import cat as cat_file

    with open_image(image, opts.platform, opts.registry) as img:
        cat_file(img, path, sys.stdout.buffer, opts.reading(quiet=True), layer_number)
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
@p.image_argument
@p.diff_layers_options
@p.image_options()
def diff_layers(image: str, how: p.DiffLayersOptions, opts: p.ImageOptions) -> None:
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
    from imgtool.ops.diff import diff_layers as layers_diff

    with open_image(image, opts.platform, opts.registry) as img:
        result = layers_diff(img, opts.reading(), how.first, how.second, how.top)
    show(render.diff_layers(result, how.verbose, opts))


@diff_group.command("images")
@click.argument("image1", metavar="IMAGE1", type=p.IMAGE)
@click.argument("image2", metavar="IMAGE2", type=p.IMAGE)
@p.image_options()
def diff_images(image1: str, image2: str, opts: p.ImageOptions) -> None:
    """Compare the final trees of two images.

    Exits 0 if they are identical, 1 if they differ.

    \b
    Example:
      imgtool diff images examples/sample.tar oci:examples/sample-oci:1.1
    """
    from imgtool.ops.diff import diff_images as images_diff

    with (
        open_image(image1, opts.platform, opts.registry) as first,
        open_image(image2, opts.platform, opts.registry) as second,
    ):
        result = images_diff(first, second, opts.reading())
    show(render.diff_images(result, image1, image2, opts), result.identical)


@cli.command("copy")
@click.argument("src", metavar="SRC", type=p.IMAGE)
@click.argument("dest", metavar="DEST", type=p.IMAGE)
@p.copy_options
@p.image_options(cache=False, output=False)
def copy_command(src: str, dest: str, jobs: int, all_platforms: bool, opts: p.ImageOptions) -> None:
    """Copy an image to an OCI layout or a registry.

    DEST: oci:DIR[:REF] or docker://HOST/REPO[:TAG]. Of an index, one image (--platform) or all.

    \b
    Example:
      imgtool copy oci:examples/sample-oci:1.1 docker://localhost:5000/sample:1.1"""
    from imgtool.ops import copy
    from imgtool.sources import open_copy

    with open_copy(src, dest, opts.platform, opts.registry, all_platforms) as (what, out):
        show(render.copy(copy.copy_image(what, out, jobs=jobs, progress=opts.progress), opts))


@cli.command("images")
@click.argument("path", metavar="PATH", type=p.IMAGE)
@p.output_options
def images(path: str, opts: p.ImageOptions) -> None:
    """List the images of an archive or a layout.

    PATH is a docker-save tarball, an OCI archive or an OCI layout. Each image
    with the name that opens it (p.IMAGE is PATH:NAME), platform, manifest digest,
    size (config and layer blobs as stored) and creation time.

    \b
    Example:
      imgtool images examples/sample-oci --json
    """
    show(render.images(catalog(path), opts))


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


@cli.command("squash")
@click.argument("image", metavar="IMAGE", type=p.IMAGE)
@click.argument("dest", metavar="DEST", type=p.IMAGE)
@p.squash_options
@p.image_options(output=False)
def squash(image: str, dest: str, how: p.SquashOptions, opts: p.ImageOptions) -> None:
    """Merge layers N to M of an image into one layer.

    Writes IMAGE to DEST (as copy does: oci:DIR[:REF], docker://HOST/REPO[:TAG])
    with its layers --from N to --to M (default: all) merged into one, what flatten
    gives for them plus whiteouts for what they removed of the layers below; the
    other layers are kept as they are, the history entries of the range are folded
    into one.

    \b
    Example:
      imgtool squash oci:examples/sample-oci:1.1 oci:squashed:1.1 --from 1 --to 3"""
    from imgtool.image.image import Image
    from imgtool.ops.squash import squash_image
    from imgtool.sources import open_copy

    # As copy opens them: DEST first, and a push to IMAGE's registry mounts the layers kept.
    with open_copy(image, dest, opts.platform, opts.registry, all_platforms=False) as (img, out):
        assert isinstance(img, Image)  # one image, never a whole index
        result = squash_image(img, out, **how.arguments(opts.reading()))
    show(render.squash(result, opts))


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; every ImgtoolError becomes one ``imgtool: error:`` line and its exit code."""
    run(cli, argv)


def entry() -> None:
    """The ``imgtool`` command: :func:`main`, ending the process once the output is flushed."""
    run(cli, None, leave_at_once=True)
