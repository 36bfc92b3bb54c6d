"""Versioned JSON records: what each stage prints on a pipe and the next stage reads.

One record is one line of JSON: {"schema": 1, "kind": ..., "model": ..., "path": ..., ...}.
Every kind has a pydantic model; fields a later version adds are kept (extra="allow") so
that `csa check` can pass a record through with its verdict added.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from csa_cli.errors import CsaError, UpstreamError, UsageError

SCHEMA_VERSION = 1

RecordKind = Literal["checkpoint", "train", "onnx", "quantized", "engine", "bundle", "eval", "profile", "check", "run", "compare", "predict", "push", "error"]


class Record(BaseModel):
    """Common fields of every record; stage-specific fields ride along as extras."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    schema_version: int = Field(default=SCHEMA_VERSION, alias="schema")
    kind: RecordKind
    model: str | None = None
    path: str | None = None
    weights: str | None = Field(default=None, description="pretrained | random | a checkpoint path")

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", by_alias=True, exclude_none=True), sort_keys=False)

    def field(self, name: str, default: Any = None) -> Any:
        """A field by name, whether declared or carried as an extra."""
        if name in type(self).model_fields:
            return getattr(self, name)
        return (self.model_extra or {}).get(name, default)

    def with_fields(self, **fields: Any) -> Record:
        data = self.model_dump(mode="json", by_alias=True)
        data.update(fields)
        return type(self).model_validate(data)


class ErrorRecord(Record):
    kind: Literal["error"] = "error"
    stage: str
    message: str


class EngineFile(BaseModel):
    """One engine of an engine record; later fields (size, layers) ride along."""

    model_config = ConfigDict(extra="allow")

    batch: int = Field(description="the batch it runs (the profile's max for a dynamic engine)")
    path: str


class EngineRecord(Record):
    """What `csa engine --target local` writes and `csa profile` / `csa eval` read."""

    kind: Literal["engine"] = "engine"
    engines: list[EngineFile] = Field(default_factory=list)
    source_onnx: list[str] = Field(default_factory=list, description="the ONNX each engine was built from, in the order of `engines`")

    @classmethod
    def of(cls, record: Record) -> EngineRecord:
        """`record` as an engine record, its fields checked (a record built elsewhere as a plain Record too)."""
        if isinstance(record, cls):
            return record
        try:
            return cls.model_validate(record.model_dump(mode="json", by_alias=True))
        except ValidationError as exc:
            first = exc.errors()[0]
            raise CsaError(f"invalid engine record: {'.'.join(map(str, first['loc']))}: {first['msg']}", hint="pipe the record `csa engine` wrote") from None


class PushRecord(Record):
    """What `csa push` writes: the commit it made and the manifest entry that pins it."""

    kind: Literal["push"] = "push"
    repo: str
    revision: str = Field(description="the branch pushed to")
    commit: str = Field(description="the commit the push made (40 hex digits)")
    url: str
    files: dict[str, str] = Field(description="file name -> sha256 of what was uploaded")
    entry: dict[str, Any] = Field(description="the manifest entry that serves this commit (`csa pull` of its name)")
    registered: str | None = Field(default=None, description="the user manifest --register wrote the entry into")
    private: bool = False


_TYPED: dict[str, type[Record]] = {"error": ErrorRecord, "engine": EngineRecord, "push": PushRecord}


def record_from_dict(data: dict[str, Any]) -> Record:
    """A record of the pydantic type its kind has (Record for the kinds that declare no fields of their own)."""
    return _TYPED.get(str(data.get("kind")), Record).model_validate(data)


def checkpoint_of_train(record: Record) -> Record:
    """A `csa train` record as the checkpoint record every later stage takes (its weights file; the run's fields ride along)."""
    if record.field("stopped") or not record.path:
        raise UsageError("the piped training run was stopped before it finished: it made no weights yet", hint="continue it with csa train ... --resume")
    data = record.model_dump(mode="json", by_alias=True)
    data.update(kind="checkpoint", weights=record.path, trained=True)
    return record_from_dict(data)


def make_record(kind: RecordKind, **fields: Any) -> Record:
    return record_from_dict({"schema": SCHEMA_VERSION, "kind": kind, **fields})


def parse_record(text: str) -> Record:
    """Parse one record line; an error record becomes ErrorRecord."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"input is not a csa record (invalid JSON: {exc.msg})", hint="pipe the output of a csa stage") from None
    if not isinstance(data, dict) or "kind" not in data:
        raise UsageError("input is not a csa record (no 'kind' field)", hint="pipe the output of a csa stage")
    version = data.get("schema", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise CsaError(
            f"record schema {version} is not supported (this csa reads schema {SCHEMA_VERSION})",
            hint="use the same csa version for every stage",
        )
    try:
        return record_from_dict(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CsaError(f"invalid csa record: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def read_records(stream: IO[str]) -> list[Record]:
    """All records in a stream (one per non-empty line)."""
    return [parse_record(line) for line in stream.read().splitlines() if line.strip()]


def raise_if_error(record: Record) -> Record:
    """A stage that reads an error record exits 1 at once, repeating it."""
    if isinstance(record, ErrorRecord):
        raise UpstreamError(record.stage, record.message)
    return record


def read_stdin_record(stdin: IO[str] | None = None) -> Record | None:
    """The last record piped to stdin, or None when stdin is a terminal or empty."""
    stream = stdin if stdin is not None else sys.stdin
    if stream is None or stream.isatty():
        return None
    records = read_records(stream)
    if not records:
        return None
    for record in records:
        raise_if_error(record)
    return records[-1]


def load_record_file(path: Path) -> Record:
    text = path.read_text(encoding="utf-8").strip().splitlines()
    if not text:
        raise CsaError(f"{path} is empty, not a csa record")
    return raise_if_error(parse_record(text[-1]))
