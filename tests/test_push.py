"""`csa push` through the real huggingface_hub client to the loopback Hub, then `csa pull` and timm read it back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.hub import TEST_TOKEN, HubEnv

CLASSES = ["zero", "one", "two"]
PRE = {"input_size": (64, 64), "crop_pct": 1.0, "interpolation": "bilinear", "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
RESULTS = {"val_top1": 97.25, "val_top5": 100.0, "val_top1_ema": 98.5}  # percent, as `csa train` records them


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A csa-nano checkpoint for 3 classes as `csa train` leaves it: raw and EMA weights, the run's metadata."""
    import torch

    from csa_cli.manifest import Preprocessing
    from csa_cli.models import create_model
    from csa_cli.models.checkpoint import save_checkpoint

    folder = tmp_path_factory.mktemp("run")
    recipe = {"name": "small", "lr": 0.002, "epochs": 5}
    meta = {"class_names": CLASSES, "preprocessing": Preprocessing(**PRE), "recipe": recipe, "dataset_fingerprint": "f" * 64}
    with torch.random.fork_rng():
        torch.manual_seed(7)
        save_checkpoint(create_model("csa-nano", num_classes=3).eval(), folder / "model.safetensors", "csa-nano", **meta, **RESULTS)
        save_checkpoint(create_model("csa-nano", num_classes=3).eval(), folder / "model_ema.safetensors", "csa-nano", **meta, **RESULTS)
    return folder / "model.safetensors"


@pytest.fixture
def push_env(hub_env: HubEnv, monkeypatch: pytest.MonkeyPatch) -> HubEnv:
    """hub_env with a write token the server accepts, in HF_TOKEN; uploads inline (no Xet)."""
    hub_env.server.write_tokens.add(TEST_TOKEN)
    monkeypatch.setenv("HF_TOKEN", TEST_TOKEN)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    return hub_env


def _push(csa: Any, env: HubEnv, checkpoint: Path, name: str = "csa-nano-digits", *extra: str) -> dict[str, Any]:
    result = csa("push", str(checkpoint), "--repo", f"{env.namespace}/{name}", "--dataset-name", "digits", *extra)
    assert result.exit_code == 0, result.stderr
    return result.record


def _logits(module: Any) -> Any:
    import torch

    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return module.eval()(x)


