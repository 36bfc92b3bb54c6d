"""Where the Hub and its cache are: the endpoint (HF_ENDPOINT), the cache folders as huggingface_hub
lays them out, and whether we are offline (HF_HUB_OFFLINE or --offline)."""

from __future__ import annotations

import os
from pathlib import Path


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def is_offline(offline: bool | None = None) -> bool:
    """--offline, else HF_HUB_OFFLINE (read now, not at import as huggingface_hub does)."""
    return bool(offline) if offline is not None else _env_flag("HF_HUB_OFFLINE")


def hub_cache_dir() -> Path:
    """The Hugging Face cache, by huggingface_hub's own rules, read from the environment now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.environ["HUGGINGFACE_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "huggingface" / "hub"


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def repo_storage(repo: str) -> Path:
    """The repo's folder in the HF cache (models--org--name)."""
    return hub_cache_dir() / ("models--" + repo.replace("/", "--"))


def snapshot_dir(repo: str, commit: str) -> Path:
    return repo_storage(repo) / "snapshots" / commit
