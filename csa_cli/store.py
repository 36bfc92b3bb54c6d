"""The artifact store under CSA_HOME: everything csa makes, keyed by its inputs.

Layout:
    CSA_HOME/artifacts/<model>/<stage>-<key>/   one artifact (files + artifact.json), complete or absent
    CSA_HOME/results/<kind>/<model>/<key>.json  eval / profile / timing results for `csa compare`
An artifact folder is built under a temporary name and renamed into place, so an interrupted
stage never leaves a folder that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from csa_cli import __version__
from csa_cli.errors import CsaError
from csa_cli.paths import atomic_dir, atomic_write_text, csa_home

ARTIFACT_META = "artifact.json"


class ArtifactMeta(BaseModel):
    """artifact.json: what an artifact folder holds and the inputs it was made from."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = Field(default=1, alias="schema")
    model: str
    stage: str
    key: str
    inputs: dict[str, Any]
    files: list[str]
    created: float
    csa_version: str = __version__


def artifact_key(**inputs: Any) -> str:
    """A short stable hash of a stage's inputs (JSON-canonical) and the csa version."""
    blob = json.dumps({"csa": __version__, **inputs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def source_hash(files: list[Path]) -> str:
    """A short hash of source files (by name and content): what a cached result's code was, without importing it."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def artifact_dir(model: str, stage: str, key: str) -> Path:
    return csa_home() / "artifacts" / _safe(model) / f"{_safe(stage)}-{key}"


def find_artifact(model: str, stage: str, key: str) -> Path | None:
    """The artifact folder if it is complete (its artifact.json names files that all exist)."""
    folder = artifact_dir(model, stage, key)
    meta_path = folder / ARTIFACT_META
    if not meta_path.is_file():
        return None
    try:
        meta = ArtifactMeta.model_validate_json(meta_path.read_text())
    except ValueError:
        return None
    if all((folder / f).is_file() for f in meta.files):
        return folder
    return None


@contextmanager
def build_artifact(model: str, stage: str, key: str, inputs: dict[str, Any]) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it becomes the artifact, with artifact.json."""
    target = artifact_dir(model, stage, key)
    with atomic_dir(target) as tmp:
        yield tmp
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        meta = ArtifactMeta(model=model, stage=stage, key=key, inputs=inputs, files=files, created=time.time())
        (tmp / ARTIFACT_META).write_text(meta.model_dump_json(by_alias=True, indent=2))


def cached_or_built(model: str, stage: str, key: str, inputs: dict[str, Any], build: Callable[[Path], Any], *, redo: bool = False) -> tuple[Path, bool]:
    """(the complete artifact for `key`, whether it was cached): built first, atomically, when absent or `redo`."""
    found = None if redo else find_artifact(model, stage, key)
    if found is not None:
        return found, True
    with build_artifact(model, stage, key, inputs) as tmp:
        build(tmp)
    folder = find_artifact(model, stage, key)
    if folder is None:  # build_artifact renames into place and names every file: absent only if that failed
        # unreachable from a test without breaking build_artifact itself: its mutants are equivalent
        raise CsaError(f"the {stage} artifact of {model} was not stored in {artifact_dir(model, stage, key)}")  # pragma: no mutate
    return folder, False


def list_artifacts(model: str | None = None) -> list[tuple[Path, ArtifactMeta]]:
    root = csa_home() / "artifacts"
    found: list[tuple[Path, ArtifactMeta]] = []
    if not root.is_dir():
        return found
    for meta_path in sorted(root.glob("*/*/" + ARTIFACT_META)):
        try:
            meta = ArtifactMeta.model_validate_json(meta_path.read_text())
        except ValueError:
            continue
        if model is None or meta.model == model:
            found.append((meta_path.parent, meta))
    return found


def results_dir(kind: str, model: str) -> Path:
    return csa_home() / "results" / _safe(kind) / _safe(model)


def store_result(kind: str, model: str, key: str, data: dict[str, Any]) -> Path:
    """Store one result (a record's JSON) for `csa compare`; the same key overwrites."""
    path = results_dir(kind, model) / f"{key}.json"
    atomic_write_text(path, json.dumps({**data, "stored_at": time.time()}, indent=2))
    return path


def load_results(kind: str, model: str | None = None) -> list[dict[str, Any]]:
    root = csa_home() / "results" / _safe(kind)
    pattern = f"{_safe(model)}/*.json" if model else "*/*.json"
    out: list[dict[str, Any]] = []
    for path in sorted(root.glob(pattern)):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return sorted(out, key=lambda d: d.get("stored_at", 0))
