"""The `csa` command: one thin module per command group, registered here.

Command modules import only typer, rich and csa_cli's light modules at import time;
torch, onnx and friends are imported inside the commands so that `csa --help` stays fast.
"""

from __future__ import annotations

import importlib
import sys
from typing import Annotated

import typer

from csa_cli import __version__


def _version(value: bool) -> None:
    if value:
        typer.echo(f"csa {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """csa: from a pretrained checkpoint to a measured, deployable engine."""


# Command name -> the module that registers it (each module has `register(app)`), in help order.
COMMANDS = {
    "list": "list_info",
    "info": "list_info",
    "doctor": "doctor",
    "pull": "pull",
    "push": "push",
    "cache": "cache",
    "export": "export",
    "check": "check",
    "eval": "eval",
    "predict": "predict",
    "quantize": "quantize",
    "engine": "engine",
    "profile": "profile",
    "train": "train",
    "run": "run",
    "compare": "compare",
    "import-reference": "import_reference",
    "import-timings": "import_timings",
}


def build_app(argv: list[str] | None = None) -> typer.Typer:
    """The typer app; given argv naming a command, only that command's module is imported.

    Importing all fifteen command modules costs tens of milliseconds that `csa list` cannot spare
    (it must answer in under 0.3 s); help and unknown names still get every command.
    """
    app = typer.Typer(
        name="csa",
        help="Convolutional Self-Attention model zoo: pull, evaluate, export, check, quantize, build, profile.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
    app.callback()(_root)
    wanted = next((arg for arg in argv or [] if not arg.startswith("-")), None)
    modules = [COMMANDS[wanted]] if wanted in COMMANDS and "--help" not in (argv or []) else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(f"csa_cli.cli.{name}").register(app)
    return app


def __getattr__(name: str) -> typer.Typer:
    # `from csa_cli.cli import app` (tests, embedding) gets the app with every command.
    if name == "app":
        return build_app()
    raise AttributeError(name)


def main() -> None:
    build_app(sys.argv[1:])()
