"""`csa pull`, the lock and weight loading, through the real huggingface_hub client and a loopback Hub."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.hub import TEST_TOKEN, HubEnv


def _logits(module: Any, size: int = 64) -> Any:
    """Logits of one fixed random image (64 px keeps it cheap; Swin's window layout needs 224)."""
    import torch

    size = 224 if "Swin" in type(module).__name__ else size
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return module(x)


def _lock(env: HubEnv) -> dict[str, Any]:
    return json.loads(env.manifest.with_name("zoo.lock.json").read_text())


# ----------------------------------------------------------------------------- pull + load


@pytest.mark.parametrize("model", ["test-convnext", "test-swin", "test-cvt"])
def test_pull_then_load_gives_the_saved_models_logits(hub_env: HubEnv, csa: Any, model: str) -> None:
    import torch

    from csa_cli.paths import sha256_file
    from csa_cli.stages.pull.weights import load_model

    result = csa("pull", model)
    assert result.exit_code == 0, result.stderr
    rec = result.record
    assert rec["kind"] == "checkpoint" and rec["model"] == model and rec["weights"] == "pretrained"
    assert rec["repo"] == hub_env.repo(model)
    assert len(rec["commit"]) == 40 and rec["revision"] == "main"
    assert Path(rec["path"]).name == "model.safetensors"
    assert rec["weights_hash"] == sha256_file(Path(rec["path"]))
    assert "License" in result.stderr

    loaded = load_model(model, "pretrained")
    assert loaded.weights == "pretrained" and loaded.commit == rec["commit"] and loaded.weights_hash == rec["weights_hash"]
    assert not loaded.module.training
    torch.testing.assert_close(_logits(loaded.module), _logits(hub_env.modules[model]), rtol=0, atol=0)


def test_pull_and_load_our_csa_checkpoint_format(hub_env: HubEnv, csa: Any) -> None:
    import torch

    from csa_cli.stages.pull.weights import load_model

    result = csa("pull", "test-csa")
    assert result.exit_code == 0, result.stderr
    assert result.record["format"] == "csa"
    loaded = load_model("test-csa", "pretrained")
    expected = _logits(hub_env.modules["test-csa"])
    torch.testing.assert_close(_logits(loaded.module), expected, rtol=0, atol=0)
    # the comparison can fail: the same architecture with other (random) weights gives other logits
    assert not torch.allclose(_logits(load_model("test-csa", "random").module), expected)


def test_second_pull_and_loads_download_nothing(hub_env: HubEnv, csa: Any) -> None:
    from csa_cli.stages.pull.weights import load_model

    server, repo = hub_env.server, hub_env.repo("test-convnext")
    first = csa("pull", "test-convnext")
    assert first.exit_code == 0, first.stderr
    assert first.record["downloaded_bytes"] > 1_000_000
    assert server.get_count(repo, "model.safetensors") == 1 and server.get_count(repo, "config.json") == 1
    # safetensors first: the listed .bin is neither downloaded nor pinned
    assert server.get_count(repo, "pytorch_model.bin") == 0
    assert set(_lock(hub_env)["models"]["test-convnext"]["files"]) == {"model.safetensors", "config.json"}

    second = csa("pull", "test-convnext")
    assert second.exit_code == 0, second.stderr
    assert server.file_gets(repo) == 2, "the second pull fetched file content again"
    assert second.record["downloaded_bytes"] == 0
    assert second.record["commit"] == first.record["commit"] and second.record["weights_hash"] == first.record["weights_hash"]

    before = len(server.requests)
    loaded = load_model("test-convnext", "pretrained")
    assert loaded.weights == "pretrained"
    assert len(server.requests) == before, "loading a pulled model touched the network"


def test_bin_only_repo_loads_through_weights_only_torch_load(hub_env: HubEnv, csa: Any) -> None:
    import torch

    from csa_cli.stages.pull.weights import load_model

    result = csa("pull", "test-binonly")
    assert result.exit_code == 0, result.stderr
    assert Path(result.record["path"]).name == "pytorch_model.bin"
    loaded = load_model("test-binonly", "pretrained")
    torch.testing.assert_close(_logits(loaded.module), _logits(hub_env.modules["test-convnext"]), rtol=0, atol=0)


# ----------------------------------------------------------------------------- verification


def test_corrupted_cached_blob_is_taken_out_of_use_then_force_repulls(hub_env: HubEnv, csa: Any) -> None:
    from csa_cli.stages.pull.hub_errors import HashMismatch
    from csa_cli.stages.pull.weights import load_model

    assert csa("pull", "test-convnext").exit_code == 0
    cached = hub_env.snapshot_file("test-convnext", "model.safetensors")
    blob = cached.resolve()
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    blob.write_bytes(bytes(data))

    with pytest.raises(HashMismatch, match="does not match the lock"):
        load_model("test-convnext", "pretrained")
    assert not cached.exists() and not blob.exists(), "the bad file is still in use"

    blob_gets = hub_env.server.get_count(hub_env.repo("test-convnext"), "model.safetensors")
    again = csa("pull", "test-convnext", "--force")
    assert again.exit_code == 0, again.stderr
    assert hub_env.server.get_count(hub_env.repo("test-convnext"), "model.safetensors") == blob_gets + 1
    assert load_model("test-convnext", "pretrained").weights == "pretrained"


def test_corrupted_blob_fails_the_pull_with_exit_1(hub_env: HubEnv, csa: Any) -> None:
    assert csa("pull", "test-swin").exit_code == 0
    blob = hub_env.snapshot_file("test-swin", "model.safetensors").resolve()
    blob.write_bytes(blob.read_bytes()[:-8] + b"garbage!")
    result = csa("pull", "test-swin")
    assert result.exit_code == 1
    assert result.stderr.count("Error:") == 1 and "does not match the lock" in result.stderr
    assert "taken out of use" in result.stderr and "--force" in result.stderr
    assert result.record["kind"] == "error"
    assert csa("pull", "test-swin").exit_code == 0  # the bad file is gone, so a plain pull fetches it again


def test_file_changed_upstream_under_the_same_revision(hub_env: HubEnv, csa: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server, repo = hub_env.server, hub_env.repo("test-convnext")
    first = csa("pull", "test-convnext")
    assert first.exit_code == 0
    original = server.file(repo, "model.safetensors")
    tampered = bytearray(original)
    tampered[-1] ^= 0xFF
    server.replace_file(repo, "model.safetensors", bytes(tampered))

    # the warm cache still matches the lock, but the Hub now disagrees with it
    result = csa("pull", "test-convnext")
    assert result.exit_code == 1
    assert "changed upstream under the same revision" in result.stderr and first.record["commit"][:12] in result.stderr

    # another machine sharing the lock (fresh HF cache) must not accept the changed file either
    monkeypatch.setenv("HF_HOME", str(tmp_path / "other-hf-home"))
    other = csa("pull", "test-convnext")
    assert other.exit_code == 1 and "changed upstream" in other.stderr
    assert not list((tmp_path / "other-hf-home").rglob("model.safetensors")), "the changed file was kept"

    server.replace_file(repo, "model.safetensors", original)  # upstream fixed
    fixed = csa("pull", "test-convnext")
    assert fixed.exit_code == 0, fixed.stderr
    assert fixed.record["weights_hash"] == first.record["weights_hash"]


def test_force_accepts_new_upstream_content_and_repins(hub_env: HubEnv, csa: Any) -> None:
    import hashlib

    server, repo = hub_env.server, hub_env.repo("test-convnext")
    assert csa("pull", "test-convnext").exit_code == 0
    new = bytearray(server.file(repo, "model.safetensors"))
    new[-1] ^= 0xFF
    server.replace_file(repo, "model.safetensors", bytes(new))
    assert csa("pull", "test-convnext").exit_code == 1
    forced = csa("pull", "test-convnext", "--force")
    assert forced.exit_code == 0, forced.stderr
    assert _lock(hub_env)["models"]["test-convnext"]["files"]["model.safetensors"]["sha256"] == hashlib.sha256(bytes(new)).hexdigest()


def test_download_cut_halfway_resumes_and_verifies(hub_env: HubEnv, csa: Any) -> None:
    from csa_cli.stages.pull.weights import load_model

    server, repo = hub_env.server, hub_env.repo("test-convnext")
    server.cut(repo, "model.safetensors", times=1)
    result = csa("pull", "test-convnext")
    assert result.exit_code == 0, result.stderr
    assert server.get_count(repo, "model.safetensors") == 2  # the cut one, then a Range request for the rest
    assert load_model("test-convnext", "pretrained").weights_hash == result.record["weights_hash"]


def test_download_cut_for_good_keeps_nothing_then_next_pull_completes(hub_env: HubEnv, csa: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.file_download as fd

    monkeypatch.setattr(fd.time, "sleep", lambda _s: None)  # the client's retry back-off, not the behaviour under test
    server, repo = hub_env.server, hub_env.repo("test-convnext")
    server.cut(repo, "model.safetensors", times=100)
    result = csa("pull", "test-convnext")
    assert result.exit_code == 1
    assert "cut off" in result.stderr and "nothing partial was kept" in result.stderr
    storage = hub_env.hub_cache / ("models--" + repo.replace("/", "--"))
    assert not list(storage.rglob("model.safetensors")) and not [p for p in storage.rglob("*") if p.is_file() and p.stat().st_size > 1_000_000]
    assert not hub_env.manifest.with_name("zoo.lock.json").exists(), "a failed first pull wrote a lock"

    server.cuts.clear()
    done = csa("pull", "test-convnext")
    assert done.exit_code == 0, done.stderr


# ----------------------------------------------------------------------------- pinning


def test_lock_pins_the_commit_until_forced(hub_env: HubEnv, csa: Any) -> None:
    server, repo = hub_env.server, hub_env.repo("test-cvt")
    first = csa("pull", "test-cvt")
    assert first.exit_code == 0
    files = {name: server.file(repo, name) for name in ("model.safetensors", "config.json")}
    newer = server.commit(repo, {**files, "config.json": files["config.json"] + b"\n"})  # main moves on upstream

    pinned = csa("pull", "test-cvt")
    assert pinned.exit_code == 0 and pinned.record["commit"] == first.record["commit"] != newer
    locked = csa("pull", "test-cvt", "--locked")
    assert locked.exit_code == 0 and locked.record["commit"] == first.record["commit"]

    moved = csa("pull", "test-cvt", "--force")
    assert moved.exit_code == 0 and moved.record["commit"] == newer
    assert "Re-pinned" in moved.stderr
    assert _lock(hub_env)["models"]["test-cvt"]["commit"] == newer


def test_locked_refuses_what_is_not_in_the_lock(hub_env: HubEnv, csa: Any) -> None:
    none_yet = csa("pull", "test-swin", "--locked")
    assert none_yet.exit_code == 1 and "--locked" in none_yet.stderr and "no lock pins" in none_yet.stderr
    assert hub_env.server.file_gets(hub_env.repo("test-swin")) == 0
    assert csa("pull", "test-swin").exit_code == 0
    other_rev = csa("pull", "test-swin", "--locked", "--revision", "v2")
    assert other_rev.exit_code == 1 and "no lock pins" in other_rev.stderr


def test_revision_override_and_unknown_revision(hub_env: HubEnv, csa: Any) -> None:
    server, repo = hub_env.server, hub_env.repo("test-swin")
    files = {name: server.file(repo, name) for name in ("model.safetensors", "config.json")}
    dev = server.commit(repo, files, branch="dev")
    result = csa("pull", "test-swin", "--revision", "dev")
    assert result.exit_code == 0 and result.record["revision"] == "dev" and result.record["commit"] == dev
    missing = csa("pull", "test-swin", "--revision", "no-such-branch")
    assert missing.exit_code == 1 and "revision 'no-such-branch' not found" in missing.stderr and "404" in missing.stderr


def test_lock_goes_to_csa_home_unless_the_user_manifest_declares_the_source(hub_env: HubEnv, test_manifest_path: Path) -> None:
    from csa_cli.manifest import load_manifest
    from csa_cli.stages.pull.lock import lock_path_for

    entry = load_manifest(hub_env.manifest).get("test-convnext")
    assert lock_path_for(entry, hub_env.manifest) == hub_env.manifest.with_name("zoo.lock.json")
    builtin = load_manifest(test_manifest_path).get("convnext-tiny")
    assert lock_path_for(builtin, test_manifest_path) == hub_env.csa_home / "locks" / "convnext-tiny.lock.json"


# ----------------------------------------------------------------------------- offline


def test_offline_with_and_without_cache(hub_env: HubEnv, csa: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from csa_cli.stages.pull.weights import load_model

    server = hub_env.server
    before = len(server.requests)
    empty = csa("pull", "test-convnext", "--offline")
    assert empty.exit_code == 1
    assert "offline" in empty.stderr and "not in the Hugging Face cache" in empty.stderr and "csa pull test-convnext" in empty.stderr
    assert len(server.requests) == before, "offline mode touched the network"

    assert csa("pull", "test-convnext").exit_code == 0
    before = len(server.requests)
    cached = csa("pull", "test-convnext", "--offline")
    assert cached.exit_code == 0, cached.stderr
    assert cached.record["downloaded_bytes"] == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = load_model("test-convnext", "pretrained")
    torch.testing.assert_close(_logits(loaded.module), _logits(hub_env.modules["test-convnext"]), rtol=0, atol=0)
    still_missing = csa("pull", "test-swin")
    assert still_missing.exit_code == 1 and "offline" in still_missing.stderr

    # no lock (e.g. a cache copied from elsewhere): the cache's refs/main names the commit, and it gets pinned
    lock_file = hub_env.manifest.with_name("zoo.lock.json")
    lock_file.unlink()
    repinned = csa("pull", "test-convnext")
    assert repinned.exit_code == 0, repinned.stderr
    assert repinned.record["commit"] == cached.record["commit"] and lock_file.is_file()
    assert len(server.requests) == before, "offline mode touched the network"


# ----------------------------------------------------------------------------- errors


def test_private_repo_401_then_token(hub_env: HubEnv, csa: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    denied = csa("pull", "test-private")
    assert denied.exit_code == 1
    assert denied.stderr.count("Error:") == 1 and "401" in denied.stderr and "HF_TOKEN" in denied.stderr
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    assert "401" in csa("pull", "test-private").stderr
    monkeypatch.setenv("HF_TOKEN", TEST_TOKEN)
    granted = csa("pull", "test-private")
    assert granted.exit_code == 0, granted.stderr


def test_gated_repo_403(hub_env: HubEnv, csa: Any) -> None:
    hub_env.server.repos[hub_env.repo("test-swin")].gated = True
    result = csa("pull", "test-swin")
    assert result.exit_code == 1 and "gated" in result.stderr and "403" in result.stderr


def test_missing_repo_404(hub_env: HubEnv, csa: Any) -> None:
    result = csa("pull", "test-missing")
    assert result.exit_code == 1
    assert "not found" in result.stderr and "404" in result.stderr and "no-such-repo" in result.stderr


def test_unreachable_hub(hub_env: HubEnv, csa: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    result = csa("pull", "test-convnext")
    assert result.exit_code == 1 and "cannot reach the Hub" in result.stderr and str(port) in result.stderr


def test_unknown_model_suggests_names(hub_env: HubEnv, csa: Any) -> None:
    result = csa("pull", "test-convnxt")
    assert result.exit_code == 1 and "unknown model 'test-convnxt'" in result.stderr and "test-convnext" in result.stderr


def test_entry_without_a_source(hub_env: HubEnv, csa: Any) -> None:
    from csa_cli.errors import CsaError
    from csa_cli.stages.pull.weights import load_model

    result = csa("pull", "csa-tiny")
    assert result.exit_code == 1
    assert "no published weights" in result.stderr and "csa import-reference" in result.stderr and "--weights random" in result.stderr
    with pytest.raises(CsaError, match="no published weights"):
        load_model("csa-nano", "pretrained")
    auto = load_model("csa-nano", "auto")
    assert auto.weights == "random" and auto.weights_hash == "random-seed0"


# ----------------------------------------------------------------------------- loading


def test_auto_weights_never_download(hub_env: HubEnv, csa: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from csa_cli.console import Output
    from csa_cli.stages.pull.weights import load_model

    before = len(hub_env.server.requests)
    with Output().listen():  # stages report through events; the command's Output prints them
        first = load_model("test-convnext", "auto")
    assert first.weights == "random" and len(hub_env.server.requests) == before
    assert "RANDOM weights" in capsys.readouterr().err
    again = load_model("test-convnext", "random")
    for (name, a), b in zip(first.module.state_dict().items(), again.module.state_dict().values(), strict=True):
        assert torch.equal(a, b), f"random weights differ between loads at {name} (the seed is not fixed)"

    assert csa("pull", "test-convnext").exit_code == 0
    before = len(hub_env.server.requests)
    cached = load_model("test-convnext", "auto")
    assert cached.weights == "pretrained" and len(hub_env.server.requests) == before


def test_weights_path_strict_keys_and_no_pickles(hub_env: HubEnv, csa: Any, tmp_path: Path) -> None:
    import torch

    from csa_cli.errors import CsaError
    from csa_cli.stages.pull.weights import load_model

    swin = Path(csa("pull", "test-swin").record["path"])
    loaded = load_model("test-swin", str(swin))
    assert loaded.weights == str(swin)
    torch.testing.assert_close(_logits(loaded.module), _logits(hub_env.modules["test-swin"]), rtol=0, atol=0)

    with pytest.raises(CsaError, match="does not fit test-convnext") as err:
        load_model("test-convnext", str(swin))
    assert "missing keys" in err.value.message and "unexpected keys" in err.value.message

    state = hub_env.modules["test-convnext"].state_dict()
    dropped = dict(state)
    dropped.pop("head.fc.weight")
    torch.save(dropped, tmp_path / "partial.pth")
    with pytest.raises(CsaError, match=r"missing keys: head\.fc\.weight"):
        load_model("test-convnext", str(tmp_path / "partial.pth"))

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (print, ("executed",))

    torch.save({"model": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(CsaError, match="weights_only"):
        load_model("test-convnext", str(tmp_path / "evil.pth"))


# ----------------------------------------------------------------------------- concurrency


def test_two_pulls_at_once_in_two_processes_agree(hub_env: HubEnv) -> None:
    hub_env.server.delay_s = 0.3  # keep both downloads in flight together
    try:
        procs = [
            subprocess.Popen([sys.executable, "-m", "csa_cli", "pull", "test-convnext"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    finally:
        hub_env.server.delay_s = 0.0
    for code, _stdout, stderr in results:
        assert code == 0, stderr
    records = [json.loads(stdout.strip().splitlines()[-1]) for _code, stdout, _ in results]
    assert records[0]["commit"] == records[1]["commit"] and records[0]["weights_hash"] == records[1]["weights_hash"]
    assert records[0]["files"] == records[1]["files"] == {k: v["sha256"] for k, v in _lock(hub_env)["models"]["test-convnext"]["files"].items()}


# ----------------------------------------------------------------------------- csa cache


def test_cache_ls_rm_prune(hub_env: HubEnv, csa: Any) -> None:
    from csa_cli.store import build_artifact

    server, repo = hub_env.server, hub_env.repo("test-swin")
    assert csa("pull", "test-swin").exit_code == 0
    files = {name: server.file(repo, name) for name in ("model.safetensors", "config.json")}
    files["config.json"] += b"\n"
    server.commit(repo, files)
    assert csa("pull", "test-swin", "--force").exit_code == 0  # now two snapshots, the newer pinned
    with build_artifact("test-swin", "export", "abc123", {"batch": 1}) as folder:
        (folder / "model.onnx").write_bytes(b"onnx")
    leftover = hub_env.csa_home / "artifacts" / "test-swin" / ".export-dead.tmp"
    leftover.mkdir(parents=True)

    ls = csa("cache", "ls", "test-swin")
    assert ls.exit_code == 0, ls.stderr
    items = json.loads(ls.stdout)["items"]
    weights = [i for i in items if i["what"] == "weights"]
    assert len(weights) == 2 and all(i["where"] == "HF cache" for i in weights) and sum(i["pinned"] for i in weights) == 1
    assert [i["what"] for i in items if i["where"] == "CSA_HOME"] == ["export artifact"]
    assert any(i["what"] == "lock" for i in items)

    dry = csa("cache", "prune", "--dry-run")
    assert {i["what"] for i in json.loads(dry.stdout)["items"]} == {"unpinned weights", "leftover"}
    assert leftover.exists()
    pruned = csa("cache", "prune")
    assert pruned.exit_code == 0 and not leftover.exists()
    after = json.loads(csa("cache", "ls", "test-swin").stdout)["items"]
    assert [i["pinned"] for i in after if i["what"] == "weights"] == [True]

    rm = csa("cache", "rm", "test-swin")
    assert rm.exit_code == 0
    assert {i["what"] for i in json.loads(rm.stdout)["items"]} == {"weights", "export artifact"}
    left = json.loads(csa("cache", "ls", "test-swin").stdout)["items"]
    assert [i["what"] for i in left] == ["lock"], "rm keeps only the lock"
    again = csa("pull", "test-swin", "--locked")
    assert again.exit_code == 0 and again.record["downloaded_bytes"] > 0


def test_pull_record_pipes_into_export_without_network(hub_env: HubEnv, csa: Any) -> None:
    pulled = csa("pull", "test-convnext")
    assert pulled.exit_code == 0
    before = len(hub_env.server.requests)
    exported = csa("export", "--img-size", "64", "--no-verify", input=pulled.stdout)
    assert exported.exit_code == 0, exported.stderr
    rec = exported.record
    assert rec["kind"] == "onnx" and rec["weights"] == "pretrained" and rec["weights_hash"] == pulled.record["weights_hash"]
    assert len(hub_env.server.requests) == before, "export of a pulled model touched the network"


# ----------------------------------------------------------------------------- the real zoo entry, full size


@pytest.mark.slow
def test_full_size_convnext_tiny_zoo_entry(hub_env: HubEnv, csa: Any, tmp_path: Path) -> None:
    """The built-in convnext-tiny entry (repo, files, timm config) end to end, lock under CSA_HOME."""
    import torch
    from timm.models import save_for_hf

    from csa_cli.models import create_model
    from csa_cli.stages.pull.weights import load_model

    with torch.random.fork_rng():
        torch.manual_seed(7)
        source = create_model("convnext-tiny").eval()
    save_for_hf(source, str(tmp_path / "repo"), safe_serialization=True)
    hub_env.server.add_folder("timm/convnext_tiny.fb_in1k", tmp_path / "repo")
    try:
        result = csa("pull", "convnext-tiny")
    finally:
        hub_env.server.remove_repo("timm/convnext_tiny.fb_in1k")  # 114 MB: not kept for the rest of the session
    assert result.exit_code == 0, result.stderr
    assert result.record["repo"] == "timm/convnext_tiny.fb_in1k" and result.record["downloaded_bytes"] > 100_000_000
    assert (hub_env.csa_home / "locks" / "convnext-tiny.lock.json").is_file()
    loaded = load_model("convnext-tiny", "pretrained")
    assert sum(p.numel() for p in loaded.module.parameters()) == pytest.approx(28.6e6, rel=0.01)
    torch.testing.assert_close(_logits(loaded.module), _logits(source), rtol=0, atol=0)


def test_stage_default_weights_are_pretrained_with_a_source_else_random(hub_env: HubEnv) -> None:
    """A stage given no --weights (weights=None) downloads where a source exists, else warns and goes random."""
    from csa_cli.stages.pull.weights import load_model

    server, repo = hub_env.server, hub_env.repo("test-convnext")
    sourced = load_model("test-convnext", None, manifest=hub_env.manifest)
    assert sourced.weights == "pretrained" and sourced.commit
    assert server.file_gets(repo) >= 1, "the default for a sourced entry must pull its weights"
    sourceless = load_model("csa-nano", None, manifest=hub_env.manifest)
    assert sourceless.weights == "random" and sourceless.weights_hash == "random-seed0"
