"""The ``forensics`` command line: a thin layer over the Python API.

Each area registers its commands from its own module (``cli/<area>.py``, listed in
``MODULES``) so the CLI stays one file per concept; a module that fails to import stops the
CLI with that error. Heavy libraries (torch, faiss) are imported inside commands, never
at start-up, so ``forensics --help`` and ``forensics sql`` stay fast.
"""

from __future__ import annotations

import click

from forensics import __version__
from forensics.cli._common import Ctx


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--workspace", "-w", envvar="FORENSICS_WORKSPACE", default=None, metavar="DIR",
    help="Workspace directory (default: $FORENSICS_WORKSPACE or the current directory).",
)
@click.option(
    "--wait", envvar="FORENSICS_WAIT", type=click.FloatRange(min=0), default=5.0, show_default=True,
    metavar="SECONDS", help="How long to wait for another command's lock on the workspace database.",
)
@click.version_option(__version__, prog_name="forensics")
@click.pass_context
def main(ctx: click.Context, workspace: str | None, wait: float) -> None:
    """nla-forensics: from a model's anomaly to the training data that taught it."""
    ctx.obj = Ctx(workspace, wait=wait)


#: The CLI's modules, one per area; each has ``register(main)``.
MODULES = ("core", "ingest", "index", "triage", "pipeline", "nla", "nla_train", "report", "verify")


def _register(group: click.Group, names: tuple[str, ...] = MODULES) -> None:
    """Add every module's commands to ``group``. A module that fails to import is an error
    (raised as is), never a silently missing command."""
    import importlib

    for name in names:
        importlib.import_module(f"{__name__}.{name}").register(group)


_register(main)
