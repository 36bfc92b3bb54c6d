"""Locks: the resolved commit and the sha256 + size of every file a pull took (pydantic).

Where a lock lives: beside a user manifest that declares the entry's source, as
<manifest stem>.lock.json (one file for all its models, meant to be committed with the
manifest); else CSA_HOME/locks/<model>.lock.json.
"""

from __future__ import annotations

import hashlib
import os
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from csa_cli.errors import CsaError
from csa_cli.manifest import ModelEntry
from csa_cli.paths import atomic_write_text, csa_home

LOCK_SCHEMA = 1


class LockedFile(BaseModel):
    """One pinned file: its content hash and size, and the Hub's id of it (git blob id)."""

    model_config = ConfigDict(extra="forbid")

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    blob_id: str | None = None


class ModelLock(BaseModel):
    """What one model is pinned to: repo, revision, the commit it resolved to, every file's hash."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_version: int = Field(default=LOCK_SCHEMA, alias="schema")
    model: str
    repo: str
    revision: str
    commit: str = Field(pattern=r"^[0-9a-f]{40}$")
    files: dict[str, LockedFile]
    locked_at: float = Field(default_factory=time.time)


class ManifestLock(BaseModel):
    """The lock beside a user manifest: one pin per model the manifest gives a source."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_version: int = Field(default=LOCK_SCHEMA, alias="schema")
    models: dict[str, ModelLock] = Field(default_factory=dict)


def combined_hash(files: dict[str, str]) -> str:
    """One hash for a set of files: the file's own sha256 when there is one, else of the sorted name:sha256 lines."""
    if len(files) == 1:
        return next(iter(files.values()))
    lines = "".join(f"{name}:{sha}\n" for name, sha in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def declares_source(manifest_path: Path, model: str) -> bool:
    try:
        with manifest_path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError):
        return False
    entry = data.get("models", {}).get(model)
    return isinstance(entry, dict) and isinstance(entry.get("source"), dict)


def lock_path_for(entry: ModelEntry, manifest_path: str | os.PathLike[str] | None = None) -> Path:
    """Beside the user manifest when it declares this entry's source, else CSA_HOME/locks/<model>.lock.json."""
    from csa_cli.manifest import user_manifest_path

    user = user_manifest_path(manifest_path)
    if user is not None and declares_source(user, entry.name):
        return user.with_name(f"{user.stem}.lock.json")
    return csa_home() / "locks" / f"{entry.name}.lock.json"


def is_manifest_lock(path: Path) -> bool:
    return path.parent != csa_home() / "locks"


@contextmanager
def lock_file_guard(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of a lock file between processes."""
    from filelock import FileLock

    # the OS lock file lives under CSA_HOME, not beside the user's manifest
    guard = csa_home() / "locks" / ".guards" / (hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16] + ".lock")
    guard.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(guard), timeout=120):
        yield


def read_json_model(path: Path, cls: type[BaseModel]) -> Any:
    try:
        return cls.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValidationError, ValueError) as exc:
        raise CsaError(f"the lock {path} is not valid ({str(exc).splitlines()[0]})", hint=f"delete {path} and run `csa pull` again to re-pin") from None


def read_lock(entry: ModelEntry, manifest_path: str | os.PathLike[str] | None = None) -> ModelLock | None:
    """The model's pin, or None when it was never pulled."""
    path = lock_path_for(entry, manifest_path)
    if is_manifest_lock(path):
        whole = read_json_model(path, ManifestLock)
        return None if whole is None else whole.models.get(entry.name)
    return read_json_model(path, ModelLock)


def write_lock(lock: ModelLock, entry: ModelEntry, manifest_path: str | os.PathLike[str] | None = None) -> Path:
    path = lock_path_for(entry, manifest_path)
    with lock_file_guard(path):
        if is_manifest_lock(path):
            whole = read_json_model(path, ManifestLock) or ManifestLock()
            whole.models[entry.name] = lock
            atomic_write_text(path, whole.model_dump_json(by_alias=True, indent=2) + "\n")
        else:
            atomic_write_text(path, lock.model_dump_json(by_alias=True, indent=2) + "\n")
    return path
