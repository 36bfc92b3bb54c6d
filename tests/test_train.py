"""`csa train`: real learning on digits, the checkpoint it writes and what reads it (eval, export), fine-tuning, bad input.

One shared run (tests/fixtures/train.py `digits_run`: test-csa-mini on digits 0-4, 64 px, 2 epochs)
serves most tests; fine-tuning and the bad inputs add runs of a step or two.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.cli import CliResult
from tests.fixtures.train import DigitsRun, run_csa, write_digits


def test_training_learns_digits(digits_run: DigitsRun) -> None:
    rec = digits_run.record
    assert rec["kind"] == "train" and rec["model"] == "test-csa-mini" and rec["num_classes"] == 5 and rec["epochs"] == 2
    assert rec["val_top1"] > 60, rec  # percent; chance is 20
    lines = [json.loads(line) for line in (digits_run.output / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    assert set(lines[0]) >= {"train_loss", "val_top1", "val_top5", "lr", "images_per_s", "epoch_s"}
    assert lines[1]["train_loss"] < lines[0]["train_loss"]
    assert lines[-1]["val_top1"] == rec["val_top1"]
    assert (digits_run.output / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "epoch 2/2: loss" in digits_run.stderr


def test_checkpoint_metadata_says_what_was_trained(digits_run: DigitsRun) -> None:
    from csa_cli.models.checkpoint import read_metadata

    meta = read_metadata(digits_run.record["path"])
    assert meta.model == "test-csa-mini" and meta.num_classes == 5 and meta.class_names == ["0", "1", "2", "3", "4"]
    assert meta.preprocessing is not None and meta.preprocessing.input_size == (64, 64) and meta.preprocessing.crop_pct == 1.0
    assert meta.recipe is not None and meta.recipe["name"] == "small" and meta.recipe["lr"] == 3e-3
    assert meta.val_top1 == digits_run.record["val_top1"] and meta.dataset_fingerprint
    assert not (digits_run.output / "model_ema.safetensors").exists()  # small has no EMA
    config = json.loads((digits_run.output / "config.json").read_text())
    assert config["recipe"]["name"] == "small" and config["global_batch"] == 16


def test_eval_with_the_weights_reproduces_the_runs_top1(digits_run: DigitsRun, csa: Callable[..., CliResult]) -> None:
    result = csa("eval", "test-csa-mini", "--weights", digits_run.record["path"], "--dataset", str(digits_run.val_dir), "--workers", "0")
    assert result.exit_code == 0, result.stderr
    images = result.record["images"]
    assert result.record["top1_correct"] == round(digits_run.record["val_top1"] * images / 100)  # the same images right, not just close
    assert result.record["top1"] == pytest.approx(digits_run.record["val_top1"], abs=1e-4)  # eval rounds to 4 decimals


def test_export_takes_the_train_record_from_a_pipe(digits_run: DigitsRun, csa: Callable[..., CliResult]) -> None:
    result = csa("export", "--dynamic-batch", input=json.dumps(digits_run.record) + "\n")
    assert result.exit_code == 0, result.stderr
    assert result.record["kind"] == "onnx" and result.record["img_size"] == [64, 64] and result.record["weights"] == digits_run.record["path"]


def test_fine_tuning_replaces_the_head_and_keeps_the_backbone(digits_run: DigitsRun, tmp_path: Path) -> None:
    """0-4 -> 0-9 from the shared run's checkpoint; --register names the result in a user manifest."""
    import shutil

    from safetensors.torch import load_file

    from csa_cli.stages.pull.weights import load_model
    from tests.conftest import TEST_MANIFEST

    train_dir, _ = write_digits(tmp_path / "data", classes=range(10), size=64, per_class=6)
    out, mine = tmp_path / "ft", tmp_path / "mine.toml"
    shutil.copyfile(TEST_MANIFEST, mine)  # --manifest replaces CSA_MANIFEST: keep the test models in it
    proc = run_csa("train", "test-csa-mini", "--weights", digits_run.record["path"], "--dataset", str(train_dir), "--output", str(out),
                   "--recipe", "small", "--batch-size", "8", "--max-steps", "1", "--workers", "0", "--register", "digits-ft",
                   "--manifest", str(mine))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "5-class head replaced by a new 10-class one" in proc.stderr
    before, after = load_file(digits_run.record["path"]), load_file(out / "model.safetensors")
    assert before["head.fc.weight"].shape[0] == 5 and after["head.fc.weight"].shape[0] == 10
    stem = "stages.0.downsample.conv.weight"
    drift = float((after[stem] - before[stem]).norm() / before[stem].norm())
    assert 0 < drift < 0.2, drift  # one small step from the trained backbone, not a fresh initialisation
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record["registered"] == "digits-ft" and record["manifest"] == str(mine)
    loaded = load_model("digits-ft", "pretrained", manifest=mine)
    assert loaded.entry.num_classes == 10 and loaded.entry.preprocessing.input_size == (64, 64)
    assert all(v.equal(after[k]) for k, v in loaded.module.state_dict().items())


