"""What every command shares: the --json/--debug options, error handling, input parsing.

`@stage_command("export")` wraps a command function: it adds --json and --debug to its
options, gives it an `Output` (a parameter named `out`), and turns a CsaError into one
`Error:` line on stderr (plus an error record on a piped stdout) and the error's exit code.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from csa_cli.console import Output
from csa_cli.errors import CsaError, ExitCode, UpstreamError
from csa_cli.inputs import (  # noqa: F401  (re-exported: the command modules import them from here)
    StageInput,
    canonical_model,
    check_output,
    choice,
    expect_record,
    input_record,
    parse_batch_list,
    require_positive,
    resolve_stage_input,
    wrong_file,
)

F = TypeVar("F", bound=Callable[..., Any])

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON record on stdout, even on a terminal.")]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show tracebacks (also CSA_DEBUG=1).")]
ManifestOption = Annotated[
    Path | None,
    typer.Option("--manifest", help="A user manifest merged over the built-in zoo (also CSA_MANIFEST).", envvar="CSA_MANIFEST"),
]
# Every stage that builds a model takes the same --weights; csa_cli.stages.pull.weights.load_model(model, weights) reads it.
WeightsOption = Annotated[
    str,
    typer.Option(
        "--weights",
        help=(
            "pretrained (pulled and verified), random (fixed seed, said on stderr), auto (pretrained if already cached, "
            "else random: no download), or PATH to a checkpoint (.safetensors, or .pth/.bin read with weights_only=True)."
        ),
    ),
]


def stage_command(stage: str) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        # Evaluate string annotations (modules use `from __future__ import annotations`): typer reads
        # Argument/Option metadata from the signature set below, which it does not evaluate itself.
        try:
            sig = inspect.signature(func, eval_str=True)
        except NameError:
            sig = inspect.signature(func)
        wants_out = "out" in sig.parameters
        params = [p for name, p in sig.parameters.items() if name != "out"]
        params += [
            inspect.Parameter("json_output", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonOption),
            inspect.Parameter("debug", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=DebugOption),
        ]

        @functools.wraps(func)
        def wrapper(*args: Any, json_output: bool = False, debug: bool = False, **kwargs: Any) -> Any:
            out = Output(json_flag=json_output, debug=debug, stage=stage)
            try:
                if wants_out:
                    kwargs["out"] = out
                with out.listen():
                    return func(*args, **kwargs)
            except typer.Exit:
                raise
            except UpstreamError as exc:
                # the stage that failed said why, once: pass its record on, silently, and exit 1
                out.forward(exc)
                raise typer.Exit(int(ExitCode.FAILURE)) from None
            except CsaError as exc:
                if out.debug:
                    out.stderr.print_exception()
                out.error(exc)
                raise typer.Exit(int(exc.exit_code)) from None
            except KeyboardInterrupt:
                out.error(CsaError("interrupted"))
                raise typer.Exit(130) from None
            except Exception as exc:  # an unexpected failure still gets one line, not a traceback
                if out.debug:
                    raise
                out.error(CsaError(f"{type(exc).__name__}: {exc}", hint="rerun with --debug for the traceback"))
                raise typer.Exit(int(ExitCode.FAILURE)) from None

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
