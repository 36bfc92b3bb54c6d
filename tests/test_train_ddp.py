"""DDP is the same computation: one step at a global batch of 16 on 1 process and on 2 gloo processes (torchrun)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.train import run_csa, write_digits


def test_two_gloo_processes_take_the_same_step_as_one(tmp_path: Path) -> None:
    """BN frozen (eval mode) and drop path, mixup and dropout off; augmentation is seeded per sample, so it is the same in both."""
    import torch
    from safetensors.torch import load_file

    train_dir, _ = write_digits(tmp_path / "data", classes=range(4), size=64, per_class=5)  # 16 training images: one global batch
    common = ("--dataset", str(train_dir), "--recipe", "small", "--epochs", "1", "--max-steps", "1", "--freeze-bn", "--drop-path", "0",
              "--workers", "0", "--seed", "1", "--device", "cpu")  # fmt: skip
    one = run_csa("train", "test-csa-mini", *common, "--batch-size", "16", "--output", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    two = run_csa("train", "test-csa-mini", *common, "--batch-size", "8", "--nproc-per-node", "2", "--output", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr
    assert two.stdout.count('"kind": "train"') == 1  # the launcher prints the record, the workers do not
    a, b = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    from csa_cli.models.factory import create_model
    from csa_cli.stages.train.data import seed_everything

    seed_everything(1)  # what the run did before building the model
    start = create_model("test-csa-mini", 4).state_dict()
    assert not torch.equal(a["head.fc.weight"], start["head.fc.weight"])  # the step was taken
    for key in a:
        if a[key].is_floating_point():
            torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-7, msg=key)


@pytest.mark.gpu
def test_sync_batchnorm_under_ddp_on_cuda() -> None:
    import torch

    from csa_cli.models.factory import create_model
    from csa_cli.stages.train.distributed import World
    from csa_cli.stages.train.recipe import build_recipe
    from csa_cli.stages.train.setup import wrap_for_world

    recipe = build_recipe("imagenet", {}, world_size=2)
    module = wrap_for_world(create_model("test-csa-mini", 10), recipe, World(rank=0, local_rank=0, size=2, device="cuda:0"))
    kinds = {type(m) for m in module.modules()}
    assert torch.nn.SyncBatchNorm in kinds and torch.nn.BatchNorm2d not in kinds
    assert next(module.parameters()).is_cuda
