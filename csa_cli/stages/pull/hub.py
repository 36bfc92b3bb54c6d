"""`csa pull`: a zoo entry's weights from the Hugging Face Hub, pinned by a lock and verified.

The files land in the standard Hugging Face cache (HF_HOME / HF_HUB_CACHE), downloaded by
huggingface_hub itself. The first pull of a model resolves its revision to a commit and
records that commit and the sha256 + size of every file in a lock; every later pull and load
verifies the files against it. A file that does not match is taken out of use (removed from
the cache) and the pull fails, saying what differs and how to re-pull.

Where the lock lives:
    beside a user manifest that declares the entry's source: <manifest stem>.lock.json
    (one file for all its models, meant to be committed with the manifest), else
    CSA_HOME/locks/<model>.lock.json.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from csa_cli import events
from csa_cli.errors import CsaError, UsageError
from csa_cli.manifest import ModelEntry
from csa_cli.paths import atomic_write_text, sha256_file, sha256_stamped
from csa_cli.stages.pull.hub_env import hub_cache_dir, hub_endpoint, is_offline, repo_storage, snapshot_dir
from csa_cli.stages.pull.hub_errors import HashMismatch, hub_error, no_source_error, offline_missing
from csa_cli.stages.pull.lock import LockedFile, ModelLock, combined_hash, lock_path_for, read_lock, write_lock

_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


# ----------------------------------------------------------------------------- file formats


class PullResult(BaseModel):
    """What a pull produced: where the verified files are and what they are pinned to."""

    model: str
    repo: str
    revision: str
    commit: str
    files: dict[str, str] = Field(description="file name -> sha256")
    snapshot_dir: str
    license: str
    hub_license: str | None = None
    downloaded_bytes: int = 0
    weights_path: str = Field(description="the main weights file (safetensors first)")
    weights_hash: str = Field(description="sha256 of the weights file (of the sorted name:sha256 lines if several)")
    lock_path: str
    format: str

    def record_fields(self) -> dict[str, Any]:
        """The fields of a {"kind": "checkpoint"} record."""
        return {
            "model": self.model,
            "path": self.weights_path,
            "weights": "pretrained",
            "weights_hash": self.weights_hash,
            "revision": self.revision,
            "commit": self.commit,
            "license": self.license,
            "repo": self.repo,
            "snapshot_dir": self.snapshot_dir,
            "files": self.files,
            "format": self.format,
            "downloaded_bytes": self.downloaded_bytes,
            "lock": self.lock_path,
        }


# ----------------------------------------------------------------------------- environment


# ----------------------------------------------------------------------------- locks


# ----------------------------------------------------------------------------- errors


# ----------------------------------------------------------------------------- selection and verification


def select_files(entry: ModelEntry, available: set[str] | None) -> list[str]:
    """The entry's files to fetch, safetensors first: a listed .bin is skipped when a listed .safetensors exists."""
    assert entry.source is not None
    listed = list(entry.source.files)
    present = listed if available is None else [f for f in listed if f in available]
    weights = [f for f in present if f.endswith(".safetensors")] or [f for f in present if f.endswith(".bin")]
    others = [f for f in present if not f.endswith(_WEIGHT_SUFFIXES)]
    return weights + others


def _weights_of(files: list[str]) -> list[str]:
    return [f for f in files if f.endswith(_WEIGHT_SUFFIXES)]


def take_out_of_use(path: Path) -> None:
    """Remove a bad cached file: the snapshot entry and the blob it points to."""
    try:
        target = path.resolve() if path.is_symlink() else None
        path.unlink(missing_ok=True)
        if target is not None and target.is_file():
            target.unlink(missing_ok=True)
    except OSError:
        pass


def _verify_against_lock(entry: ModelEntry, lock: ModelLock, folder: Path, files: list[str]) -> dict[str, str]:
    """sha256 of every file, checked against the lock; a mismatch removes the file and raises."""
    hashes: dict[str, str] = {}
    for name in files:
        path = folder / name
        pinned = lock.files.get(name)
        actual = sha256_stamped(path)  # remembered per file stamp: a cached stage does not reread 100 MB
        size = path.stat().st_size
        if pinned is not None and (actual != pinned.sha256 or size != pinned.size):
            take_out_of_use(path)
            raise HashMismatch(
                f"{name} of {entry.name} (commit {lock.commit[:12]}) does not match the lock: sha256 {actual[:16]}…, {size} bytes;"
                f" locked {pinned.sha256[:16]}…, {pinned.size} bytes. The bad file was taken out of use (removed from the cache)",
                hint=f"run `csa pull {entry.name} --force` to download it again",
            )
        hashes[name] = actual
    return hashes


