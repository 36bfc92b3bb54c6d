"""What csa holds for a model: weights in the Hugging Face cache, artifacts under CSA_HOME.

`csa cache ls|rm|prune` and `csa info` read this. Weights are the Hub client's own cache
(HF_HOME / HF_HUB_CACHE): csa lists and deletes them through huggingface_hub's cache API and
only for the repos the zoo names. Artifacts are csa's (store.py). Locks are pins,
not cache: `rm` keeps them so that a re-pull gets the same commit.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from csa_cli.manifest import Manifest, ModelEntry
from csa_cli.paths import csa_home
from csa_cli.store import ARTIFACT_META, ArtifactMeta, artifact_dir, list_artifacts


class CacheItem(BaseModel):
    """One thing on disk: which model, in which store, what it is, where, how big."""

    model: str
    where: Literal["HF cache", "CSA_HOME", "beside manifest"]
    what: str  # "weights", "<stage> artifact", "lock", "incomplete download", "leftover"
    path: str
    bytes: int
    detail: str = ""  # commit (weights), key (artifacts)
    pinned: bool = False
    created: float | None = None  # when it was made (artifacts), downloaded (weights) or pinned (locks)
    provenance: str = ""  # what it was made from, in a few words


def _dir_size(path: Path, seen: set[tuple[int, int]] | None = None) -> int:
    """Bytes on disk under `path`; a hard-linked file (an Orin bundle's ONNX) counts once in `seen`."""
    seen = set() if seen is None else seen
    total = 0
    for p in [path] if path.is_file() else path.rglob("*"):
        if not p.is_file() or p.is_symlink():
            continue
        st = p.stat()
        if st.st_nlink > 1:
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
        total += st.st_size
    return total


def provenance(meta: ArtifactMeta) -> str:
    """What an artifact was made from, from the inputs its key was computed over."""
    inputs = meta.inputs
    parts: list[str] = []
    weights = inputs.get("weights_hash") or inputs.get("weights")
    if isinstance(weights, str):
        parts.append("random weights" if weights.startswith("random") else f"weights {Path(weights).name[:12]}")
    if inputs.get("batch") is not None or inputs.get("dynamic_batch"):
        parts.append("batch dynamic" if inputs.get("dynamic_batch") else f"batch {inputs['batch']}")
    if isinstance(inputs.get("img_size"), list):
        parts.append("x".join(map(str, inputs["img_size"])))
    for name in ("stage", "precision", "target", "rules", "method"):
        if isinstance(inputs.get(name), str):
            parts.append(str(inputs[name]))
    if isinstance(inputs.get("onnx"), str):
        parts.append(f"onnx {inputs['onnx'][:12]}")
    return ", ".join(parts) or f"key {meta.key}"


def _scan() -> Any:
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    from csa_cli.stages.pull.hub_env import hub_cache_dir

    try:
        return scan_cache_dir(hub_cache_dir())
    except CacheNotFound:
        return None


def _pinned_commit(entry: ModelEntry, manifest_path: str | os.PathLike[str] | None) -> str | None:
    from csa_cli.stages.pull.lock import read_lock

    try:
        lock = read_lock(entry, manifest_path)
    except Exception:  # an invalid lock pins nothing; `csa pull` reports it
        return None
    return lock.commit if lock is not None else None


def hub_cache_items(entry: ModelEntry, manifest_path: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Snapshots of the entry's Hub repo in the HF cache (none when it has no source)."""
    return [
        {"what": "weights (HF cache)", "path": item.path, "commit": item.detail, "bytes": item.bytes, "pinned": item.pinned}
        for item in _weights_items(entry, _scan(), manifest_path)
    ]


def _weights_items(entry: ModelEntry, info: Any, manifest_path: str | os.PathLike[str] | None) -> list[CacheItem]:
    if entry.source is None or info is None:
        return []
    pinned = _pinned_commit(entry, manifest_path)
    items = []
    for repo in info.repos:
        if repo.repo_id == entry.source.repo and repo.repo_type == "model":
            for rev in sorted(repo.revisions, key=lambda r: r.commit_hash):
                items.append(
                    CacheItem(
                        model=entry.name,
                        where="HF cache",
                        what="weights",
                        path=str(rev.snapshot_path),
                        bytes=rev.size_on_disk,
                        detail=rev.commit_hash,
                        pinned=rev.commit_hash == pinned,
                        created=rev.last_modified,
                        provenance=f"{repo.repo_id}@{rev.commit_hash[:10]}",
                    )
                )
    return items


def _artifact_item(folder: Path, meta: ArtifactMeta, seen: set[tuple[int, int]] | None = None) -> CacheItem:
    return CacheItem(
        model=meta.model,
        where="CSA_HOME",
        what=f"{meta.stage} artifact",
        path=str(folder),
        bytes=_dir_size(folder, seen),
        detail=meta.key,
        created=meta.created,
        provenance=provenance(meta),
    )


def _artifact_items(entry: ModelEntry, seen: set[tuple[int, int]] | None = None) -> list[CacheItem]:
    return [_artifact_item(folder, meta, seen) for folder, meta in list_artifacts(entry.name)]


def _lock_items(entry: ModelEntry, manifest_path: str | os.PathLike[str] | None) -> list[CacheItem]:
    from csa_cli.stages.pull.lock import lock_path_for

    where: Literal["CSA_HOME", "beside manifest"]

    if entry.source is None:
        return []
    path = lock_path_for(entry, manifest_path)
    commit = _pinned_commit(entry, manifest_path)
    if not path.is_file() or commit is None:
        return []
    where = "CSA_HOME" if path.is_relative_to(csa_home()) else "beside manifest"
    return [
        CacheItem(
            model=entry.name,
            where=where,
            what="lock",
            path=str(path),
            bytes=path.stat().st_size,
            detail=commit,
            pinned=True,
            created=path.stat().st_mtime,
            provenance=f"{entry.source.repo}@{commit[:10]}",
        )
    ]


def cached_items_for(entry: ModelEntry, manifest_path: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """What `csa info` shows: weights snapshots and artifacts of one model."""
    items = hub_cache_items(entry, manifest_path)
    for item in _artifact_items(entry):
        items.append({"what": f"{item.what} (CSA_HOME)", "path": item.path, "key": item.detail, "bytes": item.bytes})
    return items


def list_cache(manifest: Manifest, model: str | None = None, manifest_path: str | os.PathLike[str] | None = None) -> list[CacheItem]:
    """Everything the zoo holds (or one model's): weights, artifacts, locks."""
    entries = [manifest.get(model)] if model else list(manifest.models.values())
    info = _scan() if any(e.source is not None for e in entries) else None
    items: list[CacheItem] = []
    seen: set[tuple[int, int]] = set()
    for entry in entries:
        items += _weights_items(entry, info, manifest_path) + _artifact_items(entry, seen) + _lock_items(entry, manifest_path)
    if model is None:  # what no zoo entry owns any more: shown so that it is not invisible
        names = {_safe_name(e.name) for e in entries}
        items += [item for item in _all_artifacts(seen) if _safe_name(item.model) not in names]
    return items


def _safe_name(name: str) -> str:
    return artifact_dir(name, "x", "x").parent.name


def _all_artifacts(seen: set[tuple[int, int]] | None = None) -> list[CacheItem]:
    return [_artifact_item(folder, meta, seen) for folder, meta in list_artifacts()]


def _delete_revisions(info: Any, commits: list[str]) -> None:
    if info is not None and commits:
        info.delete_revisions(*commits).execute()


def remove_model(manifest: Manifest, model: str, manifest_path: str | os.PathLike[str] | None = None) -> list[CacheItem]:
    """Delete the model's weights (every cached revision of its repo) and its artifacts; keep its lock."""
    entry = manifest.get(model)
    info = _scan()
    weights = _weights_items(entry, info, manifest_path)
    _delete_revisions(info, [item.detail for item in weights])
    artifacts = _artifact_items(entry)
    for item in artifacts:
        shutil.rmtree(item.path, ignore_errors=True)
    return weights + artifacts


def _leftovers() -> list[CacheItem]:
    """Half-built or unreadable artifact folders (an interrupted build, a .old beside a replaced one)."""
    found = []
    root = csa_home() / "artifacts"
    for folder in sorted(root.glob("*/*")) if root.is_dir() else []:
        if not folder.is_dir():
            continue
        leftover = folder.name.startswith(".") and folder.name.endswith((".tmp", ".old"))
        if not leftover:
            try:
                ArtifactMeta.model_validate_json((folder / ARTIFACT_META).read_text())
            except (OSError, ValueError):
                leftover = True
        if leftover:
            found.append(CacheItem(model=folder.parent.name, where="CSA_HOME", what="leftover", path=str(folder), bytes=_dir_size(folder)))
    return found


def _why_unused(folder: Path, meta: ArtifactMeta, manifest: Manifest, code: dict[str, str]) -> str | None:
    """'orphaned ...' or 'stale ...' when nothing will ever find this artifact again, else None."""
    from csa_cli import __version__

    entry = manifest.models.get(meta.model)
    if entry is None and meta.model != "_files":
        return "orphaned artifact (its model is not in the zoo)"
    if meta.csa_version != __version__:
        return f"stale artifact (made by csa {meta.csa_version})"
    if meta.stage == "onnx" and entry is not None and meta.inputs.get("code") not in (None, code.get(entry.architecture.builder)):
        return "stale artifact (the model's code changed since)"
    for value in meta.inputs.values():  # a step or artifact made from a file under CSA_HOME that is gone
        if isinstance(value, str) and value.startswith(str(csa_home())) and not Path(value).exists():
            return "orphaned artifact (made from a file that is gone)"
    if meta.stage == "run-step":
        step = folder / "step.json"
        try:
            import json

            path = (json.loads(step.read_text()).get("record") or {}).get("path")
        except (OSError, ValueError):
            return "orphaned run step (unreadable)"
        if path and not Path(path).exists():
            return "orphaned run step (its artifact is gone)"
    return None


def _export_code() -> dict[str, str]:
    """Today's export code hash per builder: an export keyed on another one is never found again."""
    from csa_cli.models.code import GRAPH_FILES, graph_code_hash

    exporter = Path(__file__).resolve().parents[1] / "export" / "onnx_export.py"
    return {builder: graph_code_hash(builder, (exporter,)) for builder in GRAPH_FILES}


def _over_bound(items: list[CacheItem], max_bytes: int, info: Any, include_hf: bool, manifest_path: Any, manifest: Manifest) -> list[CacheItem]:
    """The oldest artifacts (and, with include_hf, weight snapshots) to remove so that what stays fits in max_bytes."""
    seen: set[tuple[int, int]] = set()
    pool = [i for i in _all_artifacts(seen) if i.path not in {x.path for x in items}]
    if include_hf:
        for entry in manifest.models.values():
            pool += [w for w in _weights_items(entry, info, manifest_path) if w.path not in {x.path for x in items}]
    total = sum(i.bytes for i in pool)
    chosen: list[CacheItem] = []
    for item in sorted(pool, key=lambda i: i.created or 0.0):  # oldest first
        if total <= max_bytes:
            break
        chosen.append(item.model_copy(update={"what": f"{item.what} (over --max-size)"}))
        total -= item.bytes
    return chosen


def prune(
    manifest: Manifest,
    *,
    dry_run: bool = False,
    manifest_path: str | os.PathLike[str] | None = None,
    max_bytes: int | None = None,
    include_hf: bool = False,
) -> list[CacheItem]:
    """Remove what nothing uses: orphaned and stale artifacts, half-built folders, incomplete downloads,
    unpinned snapshots of zoo repos; then, with max_bytes, the oldest artifacts (and weights, with
    include_hf) until CSA_HOME (and the HF cache) hold at most that much.

    Long because it gathers five kinds of unused things in one pass, then removes them together.
    """
    from csa_cli.stages.pull.hub_env import repo_storage

    info = _scan()
    found: list[CacheItem] = []
    sourced = [e for e in manifest.models.values() if e.source is not None]
    pins = {e.name: _pinned_commit(e, manifest_path) for e in sourced}
    in_use = {c for c in pins.values() if c is not None}
    stale: list[str] = []
    for entry in sourced:
        assert entry.source is not None
        if pins[entry.name] is not None:  # without a pin nothing says which snapshot is in use: keep them all
            for item in _weights_items(entry, info, manifest_path):
                if item.detail not in in_use and item.detail not in stale:
                    stale.append(item.detail)
                    found.append(item.model_copy(update={"what": "unpinned weights"}))
        for blob in sorted((repo_storage(entry.source.repo) / "blobs").glob("*.incomplete")):
            found.append(CacheItem(model=entry.name, where="HF cache", what="incomplete download", path=str(blob), bytes=blob.stat().st_size))
    found += _leftovers()
    code = _export_code()
    for folder, meta in list_artifacts():
        why = _why_unused(folder, meta, manifest, code)
        if why is not None:
            found.append(_artifact_item(folder, meta).model_copy(update={"what": why}))
    if max_bytes is not None:
        found += _over_bound(found, max_bytes, info, include_hf, manifest_path, manifest)
    if not dry_run:
        _delete_revisions(info, stale + [i.detail for i in found if i.where == "HF cache" and i.what.startswith("weights")])
        for item in found:
            path = Path(item.path)
            if item.what == "incomplete download":
                path.unlink(missing_ok=True)
            elif item.where == "CSA_HOME":
                shutil.rmtree(path, ignore_errors=True)
    return found
