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
from csa_cli.store import ARTIFACT_META, ArtifactMeta, list_artifacts


class CacheItem(BaseModel):
    """One thing on disk: which model, in which store, what it is, where, how big."""

    model: str
    where: Literal["HF cache", "CSA_HOME", "beside manifest"]
    what: str  # "weights", "<stage> artifact", "lock", "incomplete download", "leftover"
    path: str
    bytes: int
    detail: str = ""  # commit (weights), key (artifacts)
    pinned: bool = False


def _dir_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


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
                    )
                )
    return items


def _artifact_items(entry: ModelEntry) -> list[CacheItem]:
    return [
        CacheItem(model=entry.name, where="CSA_HOME", what=f"{meta.stage} artifact", path=str(folder), bytes=_dir_size(folder), detail=meta.key)
        for folder, meta in list_artifacts(entry.name)
    ]


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
    return [CacheItem(model=entry.name, where=where, what="lock", path=str(path), bytes=path.stat().st_size, detail=commit, pinned=True)]


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
    for entry in entries:
        items += _weights_items(entry, info, manifest_path) + _artifact_items(entry) + _lock_items(entry, manifest_path)
    return items


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


def prune(manifest: Manifest, *, dry_run: bool = False, manifest_path: str | os.PathLike[str] | None = None) -> list[CacheItem]:
    """Remove what nothing uses: unpinned snapshots of zoo repos, incomplete downloads, half-built artifacts."""
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
    if not dry_run:
        _delete_revisions(info, stale)
        for item in found:
            path = Path(item.path)
            if item.what == "incomplete download":
                path.unlink(missing_ok=True)
            elif item.what == "leftover":
                shutil.rmtree(path, ignore_errors=True)
    return found