def test_teacher_logits_change_the_gradient() -> None:
    import torch

    from csa_cli.models.factory import create_model
    from csa_cli.stages.train.distributed import World
    from csa_cli.stages.train.loop import Parts, make_criterion, step_loss
    from csa_cli.stages.train.recipe import build_recipe

    torch.manual_seed(0)
    student, teacher = create_model("test-csa-mini", 4), create_model("test-csa-mini", 4).eval()
    images, targets = torch.randn(2, 3, 64, 64), torch.tensor([0, 3])

    def grads(mode: str | None, alpha: float = 0.5) -> torch.Tensor:
        recipe = build_recipe("small", {"distill": mode or "soft", "distill_alpha": alpha}, world_size=1)
        parts = Parts(model=student, raw=student, optimizer=None, scheduler=None, scaler=None, criterion=make_criterion(recipe), recipe=recipe,
                      world=World(0, 0, 1, "cpu"), seed=0, num_classes=4, teacher=teacher if mode else None)  # fmt: skip
        student.zero_grad()
        student.eval()  # BN batch statistics aside, the only difference is the teacher's term
        step_loss(parts, images, targets).backward()
        return torch.cat([p.grad.flatten() for p in student.parameters() if p.grad is not None])

    plain, soft, hard = grads(None), grads("soft"), grads("hard")
    assert not torch.allclose(plain, soft) and not torch.allclose(plain, hard) and not torch.allclose(soft, hard)
    assert torch.allclose(plain, grads("soft", alpha=0.0))  # alpha 0: the teacher has no say


def test_sigterm_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    """SIGTERM mid-epoch (as a cluster scheduler sends), then --resume: the same weights, bit for bit (CPU, fixed seed)."""
    import signal
    import subprocess
    import sys

    from safetensors.torch import load_file

    train_dir, _ = write_digits(tmp_path / "data", classes=range(3), size=64, per_class=7)  # 18 training images: 4 steps of 4
    args = ("--dataset", str(train_dir), "--recipe", "small", "--epochs", "2", "--batch-size", "4", "--workers", "0", "--seed", "3")
    whole = run_csa("train", "test-csa-mini", *args, "--output", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    cut = subprocess.Popen([sys.executable, "-m", "csa_cli", "train", "test-csa-mini", *args, "--output", str(tmp_path / "cut")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert cut.stderr is not None
    seen = []
    for line in cut.stderr:
        seen.append(line)
        if "epoch 1/2: 2/4" in line:
            cut.send_signal(signal.SIGTERM)
            break
    _, rest = cut.communicate(timeout=300)
    assert cut.returncode == 130, "".join(seen) + rest
    assert "SIGTERM" in rest and "--resume" in rest
    state = json.loads((tmp_path / "cut" / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 0 and 2 <= state["batches_done"] < 4, state  # stopped inside the first epoch
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    resumed = run_csa("train", "test-csa-mini", *args, "--output", str(tmp_path / "cut"), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_file(tmp_path / "whole" / "model.safetensors"), load_file(tmp_path / "cut" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(bool((a[k] == b[k]).all()) for k in a), [k for k in a if not (a[k] == b[k]).all()][:5]


@pytest.fixture(scope="module")
def tiny_digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_digits(tmp_path_factory.mktemp("tiny-digits"), classes=range(3), size=64, per_class=5)


def test_one_class_is_refused(tmp_path: Path, csa: Callable[..., CliResult]) -> None:
    train_dir, _ = write_digits(tmp_path, classes=[7], size=64, per_class=5)
    result = csa("train", "test-csa-mini", "--dataset", str(train_dir), "--output", str(tmp_path / "out"), "--recipe", "small")
    assert result.exit_code == 1 and "Error: " in result.stderr and "one class" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_val_classes_must_match(tiny_digits: tuple[Path, Path], tmp_path: Path, csa: Callable[..., CliResult]) -> None:
    _, other_val = write_digits(tmp_path / "other", classes=[0, 1, 8], size=64, per_class=5)
    result = csa(
        "train", "test-csa-mini", "--dataset", str(tiny_digits[0]), "--val-dataset", str(other_val), "--output", str(tmp_path / "o"), "--recipe", "small"
    )
    assert result.exit_code == 1 and "validation classes differ" in result.stderr and "only in val: ['8']" in result.stderr, result.stderr


def test_resume_refuses_another_model_or_recipe(digits_run: DigitsRun, csa: Callable[..., CliResult]) -> None:
    out = str(digits_run.output)
    other_model = csa("train", "csa-nano", "--dataset", str(digits_run.train_dir), "--output", out, "--recipe", "small", "--resume")
    assert other_model.exit_code == 2 and "holds a test-csa-mini run, not csa-nano" in other_model.stderr, other_model.stderr
    other_recipe = csa("train", "test-csa-mini", "--dataset", str(digits_run.train_dir), "--output", out, "--recipe", "imagenet", "--resume")
    assert other_recipe.exit_code == 2 and "another recipe" in other_recipe.stderr, other_recipe.stderr
    fresh = csa("train", "test-csa-mini", "--dataset", str(digits_run.train_dir), "--output", out, "--recipe", "small")
    assert fresh.exit_code == 2 and "not empty" in fresh.stderr and "--resume" in fresh.stderr


def test_more_processes_than_the_node_has_are_refused(tiny_digits: tuple[Path, Path], tmp_path: Path, csa: Callable[..., CliResult]) -> None:
    import os

    import torch

    base = ("train", "test-csa-mini", "--dataset", str(tiny_digits[0]), "--output", str(tmp_path / "o"))
    gpus = torch.cuda.device_count()
    on_gpu = csa(*base, "--device", "cuda", "--nproc-per-node", str(gpus + 1))
    assert on_gpu.exit_code == 4 and ("GPU" in on_gpu.stderr or "CUDA" in on_gpu.stderr), on_gpu.stderr
    on_cpu = csa(*base, "--device", "cpu", "--nproc-per-node", str((os.cpu_count() or 1) + 1))
    assert on_cpu.exit_code == 4 and "cores" in on_cpu.stderr, on_cpu.stderr
    assert not (tmp_path / "o").exists()
