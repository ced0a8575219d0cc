"""The click group of the command line: the program's name, version, help and --debug. The
commands are added to it in :mod:`imgtool.cli`."""

from __future__ import annotations

import click

from imgtool import __version__
from imgtool.console.funnel import set_debug


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
    set_debug(debug)