def _check_upstream(entry: ModelEntry, lock: ModelLock, siblings: dict[str, Any], files: list[str]) -> None:
    """The Hub's metadata for the pinned commit must still describe the locked files."""
    for name in files:
        pinned = lock.files.get(name)
        remote = siblings.get(name)
        if pinned is None or remote is None:
            continue
        lfs = getattr(remote, "lfs", None)
        remote_sha = lfs["sha256"] if lfs else None
        remote_size = lfs["size"] if lfs else getattr(remote, "size", None)
        remote_blob = getattr(remote, "blob_id", None)
        differs = []
        if remote_sha is not None and remote_sha != pinned.sha256:
            differs.append(f"sha256 {remote_sha[:16]}… vs locked {pinned.sha256[:16]}…")
        if remote_size is not None and remote_size != pinned.size:
            differs.append(f"{remote_size} bytes vs locked {pinned.size}")
        if remote_blob and pinned.blob_id and remote_blob != pinned.blob_id and not differs:
            differs.append(f"blob {remote_blob[:12]} vs locked {pinned.blob_id[:12]}")
        if differs:
            raise HashMismatch(
                f"{name} of {entry.name} changed upstream under the same revision (commit {lock.commit[:12]} of {lock.repo}): "
                + "; ".join(differs)
                + ". The cached copy was not replaced",
                hint=f"if the Hub is fixed, pull again; to accept the new content and re-pin the lock: `csa pull {entry.name} --force`",
            )


# ----------------------------------------------------------------------------- pulling


def _model_info(repo: str, revision: str) -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub_endpoint()).model_info(repo, revision=revision, files_metadata=True)


