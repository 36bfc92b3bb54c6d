"""What every command shares: the --json/--debug options, error handling, input parsing.

`@stage_command("export")` wraps a command function: it adds --json and --debug to its
options, gives it an `Output` (a parameter named `out`), and turns a CsaError into one
`Error:` line on stderr (plus an error record on a piped stdout) and the error's exit code.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from csa_cli.console import Output
from csa_cli.errors import CsaError, ExitCode, UpstreamError, UsageError

if TYPE_CHECKING:  # records pull in pydantic: keep it off the `csa --help` path
    from csa_cli.records import Record

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


def expect_record(record: Record, stage: str, *kinds: str, hint: str | None = None) -> Record:
    """A record of one of `kinds`, else the usage error every command gives for a wrong record kind (exit 2)."""
    if record.kind not in kinds:
        wanted = " or ".join(kinds)
        raise UsageError(f"csa {stage} takes a {wanted} record, got a {record.kind!r} record", hint=hint)
    return record


def wrong_file(path: Path | None, stage: str, takes: str, hint: str | None = None) -> UsageError:
    """The usage error every command gives for a file of the wrong type (exit 2)."""
    return UsageError(f"csa {stage} takes {takes}, not {path.name if path else 'that file'} ({(path.suffix or 'no suffix') if path else '?'})", hint=hint)


def check_output(output: Path | None, force: bool) -> None:
    """--output never replaces what is there unless --force (the same rule in every command)."""
    if output is not None and output.exists() and not output.is_dir() and not force:
        raise CsaError(f"{output} already exists", hint="choose another --output, or add --force to replace it")


def parse_batch_list(text: str, option: str = "--batch") -> list[int]:
    """'1,4,8,16' -> [1, 4, 8, 16]; a zero, negative or non-number is a usage error."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"{option} must be a comma list of positive integers, got {text!r}", hint=f"e.g. {option} 1,4,8,16") from None
    if not values or min(values) < 1:
        raise UsageError(f"{option} must be at least 1, got {text!r}", hint=f"e.g. {option} 1,4,8,16")
    return values


def require_positive(value: int | None, option: str) -> int | None:
    if value is not None and value < 1:
        raise UsageError(f"{option} must be at least 1, got {value}")
    return value


def input_record(argument: str | None) -> Record | None:
    """The record a stage consumes: a .json record file given as argument, else stdin's (a finished run's as the checkpoint it made)."""
    from csa_cli.records import checkpoint_of_train, load_record_file, read_stdin_record

    record = None
    if argument is not None and argument.endswith(".json") and Path(argument).is_file():
        record = load_record_file(Path(argument))
    elif argument is None:
        record = read_stdin_record(sys.stdin)
    return checkpoint_of_train(record) if record is not None and record.kind == "train" else record


class StageInput:
    """What a stage was given: an upstream record, a zoo model name, or a file."""

    def __init__(self, record: Record | None = None, model: str | None = None, path: Path | None = None) -> None:
        self.record = record
        self.model = model
        self.path = path

    def __repr__(self) -> str:
        return f"StageInput(record={self.record!r}, model={self.model!r}, path={self.path!r})"


def resolve_stage_input(argument: str | None, manifest: Path | None = None) -> StageInput:
    """MODEL | FILE | record (a .json record file, or one piped on stdin)."""
    from csa_cli.manifest import load_manifest

    record = input_record(argument)
    if record is not None:
        return StageInput(record=record, model=record.model, path=Path(record.path) if record.path else None)
    if argument is None:
        raise UsageError("no input: give a MODEL or a file, or pipe the record of a previous csa stage")
    path = Path(argument)
    if path.exists():
        return StageInput(path=path)
    if "/" in argument or path.suffix in {".onnx", ".engine", ".plan", ".pth", ".pt", ".safetensors", ".json"}:
        zoo = load_manifest(manifest)
        if any(argument in e.aliases() for e in zoo.models.values()):  # a Hub repo id: timm/convnext_tiny.fb_in1k
            return StageInput(model=zoo.get(argument).name)
        raise CsaError(f"file not found: {argument}", hint="check the path")
    # unknown names fail here, with suggestions; a Hub repo id or tagged timm name becomes the zoo name
    return StageInput(model=load_manifest(manifest).get(argument).name)


def canonical_model(name: str, manifest: Path | None) -> str:
    """The zoo name of a model given by any of its names (zoo name, Hub repo id, tagged timm name)."""
    from csa_cli.manifest import load_manifest

    return load_manifest(manifest).get(name).name