def test_push_then_pull_of_the_registered_entry_gives_the_same_tensors(
    push_env: HubEnv, csa: Any, checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import load_file

    record = _push(csa, push_env, checkpoint, "csa-nano-digits", "--register", "csa-nano-digits")
    repo = f"{push_env.namespace}/csa-nano-digits"
    assert record["kind"] == "push" and record["repo"] == repo and len(record["commit"]) == 40
    served = push_env.server.repos[repo]
    assert served.refs["main"] == record["commit"]
    assert set(served.commits[record["commit"]]) == {".gitattributes", "model.safetensors", "model_ema.safetensors", "config.json", "README.md"}
    assert push_env.server.file(repo, "model.safetensors") == checkpoint.read_bytes()  # byte for byte, csa metadata included
    assert record["entry"]["source"] == {"repo": repo, "revision": record["commit"], "files": ["model.safetensors"], "format": "csa"}
    assert record["registered"] == str(push_env.manifest)

    monkeypatch.setenv("HF_HOME", str(tmp_path / "clean-hf"))  # a clean cache: everything comes from the Hub
    pulled = csa("pull", "csa-nano-digits")
    assert pulled.exit_code == 0, pulled.stderr
    assert pulled.record["commit"] == record["commit"] and Path(pulled.record["path"]).is_relative_to(tmp_path / "clean-hf")
    got, want = load_file(pulled.record["path"]), load_file(str(checkpoint))
    assert got.keys() == want.keys() and all(got[k].equal(want[k]) for k in want)


def test_timm_loads_the_pushed_repo_with_csas_logits(push_env: HubEnv, csa: Any, checkpoint: Path) -> None:
    import timm
    import torch

    import csa_cli.models.csa  # noqa: F401  (registers the CSA architectures with timm, as the card says)
    from csa_cli.stages.pull.weights import load_model

    record = _push(csa, push_env, checkpoint, "csa-nano-timm", "--register", "csa-nano-timm")
    ours = load_model("csa-nano-timm", "pretrained").module
    theirs = timm.create_model(f"hf-hub:{record['repo']}", pretrained=True)
    assert theirs.num_classes == 3 and theirs.pretrained_cfg["label_names"] == CLASSES
    data = timm.data.resolve_model_data_config(theirs)  # what timm's validate.py builds its transform from
    assert (data["input_size"], data["crop_pct"], data["interpolation"]) == ((3, 64, 64), 1.0, "bilinear")
    torch.testing.assert_close(_logits(theirs), _logits(ours), rtol=0, atol=0)


def test_the_model_card_has_the_metrics_table_and_model_index(push_env: HubEnv, csa: Any, checkpoint: Path) -> None:
    import yaml
    from huggingface_hub import ModelCard

    record = _push(csa, push_env, checkpoint, "csa-nano-card", "--private", "--revision", "trial")
    served = push_env.server.repos[record["repo"]]
    assert served.token == TEST_TOKEN and record["private"]  # private: only the pushing token reads it
    assert set(served.commits[served.refs["main"]]) == {".gitattributes"} and served.refs["trial"] == record["commit"]
    readme = push_env.server.file(record["repo"], "README.md", revision="trial").decode()
    front = yaml.safe_load(readme.split("---")[1])
    assert front["library_name"] == "timm" and front["license"] == "apache-2.0" and front["datasets"] == ["digits"]
    assert {"image-classification", "timm", "csa"} <= set(front["tags"])
    (index,) = front["model-index"]
    (result,) = index["results"]  # one task on one dataset: its three metrics together
    assert result["task"]["type"] == "image-classification" and result["dataset"]["split"] == "validation"
    values = {(m["name"], m["value"]) for m in result["metrics"]}
    assert values == {("top-1 accuracy (raw weights)", 97.25), ("top-5 accuracy (raw weights)", 100.0), ("top-1 accuracy (EMA weights)", 98.5)}
    parsed = ModelCard(readme).data.eval_results  # the Hub's own parser reads the same results
    assert sorted(r.metric_value for r in parsed) == [97.25, 98.5, 100.0]
    assert "| top-1 accuracy | raw | 97.25 % |" in readme and "| top-1 accuracy | EMA | 98.50 % |" in readme
    for said in ("NVIDIA's CSA", "How they were measured", "## Intended use", "## Dataset terms", "center crop | 64 x 64", "import csa_cli.models.csa"):
        assert said in readme, said
    config = json.loads(push_env.server.file(record["repo"], "config.json", revision="trial"))
    assert config["architecture"] == "csa_nano" and config["num_classes"] == 3 and config["label_names"] == CLASSES
    assert config["pretrained_cfg"]["interpolation"] == "bilinear" and config["pretrained_cfg"]["mean"] == [0.5, 0.5, 0.5]


# ----------------------------------------------------------------------------- bad input


def test_push_without_a_token_says_how_to_log_in(hub_env: HubEnv, csa: Any, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    posts = len(hub_env.server.posts)
    result = csa("push", str(checkpoint), "--repo", f"{hub_env.namespace}/no-token")
    assert result.exit_code == 1
    assert "Error: pushing to the Hub needs a token" in result.stderr and "hf auth login" in result.stderr and "HF_TOKEN" in result.stderr
    assert len(hub_env.server.posts) == posts  # nothing sent: the missing token is found before any request


def test_a_token_the_hub_refuses_is_one_error_line(push_env: HubEnv, csa: Any, checkpoint: Path) -> None:
    result = csa("push", str(checkpoint), "--repo", f"{push_env.namespace}/bad-token", "--token", "hf_wrong")
    assert result.exit_code == 1 and "Error: the Hub refused the token" in result.stderr and "Traceback" not in result.stderr


def test_a_repo_with_other_files_is_refused_unless_forced(push_env: HubEnv, csa: Any, checkpoint: Path) -> None:
    repo = f"{push_env.namespace}/someone-elses"
    before = push_env.server.commit(repo, {"weights.pt": b"not ours", "README.md": b"# theirs\n"})
    result = csa("push", str(checkpoint), "--repo", repo)
    assert result.exit_code == 1 and "already holds files csa push did not write (weights.pt)" in result.stderr
    assert push_env.server.repos[repo].refs["main"] == before  # nothing committed
    forced = csa("push", str(checkpoint), "--repo", repo, "--force")
    assert forced.exit_code == 0, forced.stderr
    assert {"weights.pt", "model.safetensors"} <= set(push_env.server.repos[repo].commits[forced.record["commit"]])


def test_a_missing_checkpoint_or_a_wrong_record_is_refused(push_env: HubEnv, csa: Any, tmp_path: Path) -> None:
    missing = csa("push", str(tmp_path / "nowhere" / "model.safetensors"), "--repo", f"{push_env.namespace}/x")
    assert missing.exit_code == 1 and "Error: checkpoint not found" in missing.stderr
    wrong = csa("push", "--repo", f"{push_env.namespace}/x", input=json.dumps({"schema": 1, "kind": "onnx", "path": "m.onnx"}) + "\n")
    assert wrong.exit_code == 2 and "takes a train or checkpoint record" in wrong.stderr
    assert f"{push_env.namespace}/x" not in push_env.server.repos


def test_a_local_entry_names_the_checkpoint_like_a_zoo_model(checkpoint: Path, tmp_path: Path) -> None:
    """What `csa train --register NAME` writes: pretrained/auto of that name load the checkpoint, with its classes and preprocessing."""
    from safetensors.torch import load_file

    from csa_cli.manifest import load_manifest, register_entry
    from csa_cli.stages.pull.weights import load_model, weights_identity
    from csa_cli.stages.push.entry import local_entry

    manifest = tmp_path / "mine.toml"
    register_entry("digits-here", local_entry(checkpoint, dataset="digits"), manifest)
    entry = load_manifest(manifest).get("digits-here")
    assert entry.checkpoint == str(checkpoint.resolve()) and entry.num_classes == 3 and entry.preprocessing.input_size == (64, 64)
    assert [r.value for r in entry.reported] == [97.25, 100.0, 98.5]
    for weights in ("pretrained", "auto", None):
        loaded = load_model("digits-here", weights, manifest=manifest)
        assert loaded.weights == str(checkpoint.resolve()) and loaded.entry.num_classes == 3
    state = load_file(str(checkpoint))
    assert all(v.equal(state[k]) for k, v in loaded.module.state_dict().items())
    ident = weights_identity("digits-here", "auto", manifest=manifest)
    assert ident is not None and ident.weights == str(checkpoint.resolve())


# ----------------------------------------------------------------------------- the README's walkthrough

# Appended to the walkthrough's train command so that it runs in seconds (as the help examples' train).
SMALL_TRAIN = "--epochs 1 --max-steps 1 --batch-size 4 --img-size 64 --workers 0"


def test_walkthrough_train_push_then_pull(push_env: HubEnv, csa: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The walkthrough's train | push line and its pull line, as written, on digits 0-2 and the loopback Hub."""
    import shlex

    from tests.fixtures.train import write_digits
    from tests.test_pipeline import walkthrough_line

    train_dir, val_dir = write_digits(tmp_path / "digits", classes=range(3), size=64, per_class=10)
    monkeypatch.chdir(tmp_path)
    subs = {"TRAIN": str(train_dir), "VAL": str(val_dir), "OWNER/NAME": f"{push_env.namespace}/my-csa"}
    stdin = None
    line = walkthrough_line("csa train")
    for segment in line.split(" | "):
        for old, new in subs.items():
            segment = segment.replace(old, new)
        words = shlex.split(segment)[1:] + (SMALL_TRAIN.split() if segment.startswith("csa train") else [])
        result = csa(*words, input=stdin)
        assert result.exit_code == 0, f"{segment}:\n{result.stderr}"
        stdin = result.stdout
    pushed = result.record
    assert pushed["kind"] == "push" and pushed["registered"] == str(push_env.manifest)
    assert push_env.server.file(pushed["repo"], "model.safetensors") == (tmp_path / "run" / "model.safetensors").read_bytes()

    monkeypatch.setenv("HF_HOME", str(tmp_path / "clean-hf"))
    pull = walkthrough_line("csa pull my-csa").split()[1:]
    pulled = csa(*pull)
    assert pulled.exit_code == 0, pulled.stderr
    assert pulled.record["commit"] == pushed["commit"] and pulled.record["model"] == "my-csa"