@contextmanager
def _progress_bars(show: bool) -> Iterator[None]:
    """huggingface_hub's tqdm bars only on a terminal; plain lines otherwise."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    if not show and not was_disabled:
        disable_progress_bars()
    try:
        yield
    finally:
        if not show and not was_disabled:
            enable_progress_bars()


def _write_ref(repo: str, revision: str, commit: str) -> None:
    """refs/<revision> -> commit, as huggingface_hub writes it, so offline tools find the snapshot."""
    if revision == commit:
        return
    ref = repo_storage(repo) / "refs" / revision
    try:
        if not ref.is_file() or ref.read_text() != commit:
            atomic_write_text(ref, commit)
    except OSError:
        pass


def _cached_commit(repo: str, revision: str) -> str | None:
    if _COMMIT_RE.match(revision) and snapshot_dir(repo, revision).is_dir():
        return revision
    ref = repo_storage(repo) / "refs" / revision
    try:
        commit = ref.read_text().strip()
    except OSError:
        return None
    return commit if _COMMIT_RE.match(commit) else None


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def _result(
    entry: ModelEntry, lock: ModelLock, files: list[str], hashes: dict[str, str], downloaded: int, lock_path: Path, hub_license: str | None
) -> PullResult:
    assert entry.source is not None
    folder = snapshot_dir(lock.repo, lock.commit)
    weights = _weights_of(files)
    return PullResult(
        model=entry.name,
        repo=lock.repo,
        revision=lock.revision,
        commit=lock.commit,
        files={f: hashes[f] for f in files},
        snapshot_dir=str(folder),
        license=entry.license,
        hub_license=hub_license,
        downloaded_bytes=downloaded,
        weights_path=str(folder / weights[0]) if weights else str(folder / files[0]),
        weights_hash=combined_hash({f: hashes[f] for f in weights} or hashes),
        lock_path=str(lock_path),
        format=entry.source.format,
    )


def verified_cache(entry: ModelEntry, manifest_path: str | os.PathLike[str] | None = None) -> PullResult | None:
    """The pinned files, verified, with no network at all; None when not pinned or not fully cached.

    A cached file that does not match the lock is taken out of use and raises HashMismatch.
    """
    if entry.source is None:
        return None
    lock = read_lock(entry, manifest_path)
    if lock is None or lock.repo != entry.source.repo:
        return None
    files = select_files(entry, set(lock.files))
    folder = snapshot_dir(lock.repo, lock.commit)
    if not files or not all((folder / f).is_file() for f in files):
        return None
    hashes = _verify_against_lock(entry, lock, folder, files)
    return _result(entry, lock, files, hashes, 0, lock_path_for(entry, manifest_path), None)


def _pull_offline(entry: ModelEntry, repo: str, revision: str, pin: ModelLock | None, manifest_path: str | os.PathLike[str] | None) -> PullResult:
    assert entry.source is not None
    commit = pin.commit if pin is not None else _cached_commit(repo, revision)
    if commit is None:
        raise offline_missing(entry, repo, f"revision '{revision}'")
    folder = snapshot_dir(repo, commit)
    available = {f for f in (pin.files if pin is not None else entry.source.files) if (folder / f).is_file()}
    files = select_files(entry, available)
    wanted = select_files(entry, set(pin.files)) if pin is not None else files
    missing = [f for f in wanted if f not in available]
    if missing or not _weights_of(files):
        raise offline_missing(entry, repo, ", ".join(missing) or "the weights")
    lock_path = lock_path_for(entry, manifest_path)
    if pin is not None:
        hashes = _verify_against_lock(entry, pin, folder, files)
        lock = pin
    else:
        hashes = {f: sha256_file(folder / f) for f in files}
        lock = ModelLock(
            model=entry.name,
            repo=repo,
            revision=revision,
            commit=commit,
            files={f: LockedFile(sha256=hashes[f], size=(folder / f).stat().st_size) for f in files},
        )
        write_lock(lock, entry, manifest_path)
        events.info(f"Pinned {entry.name} to commit {commit[:12]} (from the offline cache) in {lock_path}")
    events.info(f"{entry.name}: offline, {len(files)} cached file(s) verified at commit {commit[:12]}")
    return _result(entry, lock, files, hashes, 0, lock_path, None)


def _pin_for(
    entry: ModelEntry, repo: str, rev: str, *, locked: bool, manifest_path: str | os.PathLike[str] | None
) -> tuple[ModelLock | None, ModelLock | None]:
    """(the lock, the pin it holds for repo@rev or None); --locked without such a pin is an error."""
    lock = read_lock(entry, manifest_path)
    pin = lock if lock is not None and lock.repo == repo and lock.revision == rev else None
    if locked and pin is None:
        have = f"it pins {lock.repo}@{lock.revision}" if lock is not None else "there is none"
        raise CsaError(
            f"--locked: no lock pins {entry.name} to {repo}@{rev} ({have}; looked in {lock_path_for(entry, manifest_path)})",
            hint=f"run `csa pull {entry.name}` without --locked once to create the pin",
        )
    return lock, pin


def _wanted_files(
    entry: ModelEntry, repo: str, rev: str, commit: str, siblings: dict[str, Any], pin: ModelLock | None, locked: bool, lock_path: Path
) -> list[str]:
    """The entry's files the repo serves; every listed file is needed, except that weight files are alternatives."""
    assert entry.source is not None
    files = select_files(entry, set(siblings))
    missing = [f for f in entry.source.files if f not in siblings and not f.endswith(_WEIGHT_SUFFIXES)]
    if missing or not _weights_of(files):
        raise CsaError(
            f"{repo}@{rev} (commit {commit[:12]}) lacks {', '.join(missing) or 'weights'}",
            hint=f"check source.files of {entry.name} in the manifest (the repo has: {', '.join(sorted(siblings)[:8])})",
        )
    if locked and pin is not None:
        extra = [f for f in files if f not in pin.files]
        if extra:
            raise CsaError(
                f"--locked: {', '.join(extra)} of {entry.name} is not in the lock {lock_path}", hint=f"run `csa pull {entry.name}` without --locked to re-pin"
            )
    return files


def _download(entry: ModelEntry, repo: str, rev: str, commit: str, files: list[str], siblings: dict[str, Any], *, force: bool) -> int:
    """Fetch what the cache lacks (or everything, with force) into the HF cache; the bytes downloaded."""
    from huggingface_hub import hf_hub_download

    folder = snapshot_dir(repo, commit)
    downloaded = 0
    with _progress_bars(events.is_live()):
        for name in files:
            size = getattr(siblings[name], "size", None) or 0
            cached = (folder / name).is_file() and not force
            if force:  # huggingface_hub keeps an existing snapshot entry even with force_download: drop it first
                take_out_of_use(folder / name)
            if not cached:
                events.info(f"Downloading {name} ({_human(size)}) from {repo}@{commit[:12]}")
            try:
                hf_hub_download(repo, name, revision=commit, cache_dir=hub_cache_dir(), endpoint=hub_endpoint(), force_download=force)
            except Exception as exc:
                raise hub_error(exc, entry, repo, rev, name) from None
            if not cached:
                downloaded += size
    return downloaded


