"""What a stage is given and how its options are checked: the same rules for the CLI and the Python API.

A stage's input is a zoo model name, a file, or a record (a .json record file, one piped on stdin
for the CLI, or the object an earlier `csa_cli.api` call returned). The option checks here give
the same usage error (exit 2) for the same mistake everywhere.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from csa_cli.errors import CsaError, UsageError

if TYPE_CHECKING:  # records pull in pydantic: keep it off the `csa --help` path
    from csa_cli.records import Record


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


def choice(value: str, option: str, choices: tuple[str, ...]) -> str:
    """`value` when it is one of `choices`, else the usage error every command gives (exit 2)."""
    if value not in choices:
        raise UsageError(f"{option} must be one of {', '.join(choices)}, got {value!r}")
    return value


class CommandInput:
    """A command's INPUT argument (None: the record piped on stdin), read only when the stage asks for it.

    `csa_cli.api` checks every option before it reads its input: a bad option fails (exit 2)
    before stdin is read or a model looked up, the same from the shell as from Python.
    """

    def __init__(self, argument: str | None) -> None:
        self.argument = argument

    def resolve(self, manifest: Path | None) -> StageInput:
        return resolve_stage_input(self.argument, manifest)
