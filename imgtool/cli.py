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
from imgtool.console.helptext import attach
from imgtool.image.platform import Platform
from imgtool.sources import catalog, open_document, open_image

__all__ = ["cli", "entry", "fail", "main", "warn"]


@cli.command()
@p.image_argument
@click.option("--no-trunc", is_flag=True, help="Show full digests in the layer table.")
@p.raw_options
@p.image_options(cache=False, quiet=False)
def inspect(image: str, no_trunc: bool, document: str | None, opts: p.ImageOptions) -> None:
    """Show an image's manifest, config, platform and layers."""
    from imgtool.ops import summary
    from imgtool.ops.raw import raw_document

    if document is not None:
        with open_document(image, document, opts.platform, opts.registry) as stored:
            show_bytes(*raw_document(stored, document, opts.platform is not None))
        return
    with open_image(image, opts.platform, opts.registry) as img:
        facts = summary.describe_image(img)
    for message in facts.warnings:
        warn(message)
    show(render.inspect(facts, no_trunc, opts))


@cli.command()
@p.image_argument
@p.image_options(cache=False)
def verify(image: str, opts: p.ImageOptions) -> None:
    """Check every blob of an image against its digest."""
    from imgtool.ops.verify import all_ok, verify_image

    with open_image(image, opts.platform, opts.registry_uncached) as img:
        findings = verify_image(img, opts.progress)
    show(render.verify(findings, opts), all_ok(findings))


@cli.command()
@p.image_argument
@p.flatten_options
@p.image_options(output=False)
def flatten(image: str, how: p.FlattenOptions, opts: p.ImageOptions) -> None:
    """Write the image's root filesystem to a directory or a tar."""
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
    """Say which layer supplies each PATH, and its history."""
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
    """List the image's tree, with the layer of each entry."""
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
    """Write a file of the final image to stdout."""
    from imgtool.ops.readfile import cat as cat_file

    with open_image(image, opts.platform, opts.registry) as img:
        cat_file(img, path, sys.stdout.buffer, opts.reading(quiet=True), layer_number)
        sys.stdout.buffer.flush()


@cli.group("diff")
def diff_group() -> None:
    """Compare layers of one image, or two images."""


@diff_group.command("layers")
@p.image_argument
@p.diff_layers_options
@p.image_options()
def diff_layers(image: str, how: p.DiffLayersOptions, opts: p.ImageOptions) -> None:
    """Show what each layer changed, or layer A against layer B."""
    limits = how.ci_thresholds()  # checked before the image is read
    if how.ci:
        from imgtool.ops.ci import rate_image

        with open_image(image, opts.platform, opts.registry) as img:
            report = rate_image(img, opts.reading(), limits)
        show(render.ci_report(report, how.top, opts), report.passed)
        return
    from imgtool.ops.diff import diff_layers as layers_diff

    with open_image(image, opts.platform, opts.registry) as img:
        result = layers_diff(img, opts.reading(), how.first, how.second, how.top)
    show(render.diff_layers(result, how.verbose, opts))


@diff_group.command("images")
@click.argument("image1", metavar="IMAGE1", type=p.IMAGE)
@click.argument("image2", metavar="IMAGE2", type=p.IMAGE)
@p.side_platform_options
@p.image_options()
def diff_images(
    image1: str, image2: str, platform1: Platform | None, platform2: Platform | None, opts: p.ImageOptions
) -> None:
    """Compare the final trees of two images."""
    from imgtool.ops.diff import diff_images as images_diff

    with (
        open_image(image1, platform1 or opts.platform, opts.registry) as first,
        open_image(image2, platform2 or opts.platform, opts.registry) as second,
    ):
        result = images_diff(first, second, opts.reading())
    show(render.diff_images(result, image1, image2, opts), result.identical)


@cli.command("copy")
@click.argument("src", metavar="SRC", type=p.IMAGE)
@click.argument("dest", metavar="DEST", type=p.IMAGE)
@p.copy_options
@p.image_options(cache=False, output=False)
def copy_command(src: str, dest: str, jobs: int, all_platforms: bool, opts: p.ImageOptions) -> None:
    """Copy an image to an OCI layout, an archive or a registry."""
    from imgtool.ops import copy
    from imgtool.sources import open_copy

    with open_copy(src, dest, opts.platform, opts.registry_for_copy, all_platforms) as (what, out):
        show(render.copy(copy.copy_image(what, out, jobs=jobs, progress=opts.progress), opts))


@cli.command("images")
@click.argument("path", metavar="PATH", type=p.IMAGE)
@p.output_options
def images(path: str, opts: p.ImageOptions) -> None:
    """List the images of an archive, a layout or a store."""
    show(render.images(catalog(path), opts))


@cli.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish)."""
    click.echo(completion_script(cli, shell), nl=False)


@cli.command("squash")
@click.argument("image", metavar="IMAGE", type=p.IMAGE)
@click.argument("dest", metavar="DEST", type=p.IMAGE)
@p.squash_options
@p.image_options(output=False)
def squash(image: str, dest: str, how: p.SquashOptions, opts: p.ImageOptions) -> None:
    """Merge layers N to M of an image into one layer."""
    from imgtool.image.image import Image
    from imgtool.ops.squash import squash_image
    from imgtool.sources import open_copy

    # As copy opens them: DEST first, and a push to IMAGE's registry mounts the layers kept.
    with open_copy(image, dest, opts.platform, opts.registry, all_platforms=False) as (img, out):
        assert isinstance(img, Image)  # one image, never a whole index
        result = squash_image(img, out, **how.arguments(opts.reading()))
    show(render.squash(result, opts))


@cli.group("cache")
def cache_group() -> None:
    """Show or prune the blob and header index caches."""


@cache_group.command("info")
@p.output_options
def cache_info(opts: p.ImageOptions) -> None:
    """Show how many files and bytes each cache holds, and where."""
    from imgtool.console.caches import cache_info as usage

    show(render.cache_info(usage(), opts))


@cache_group.command("prune")
@p.cache_prune_options
def cache_prune(everything: bool, max_size: int | None) -> None:
    """Remove what the caches hold beyond a size, oldest first."""
    from imgtool.console.caches import prune_caches

    show(render.cache_pruned(prune_caches(max_size, everything)))


attach(cli)  # each command's long help and examples, below its summary


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; every ImgtoolError becomes one ``imgtool: error:`` line and its exit code."""
    run(cli, argv)


def entry() -> None:
    """The ``imgtool`` command: :func:`main`, ending the process once the output is flushed."""
    run(cli, None, leave_at_once=True)
