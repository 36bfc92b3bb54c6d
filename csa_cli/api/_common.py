"""What every API function shares: the input types, input resolution, --batch parsing, the event listener."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from csa_cli import events
from csa_cli.errors import UsageError

if TYPE_CHECKING:
    from csa_cli.inputs import CommandInput, StageInput
    from csa_cli.records import Record

    # What a stage takes: a zoo model name, a file, or the record an earlier call returned.
    Source: TypeAlias = str | os.PathLike[str] | Record | CommandInput
    Batch: TypeAlias = str | int | Sequence[int]
    PathLike: TypeAlias = str | os.PathLike[str]


# Where a stage's events go (the csa_cli.events.Event objects the CLI renders); None: nowhere.
OnEvent: TypeAlias = Callable[[events.Event], None] | None


@contextmanager
def _listening(on_event: OnEvent) -> Iterator[None]:
    """The stage's events to `on_event`; without one, to whoever listens already (the CLI's Output), or nowhere."""
    if on_event is None:
        yield
    else:
        with events.listening(on_event):
            yield


def _given(source: Source | None, manifest: PathLike | None) -> StageInput:
    """A stage's input, resolved: a record (checked for an upstream error), a file, or a zoo model."""
    from csa_cli.inputs import CommandInput, StageInput, resolve_stage_input
    from csa_cli.records import Record, raise_if_error

    where = Path(manifest) if manifest is not None else None
    if isinstance(source, CommandInput):
        return source.resolve(where)
    if isinstance(source, Record):
        raise_if_error(source)
        return StageInput(record=source, model=source.model, path=Path(source.path) if source.path else None)
    if source is None:
        raise UsageError("no input: give a MODEL or a file, or pipe the record of a previous csa stage")
    return resolve_stage_input(os.fspath(source), where)


def _batches(batch: Batch | None, option: str = "--batch") -> list[int] | None:
    """--batch as the commands take it ("1,4,8"), or an int, or a list of ints."""
    from csa_cli.inputs import parse_batch_list

    if batch is None:
        return None
    if isinstance(batch, str):
        return parse_batch_list(batch, option)
    return parse_batch_list(",".join(str(b) for b in ([batch] if isinstance(batch, int) else batch)), option)


def _one_batch(batch: Batch | None, said: str, hint: str | None = None) -> int:
    """export and check take one --batch (1 when not given); `said`: how the stage says so."""
    batches = _batches(batch) or [1]
    if len(batches) != 1:
        raise UsageError(f"{said}: give one --batch, got {batch!r}", hint=hint)
    return batches[0]


def _path(value: PathLike | None) -> Path | None:
    return Path(value).expanduser() if value is not None else None


def _source_text(source: Source | None) -> str | Record | None:
    """For eval and predict, which tell a MODEL from an ONNX or an engine themselves: a record
    (given, a .json file or stdin's), else the text given."""
    from csa_cli.inputs import CommandInput, input_record
    from csa_cli.records import Record, raise_if_error

    if isinstance(source, Record):
        return raise_if_error(source)
    if isinstance(source, CommandInput):
        return input_record(source.argument) or source.argument
    if source is None:
        return None
    text = os.fspath(source)
    return input_record(text) or text


def _model_name(model: str | Record) -> str:
    if isinstance(model, str):
        return model
    if not model.model:
        raise UsageError(f"the {model.kind!r} record names no model")
    return model.model
