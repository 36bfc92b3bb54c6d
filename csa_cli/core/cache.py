"""What csa holds for a model: weights in the Hugging Face cache, artifacts under CSA_HOME."""

from __future__ import annotations

from typing import Any

from csa_cli.core.artifacts import list_artifacts
from csa_cli.manifest import ModelEntry


def hub_cache_items(entry: ModelEntry) -> list[dict[str, Any]]:
    """Snapshots of the entry's Hub repo in the HF cache (none when it has no source)."""
    if entry.source is None:
        return []
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir()
    except CacheNotFound:
        return []
    items = []
    for repo in info.repos:
        if repo.repo_id == entry.source.repo and repo.repo_type == "model":
            for rev in repo.revisions:
                items.append({"what": "weights (HF cache)", "path": str(rev.snapshot_path), "commit": rev.commit_hash, "bytes": rev.size_on_disk})
    return items


def cached_items_for(entry: ModelEntry) -> list[dict[str, Any]]:
    items = hub_cache_items(entry)
    for folder, meta in list_artifacts(entry.name):
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        items.append({"what": f"{meta.stage} artifact (CSA_HOME)", "path": str(folder), "key": meta.key, "bytes": size})
    return items
