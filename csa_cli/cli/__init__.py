"""The `csa` command: one thin module per command group, registered here.

Command modules import only typer, rich and csa_cli's light modules at import time;
torch, onnx and friends are imported inside the commands so that `csa --help` stays fast.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Annotated

import typer

from csa_cli import __version__

app = typer.Typer(
    name="csa",
    help="Convolutional Self-Attention model zoo: pull, evaluate, export, check, quantize, build, profile.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"csa {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """csa: from a pretrained checkpoint to a measured, deployable engine."""


# One module per command group; each has `register(app)`. Listed here in help order.
COMMAND_MODULES = [
    "list_info",
    "doctor",
    "pull",
    "cache",
    "export",
    "check",
    "eval",
    "predict",
    "quantize",
    "engine",
    "profile",
    "run",
    "compare",
    "import_reference",
    "import_timings",
]
for _name in COMMAND_MODULES:
    if importlib.util.find_spec(f"csa_cli.cli.{_name}") is not None:
        importlib.import_module(f"csa_cli.cli.{_name}").register(app)


def main() -> None:
    app()