def _fresh_lock(entry: ModelEntry, repo: str, rev: str, commit: str, files: list[str], siblings: dict[str, Any]) -> tuple[ModelLock, dict[str, str]]:
    """A new pin of the downloaded files; a file whose sha256 differs from the Hub's listing is taken out of use."""
    folder = snapshot_dir(repo, commit)
    hashes = {}
    for name in files:
        path = folder / name
        hashes[name] = sha256_file(path)
        lfs = getattr(siblings[name], "lfs", None)
        if lfs and lfs["sha256"] != hashes[name]:
            take_out_of_use(path)
            raise HashMismatch(
                f"{name} downloaded from {repo}@{commit[:12]} has sha256 {hashes[name][:16]}…, the Hub lists {lfs['sha256'][:16]}…;"
                " the bad file was taken out of use",
                hint=f"run `csa pull {entry.name} --force` to download it again",
            )
    lock = ModelLock(
        model=entry.name,
        repo=repo,
        revision=rev,
        commit=commit,
        files={f: LockedFile(sha256=hashes[f], size=(folder / f).stat().st_size, blob_id=getattr(siblings[f], "blob_id", None)) for f in files},
    )
    return lock, hashes


def pull(
    entry: ModelEntry,
    *,
    revision: str | None = None,
    locked: bool = False,
    offline: bool | None = None,
    force: bool = False,
    manifest_path: str | os.PathLike[str] | None = None,
) -> PullResult:
    """Download (or find in the cache) the entry's files at its pinned commit, verify them, and pin them.

    revision: overrides the manifest's. locked: use only what the lock pins, never re-pin.
    offline: None reads HF_HUB_OFFLINE. force: download again; without --locked, also re-resolve
    the revision and re-pin the lock to what the Hub serves now.
    """
    if entry.source is None:
        raise no_source_error(entry)
    repo, rev = entry.source.repo, revision or entry.source.revision
    lock, pin = _pin_for(entry, repo, rev, locked=locked, manifest_path=manifest_path)
    lock_path = lock_path_for(entry, manifest_path)
    if is_offline(offline):
        if force:
            raise UsageError("--force downloads again, which needs the network", hint="drop --offline / unset HF_HUB_OFFLINE")
        return _pull_offline(entry, repo, rev, pin, manifest_path)

    repin = pin is None or (force and not locked)
    target = rev if repin or pin is None else pin.commit
    events.info(f"Resolving {repo}@{target} on {hub_endpoint()}")
    try:
        info = _model_info(repo, target)
    except Exception as exc:
        raise hub_error(exc, entry, repo, target) from None
    commit = str(info.sha)
    siblings = {s.rfilename: s for s in (info.siblings or [])}
    files = _wanted_files(entry, repo, rev, commit, siblings, pin, locked, lock_path)
    if not repin and pin is not None:
        _check_upstream(entry, pin, siblings, files)
    card = getattr(info, "card_data", None)
    hub_license = getattr(card, "license", None) if card is not None else None

    downloaded = _download(entry, repo, rev, commit, files, siblings, force=force)
    if not repin and pin is not None:
        hashes = _verify_against_lock(entry, pin, snapshot_dir(repo, commit), files)
        new_lock = pin
    else:
        new_lock, hashes = _fresh_lock(entry, repo, rev, commit, files, siblings)
        if lock is not None and (lock.commit != commit or {k: v.sha256 for k, v in lock.files.items()} != hashes):
            events.info(f"Re-pinned {entry.name}: {lock.repo}@{lock.revision} commit {lock.commit[:12]} -> {repo}@{rev} commit {commit[:12]}")
        write_lock(new_lock, entry, manifest_path)
        _write_ref(repo, rev, commit)  # only a freshly resolved revision says where the branch points now
    verb = f"downloaded {_human(downloaded)}" if downloaded else "already cached, nothing downloaded"
    events.info(f"{entry.name}: {len(files)} file(s) at commit {commit[:12]} verified ({verb}); lock: {lock_path}")
    return _result(entry, new_lock, files, hashes, downloaded, lock_path, hub_license)
