"""`csa pull`, the lock and weight loading, through the real huggingface_hub client and a loopback Hub."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.hub import TEST_TOKEN, HubEnv


def _logits(module: Any, seed: int = 0) -> Any:
    import torch

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 224, 224, generator=gen)
    with torch.no_grad():
        return module(x)


def _lock(env: HubEnv) -> dict[str, Any]:
    return json.loads(env.manifest.with_name("zoo.lock.json").read_text())


# ----------------------------------------------------------------------------- pull + load


@pytest.mark.parametrize("model", ["test-convnext", "test-swin", "test-cvt"])
def test_pull_then_load_gives_the_saved_models_logits(hub_env: HubEnv, csa: Any, model: str) -> None:
    import torch

    from csa_cli.core.hub import sha256_file
    from csa_cli.core.weights import load_model

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
