"""The artifact store's keys, layout and listings, checked against hashes and paths written out by hand.

A key that drifts silently either rebuilds everything or, worse, serves an artifact built from other
inputs; a layout that moves orphans every cache. So the expected values here are computed from the
documented formats (store.py's docstring), not by calling the functions under test a second time.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CSA_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _build(text: str) -> tuple[list[str], object]:
    calls: list[str] = []

    def builder(tmp: Path) -> None:
        calls.append(text)
        (tmp / "model.onnx").write_text(text)

    return calls, builder


def test_artifact_key_is_the_canonical_json_hash_of_version_and_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    from csa_cli import store

    monkeypatch.setattr(store, "__version__", "9.9-test")
    # sorted keys, json.dumps' default separators, a Path as its str
    canonical = b'{"batch": 1, "csa": "9.9-test", "model": "csa-nano", "path": "/x/y"}'
    expected = hashlib.sha256(canonical).hexdigest()[:16]
    assert store.artifact_key(model="csa-nano", path=Path("/x/y"), batch=1) == expected
    assert store.artifact_key(batch=1, path=Path("/x/y"), model="csa-nano") == expected  # order of arguments
    assert store.artifact_key(model="csa-nano", path=Path("/x/y"), batch=2) != expected
    monkeypatch.setattr(store, "__version__", "9.10-test")
    assert store.artifact_key(model="csa-nano", path=Path("/x/y"), batch=1) != expected  # a new csa rebuilds


def test_source_hash_covers_names_and_contents_in_sorted_order(tmp_path: Path) -> None:
    from csa_cli.store import source_hash

    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_bytes(b"x = 1\n")
    b.write_bytes(b"y = 2\n")
    expected = hashlib.sha256(b"a.py\0x = 1\nb.py\0y = 2\n").hexdigest()[:16]
    assert source_hash([b, a]) == source_hash([a, b]) == expected
    b.write_bytes(b"y = 3\n")
    assert source_hash([a, b]) != expected
    renamed = tmp_path / "c.py"
    b.write_bytes(b"y = 2\n")
    b.rename(renamed)
    assert source_hash([a, renamed]) != expected


def test_artifact_and_result_paths_follow_the_documented_layout(home: Path) -> None:
    from csa_cli.store import artifact_dir, results_dir

    assert artifact_dir("org/model v2", "ex port", "0f") == home / "artifacts" / "org_model_v2" / "ex_port-0f"
    assert artifact_dir("csa-nano_1.0", "qdq-batch", "ab") == home / "artifacts" / "csa-nano_1.0" / "qdq-batch-ab"
    assert results_dir("eval/x", "a b") == home / "results" / "eval_x" / "a_b"


def test_cached_or_built_reuses_redoes_and_keys_apart(home: Path) -> None:
    from csa_cli.store import ARTIFACT_META, ArtifactMeta, artifact_dir, cached_or_built

    calls, builder = _build("v1")
    folder, cached = cached_or_built("m", "export", "k1", {"x": 1}, builder)
    assert (folder, cached, calls) == (artifact_dir("m", "export", "k1"), False, ["v1"])
    meta = ArtifactMeta.model_validate_json((folder / ARTIFACT_META).read_text())
    assert (meta.model, meta.stage, meta.key, meta.inputs, meta.files) == ("m", "export", "k1", {"x": 1}, ["model.onnx"])
    assert abs(meta.created - time.time()) < 60

    again, cached = cached_or_built("m", "export", "k1", {"x": 1}, builder)
    assert (again, cached, calls) == (folder, True, ["v1"])  # found: the builder is not called

    calls2, builder2 = _build("v2")
    redone, cached = cached_or_built("m", "export", "k1", {"x": 1}, builder2, redo=True)
    assert (redone, cached, calls2) == (folder, False, ["v2"]) and (folder / "model.onnx").read_text() == "v2"

    other, cached = cached_or_built("m", "export", "k2", {"x": 2}, builder2)
    assert other != folder and not cached and calls2 == ["v2", "v2"]


def test_find_artifact_refuses_incomplete_or_unreadable_folders(home: Path) -> None:
    from csa_cli.store import ARTIFACT_META, cached_or_built, find_artifact

    _, builder = _build("v1")
    folder, _ = cached_or_built("m", "export", "k", {}, builder)
    assert find_artifact("m", "export", "k") == folder
    (folder / "model.onnx").unlink()
    assert find_artifact("m", "export", "k") is None  # a listed file is missing
    (folder / "model.onnx").write_text("v1")
    (folder / ARTIFACT_META).write_text("{not json")
    assert find_artifact("m", "export", "k") is None
    assert find_artifact("m", "export", "other") is None


def test_list_artifacts_filters_by_model_and_skips_unreadable_ones(home: Path) -> None:
    from csa_cli.store import ARTIFACT_META, cached_or_built, list_artifacts

    assert list_artifacts() == []
    _, builder = _build("v")
    a1, _ = cached_or_built("a", "export", "k1", {}, builder)
    b1, _ = cached_or_built("b", "export", "k1", {}, builder)
    a2, _ = cached_or_built("a", "quantize", "k2", {}, builder)
    assert [(p, m.model, m.stage) for p, m in list_artifacts()] == [(a1, "a", "export"), (a2, "a", "quantize"), (b1, "b", "export")]
    assert [p for p, _ in list_artifacts("a")] == [a1, a2]
    assert [p for p, _ in list_artifacts("b")] == [b1]
    (a1 / ARTIFACT_META).write_text("{")  # the first one sorted is unreadable: the others are still listed
    assert [p for p, _ in list_artifacts()] == [a2, b1]


def test_results_are_stored_as_json_overwritten_by_key_and_listed_by_time(home: Path) -> None:
    from csa_cli.store import load_results, store_result

    assert load_results("eval") == []
    first = store_result("eval", "a", "zz", {"top1": 0.5})
    time.sleep(0.01)
    store_result("eval", "a", "aa", {"top1": 0.6})
    time.sleep(0.01)
    store_result("eval", "b", "mm", {"top1": 0.7})
    assert first == home / "results" / "eval" / "a" / "zz.json"
    saved = json.loads(first.read_text())
    assert saved["top1"] == 0.5 and abs(saved["stored_at"] - time.time()) < 60
    # by the time they were stored, not by file name
    assert [r["top1"] for r in load_results("eval", "a")] == [0.5, 0.6]
    assert [r["top1"] for r in load_results("eval")] == [0.5, 0.6, 0.7]
    assert load_results("profile") == [] and load_results("eval", "c") == []

    time.sleep(0.01)
    store_result("eval", "a", "zz", {"top1": 0.8})  # the same key: replaced, and now the latest
    assert [r["top1"] for r in load_results("eval", "a")] == [0.6, 0.8]

    (home / "results" / "eval" / "a" / "00-broken.json").write_text("{")  # sorted first: skipped, not the end
    (home / "results" / "eval" / "a" / "01-old.json").write_text(json.dumps({"top1": 0.1}))  # no stored_at: oldest
    assert [r["top1"] for r in load_results("eval", "a")] == [0.1, 0.6, 0.8]
