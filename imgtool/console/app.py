"""The click group of the command line: the program's name, version, help, and the options every
command takes before or after its name (--debug, -q). The commands are added to it in
:mod:`imgtool.cli`."""

from __future__ import annotations

from typing import Final

import click

from imgtool import __version__
from imgtool.console.funnel import set_debug

QUIET: Final = "imgtool.quiet"  # ctx.meta: -q was given before the command


def _debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:  # given after the command: the group's own --debug (or its absence) was seen first
        set_debug(True)


def debug_option() -> click.Option:
    return click.Option(
        ["--debug"],
        is_flag=True,
        expose_value=False,
        callback=_debug,
        help="Show a traceback when something fails (also before the command).",
    )


class Group(click.Group):
    """A group whose every command (and sub-group) also takes --debug, as the group itself does."""

    group_class = type  # sub-groups are of this class too

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if not any(param.name == "debug" for param in cmd.params):
            cmd.params.append(debug_option())
        super().add_command(cmd, name)


@click.group(
    cls=Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    invoke_without_command=False,
    no_args_is_help=True,
)
@click.version_option(__version__, "-V", "--version", prog_name="imgtool", message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="Show a traceback when something fails.")
@click.option(
    "-q", "--quiet", is_flag=True, help="No progress bar and no summary on stderr (as each command's -q)."
)
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """Inspect, flatten and take apart container images.

    \b
    IMAGE is a path to a docker-save tarball, an OCI archive or an OCI layout
    directory (imgtool looks at what is there), or one of:
      oci:DIR[:REF]                        an OCI layout directory
      oci-archive:PATH[:REF]               an OCI archive (tar of a layout)
      docker-archive:PATH[:NAME:TAG|:@N]   a docker-save tarball
      docker://HOST/REPO[:TAG|@DIGEST]     an image in a registry
      docker-storage:[ROOT]NAME[:TAG]      an image in Docker's data root
      docker-container:[ROOT]NAME-OR-ID    a Docker container, its own layer on top
      containers-storage:[…]NAME[:TAG]     an image in podman's or buildah's store
      podman-container:[…]NAME-OR-ID       a podman container, its own layer on top
      overlay:LOWER[:LOWER…][+UPPER]       a stack of overlay directories, lowest first
      overlay-mount:PATH                   a live overlay mount, read as its directories

    \b
    Examples:
      imgtool inspect examples/sample.tar
      imgtool flatten examples/sample.tar -o rootfs
      imgtool which-layer examples/sample.tar /etc/app/app.conf

    Exit status: 0 success; 1 a failure, or a negative answer (a path absent,
    images that differ, a digest mismatch); 2 a usage error; 130 interrupted.
    """
    set_debug(debug)
    ctx.meta[QUIET] = quiet
