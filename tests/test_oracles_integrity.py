"""Integrity where only our own checks stand guard: hashes at download time, artifacts built atomically.

- The loopback Hub serves bytes that differ from the sha256 it lists (HubServer.tamper): on the first
  download and on a re-pin, the pull must fail with one Error line, keep nothing in the cache and
  leave the lock as it was. huggingface_hub checks sizes, not hashes, so this is csa's check alone.
- A builder that fails after writing part of its output: the artifact's final folder must not exist
  and no temporary folder may be left beside it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.hub import HubEnv

MODEL, FILE = "test-csa", "model.safetensors"


def _flipped(data: bytes) -> bytes:
    out = bytearray(data)
    out[len(out) // 2] ^= 0xFF  # same size: the client's size check passes, only a hash check fails
    return bytes(out)


def _locked(env: HubEnv) -> dict[str, Any] | None:
    path = env.manifest.with_name("zoo.lock.json")
    return json.loads(path.read_text())["models"].get(MODEL) if path.is_file() else None


def _cached_copies(env: HubEnv, data: bytes) -> list[Path]:
    """Files anywhere in the HF cache (blobs, snapshots, temporary files) holding exactly `data`."""
    return [p for p in env.hub_cache.rglob("*") if p.is_file() and p.stat().st_size == len(data) and p.read_bytes() == data]


def _assert_hash_error(result: Any, env: HubEnv, listed: bytes, served: bytes) -> None:
    assert result.exit_code == 1, result.stderr
    assert result.stderr.count("Error:") == 1, result.stderr
    assert hashlib.sha256(served).hexdigest()[:16] in result.stderr and hashlib.sha256(listed).hexdigest()[:16] in result.stderr
    assert "--force" in result.stderr
    assert _cached_copies(env, served) == [], "the bytes that failed the hash are still in the cache"
    commit = env.server.repos[env.repo(MODEL)].refs["main"]
    entry = env.hub_cache / ("models--" + env.repo(MODEL).replace("/", "--")) / "snapshots" / commit / FILE
    assert not entry.exists() and not entry.is_symlink(), "the served commit's snapshot still has the bad file"


def test_first_download_with_bytes_that_differ_from_the_listed_hash_fails_and_keeps_nothing(hub_env: HubEnv, csa: Any) -> None:
    server, repo = hub_env.server, hub_env.repo(MODEL)
    real = server.file(repo, FILE)
    server.tamper(repo, FILE, _flipped(real))

    result = csa("pull", MODEL)
    _assert_hash_error(result, hub_env, real, _flipped(real))
    assert _locked(hub_env) is None, "a lock was written for bytes that failed their hash"

    server.tampered.clear()  # the Hub serves the real bytes again: the next plain pull pins them
    again = csa("pull", MODEL)
    assert again.exit_code == 0, again.stderr
    assert _locked(hub_env)["files"][FILE]["sha256"] == hashlib.sha256(real).hexdigest()


def test_repin_with_bytes_that_differ_from_the_listed_hash_fails_and_keeps_the_old_pin(hub_env: HubEnv, csa: Any) -> None:
    server, repo = hub_env.server, hub_env.repo(MODEL)
    assert csa("pull", MODEL).exit_code == 0
    before = _locked(hub_env)
    new = _flipped(server.file(repo, FILE))[::-1]  # new upstream content under a new commit
    server.commit(repo, {FILE: new})
    server.tamper(repo, FILE, _flipped(new))

    result = csa("pull", MODEL, "--force")
    _assert_hash_error(result, hub_env, new, _flipped(new))
    assert _locked(hub_env) == before, "the lock moved to bytes that failed their hash"

    server.tampered.clear()
    forced = csa("pull", MODEL, "--force")
    assert forced.exit_code == 0, forced.stderr
    assert _locked(hub_env)["files"][FILE]["sha256"] == hashlib.sha256(new).hexdigest() != before["files"][FILE]["sha256"]


# ----------------------------------------------------------------------------- atomic artifacts


class BuilderFailed(Exception):
    pass


def _failing_builder(tmp: Path) -> None:
    """Write part of an export (a file and a sub-folder), then fail the way a crashed export does."""
    (tmp / "model.onnx").write_bytes(b"\x08\x07" + b"partial graph" * 100)
    (tmp / "results").mkdir()
    (tmp / "results" / "eval.json").write_text("{")
    raise BuilderFailed("export failed half-way")


def _good_builder(tmp: Path) -> None:
    (tmp / "model.onnx").write_bytes(b"complete graph")
    (tmp / "results").mkdir()
    (tmp / "results" / "eval.json").write_text("{}")


@pytest.mark.parametrize("failure", [BuilderFailed, KeyboardInterrupt])
def test_builder_failing_after_partial_output_leaves_no_artifact_and_no_temp_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: type[BaseException]
) -> None:
    from csa_cli.store import artifact_dir, cached_or_built, find_artifact, list_artifacts

    monkeypatch.setenv("CSA_HOME", str(tmp_path / "home"))
    key = "0123456789abcdef"

    def builder(tmp: Path) -> None:
        try:
            _failing_builder(tmp)
        except BuilderFailed:
            raise failure("stopped") from None

    with pytest.raises(failure):
        cached_or_built("test-csa", "export", key, {"x": 1}, builder)
    final = artifact_dir("test-csa", "export", key)
    assert not final.exists(), f"half-written artifact at {final}"
    assert find_artifact("test-csa", "export", key) is None and list_artifacts() == []
    leftovers = [p for p in (tmp_path / "home").rglob("*") if p.is_file()]
    assert leftovers == [], f"partial output left behind: {leftovers}"
    assert not final.parent.exists() or list(final.parent.iterdir()) == [], "a temporary folder is left beside the artifact"

    # the same key then builds normally: nothing stale is found or merged in
    folder, cached = cached_or_built("test-csa", "export", key, {"x": 1}, _good_builder)
    assert (folder, cached) == (final, False)
    assert (folder / "model.onnx").read_bytes() == b"complete graph" and (folder / "results" / "eval.json").read_text() == "{}"
    assert sorted(p.name for p in final.parent.iterdir()) == [final.name]


def test_failed_rebuild_keeps_the_previous_complete_artifact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from csa_cli.store import ARTIFACT_META, ArtifactMeta, cached_or_built, find_artifact

    monkeypatch.setenv("CSA_HOME", str(tmp_path / "home"))
    key = "fedcba9876543210"
    folder, _ = cached_or_built("test-csa", "export", key, {"x": 2}, _good_builder)
    before = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    with pytest.raises(BuilderFailed):
        cached_or_built("test-csa", "export", key, {"x": 2}, _failing_builder, redo=True)
    assert find_artifact("test-csa", "export", key) == folder
    assert {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    meta = ArtifactMeta.model_validate_json((folder / ARTIFACT_META).read_text())
    assert meta.files == ["model.onnx", "results/eval.json"] and meta.inputs == {"x": 2}
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name], "a temporary or .old folder is left"
