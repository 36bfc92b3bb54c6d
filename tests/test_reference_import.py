"""`csa import-reference` against checkpoints laid out as NVIDIA's reference CSA code saves them.

The input is built here, from the published key list (shared/reference/reference-checkpoint.md)
and the published forward (shared/reference/csa-architecture.md), by `RefCSA`: a module with the
reference's names (`v`, `act_v = Sequential(BN, Swish)`, `q`, `norm_q`, `qk`,
`act_qk = Sequential(BN, Sigmoid)`, `qkv`, `act_qkv = Sequential(BN, Swish)`, `mlp`,
`downsample_layers.i = Sequential(conv, BN)`, `norm`, `head`). Nothing is renamed from our own
weights: the imported model must reproduce RefCSA's logits.
"""

from __future__ import annotations

import argparse
import copy
import pathlib
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from csa_cli.models.checkpoint import load_model_from_checkpoint
from csa_cli.models.csa import CSANet, variant_config
from csa_cli.models.factory import create_model
from csa_cli.models.reference import reference_key_to_ours
from tests.fixtures.models import randomize_bn

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Swish(nn.Module):
    """x * sigmoid(x), no parameters (the reference builds it with trainable=False)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


def bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class RefBlock(nn.Module):
    """One block under the reference's parameter names; forward as csa-architecture.md steps 1-9."""

    def __init__(self, dim: int, heads: int, side: int, layer_scale: float | None = None) -> None:
        super().__init__()
        self.heads, self.side = heads, side
        hn = heads * side * side
        self.v = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.act_v = nn.Sequential(nn.BatchNorm2d(dim), Swish())
        self.q = nn.Conv2d(dim, hn, 1)
        self.norm_q = nn.BatchNorm2d(hn)
        self.qk = nn.Conv2d(hn, dim, 1)
        self.act_qk = nn.Sequential(nn.BatchNorm2d(dim), nn.Sigmoid())
        self.qkv = nn.Conv2d(dim, 3 * dim, 1)
        self.act_qkv = nn.Sequential(nn.BatchNorm2d(3 * dim), Swish())
        self.mlp = nn.Conv2d(3 * dim, dim, 1)
        self.gamma = nn.Parameter(torch.full((1, dim, 1, 1), layer_scale)) if layer_scale is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        s, n = self.side, self.side * self.side
        v = self.act_v(self.v(x))  # 1
        q = self.norm_q(self.q(bilinear(v, (s, s))))  # 2, 3
        k = q.reshape(b, self.heads, n, n).transpose(2, 3).reshape(b, self.heads * n, s, s)  # 4: k[c, p] = q[p, c]
        g = self.act_qk(self.qk(bilinear(q * k, (h, w))))  # 5, 6, 7
        y = self.mlp(self.act_qkv(self.qkv(g * v)))  # 8
        return x + (y if self.gamma is None else self.gamma * y)  # 9


class RefCSA(nn.Module):
    """The reference network's layout: downsample_layers, stages, norm, head (ConvNeXt style)."""

    def __init__(self, depths: tuple[int, ...], dims: tuple[int, ...], heads: tuple[int, ...], sides: tuple[int, ...], classes: int, **block: Any) -> None:
        super().__init__()
        stem = nn.Sequential(nn.Conv2d(3, dims[0], 7, stride=4, padding=3), nn.BatchNorm2d(dims[0]))
        downs = [nn.Sequential(nn.Conv2d(dims[i - 1], dims[i], 3, stride=2, padding=0), nn.BatchNorm2d(dims[i])) for i in range(1, len(dims))]
        self.downsample_layers = nn.ModuleList([stem, *downs])
        self.stages = nn.ModuleList(nn.Sequential(*[RefBlock(dims[i], heads[i], sides[i], **block) for _ in range(depths[i])]) for i in range(len(dims)))
        self.norm = nn.BatchNorm2d(dims[-1])
        self.head = nn.Conv2d(dims[-1], classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for down, stage in zip(self.downsample_layers, self.stages, strict=True):
            x = stage(down(x))
        x = F.avg_pool2d(x, kernel_size=x.shape[-2:])  # the whole final map
        return torch.flatten(self.head(self.norm(x)), 1)


def ref_csa(variant: str, classes: int = 1000, **overrides: Any) -> RefCSA:
    config = variant_config(variant)
    depths = overrides.pop("depths", config.depths)
    return RefCSA(depths, config.dims, config.heads, config.reduced, classes, **overrides)


def _training_run_file(path: Path, model: RefCSA, ema: RefCSA) -> Path:
    """What ConvNeXt's main.py saves as checkpoint-best.pth: model, model_ema, optimizer, epoch, scaler, args."""
    recipe = argparse.ArgumentParser()
    for flag, kind in (("--model", str), ("--drop_path", float), ("--lr", float), ("--batch_size", int), ("--epochs", int), ("--model_ema", str)):
        recipe.add_argument(flag, type=kind)
    recipe.add_argument("--input_size", type=int, default=224)
    recipe.add_argument("--data_path", type=str, default="/data/imagenet/train")
    args = recipe.parse_args(["--model", "convselfattn", "--drop_path", "0.1", "--lr", "4e-3", "--batch_size", "128", "--epochs", "300", "--model_ema", "true"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    for p in model.parameters():  # one step, so the optimizer holds state tensors as a real run's does
        p.grad = torch.full_like(p, 1e-3)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scaler = torch.amp.GradScaler("cpu")
    torch.save(
        {
            "model": model.state_dict(),
            "model_ema": ema.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": 299,
            "scaler": scaler.state_dict(),
            "args": args,
        },
        path,
    )
    return path


def _pair(variant: str, classes: int = 1000, **overrides: Any) -> tuple[RefCSA, RefCSA]:
    """A reference-layout model and an EMA copy of it that differs in every tensor."""
    torch.manual_seed(0)
    model = ref_csa(variant, classes, **overrides)
    randomize_bn(model, seed=1)
    ema = copy.deepcopy(model)
    with torch.no_grad():
        for p in ema.parameters():
            p.add_(0.05 * torch.randn_like(p))
    randomize_bn(ema, seed=2)
    return model.eval(), ema.eval()


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


# --------------------------------------------------------------------------- the published list


def test_reference_layout_of_csa_tiny_is_the_published_one() -> None:
    """515 tensors with the shapes of the published table, and each maps onto one of ours with the same shape."""
    with torch.device("meta"):
        ref = ref_csa("csa_tiny").state_dict()
        ours = create_model("csa-tiny").state_dict()
    assert len(ref) == 515
    shapes = {k: tuple(v.shape) for k, v in ref.items()}
    assert shapes["downsample_layers.0.0.weight"] == (96, 3, 7, 7) and shapes["downsample_layers.1.0.weight"] == (192, 96, 3, 3)
    assert shapes["stages.0.0.v.weight"] == (96, 1, 5, 5) and shapes["stages.0.0.act_v.0.running_var"] == (96,)
    assert shapes["stages.0.0.q.weight"] == (196, 96, 1, 1) and shapes["stages.0.0.norm_q.weight"] == (196,)
    assert shapes["stages.0.0.qk.weight"] == (96, 196, 1, 1) and shapes["stages.0.0.act_qk.0.bias"] == (96,)
    assert shapes["stages.0.0.qkv.weight"] == (288, 96, 1, 1) and shapes["stages.0.0.act_qkv.0.weight"] == (288,)
    assert shapes["stages.0.0.mlp.weight"] == (96, 288, 1, 1)
    assert shapes["norm.running_mean"] == (768,) and shapes["head.weight"] == (1000, 768, 1, 1)
    assert [shapes[f"stages.{i}.0.q.weight"][0] for i in range(4)] == [196, 392, 784, 392]
    assert not [k for k in ref if re.search(r"\.act_\w+\.1\.", k)]  # Swish / Sigmoid hold nothing
    mapped = {reference_key_to_ours(k): tuple(v.shape) for k, v in ref.items()}
    assert mapped == {k: tuple(v.shape) for k, v in ours.items()}


# --------------------------------------------------------------------------- csa import-reference


@pytest.fixture(scope="module")
def nano_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RefCSA, RefCSA]:
    model, ema = _pair("csa_nano")
    path = _training_run_file(tmp_path_factory.mktemp("reference") / "checkpoint-best.pth", model, ema)
    return path, model, ema


@pytest.mark.parametrize("use_ema", [False, True])
def test_import_gives_the_reference_logits(csa, nano_run: tuple[Path, RefCSA, RefCSA], tmp_path: Path, use_ema: bool) -> None:
    path, model, ema = nano_run
    out = tmp_path / "nano.safetensors"
    result = csa("import-reference", str(path), "--model", "csa-nano", "--output", str(out), *(["--ema"] if use_ema else []))
    assert result.exit_code == 0, result.stderr
    assert result.record["ema"] is use_ema and result.record["num_classes"] == 1000
    name, imported = load_model_from_checkpoint(out)
    assert name == "csa-nano" and isinstance(imported, CSANet)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got, want, other = imported.eval()(x), (ema if use_ema else model)(x), (model if use_ema else ema)(x)
    assert rel_err(got, want) < 1e-4
    assert rel_err(got, other) > 1e-2  # the other set of weights really is another model


def test_layer_scale_gamma_imports_from_its_reference_shape(csa, tmp_path: Path) -> None:
    """The reference keeps gamma as (1, C, 1, 1); ours is (C,)."""
    manifest = tmp_path / "zoo.toml"
    manifest.write_text(
        'schema = 1\n[models.csa-ls]\nfamily = "csa"\nlicense = "Apache-2.0"\nnum_classes = 10\n'
        '[models.csa-ls.architecture]\nbuilder = "csa"\nname = "csa_nano"\nconfig = { layer_scale = 0.5, depths = [1, 1, 1, 1] }\n'
        '[models.csa-ls.preprocessing]\ninput_size = [64, 64]\ncrop_pct = 1.0\ninterpolation = "bilinear"\n'
        "mean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n"
    )
    model, ema = _pair("csa_nano", 10, depths=(1, 1, 1, 1), layer_scale=0.5)
    path = _training_run_file(tmp_path / "checkpoint-0.pth", model, ema)
    out = tmp_path / "ls.safetensors"
    result = csa("import-reference", str(path), "--model", "csa-ls", "--output", str(out), "--manifest", str(manifest))
    assert result.exit_code == 0, result.stderr
    _, imported = load_model_from_checkpoint(out)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        assert rel_err(imported.eval()(x), model(x)) < 1e-4


def test_only_argparse_namespace_is_allowed(csa, nano_run: tuple[Path, RefCSA, RefCSA], tmp_path: Path) -> None:
    """args may hold a Namespace, not any other class: a pathlib.Path inside it is refused, and nothing is written."""
    _, model, ema = nano_run
    bad = tmp_path / "checkpoint-path-args.pth"
    torch.save({"model": model.state_dict(), "model_ema": ema.state_dict(), "args": argparse.Namespace(output_dir=pathlib.Path("/runs/csa"))}, bad)
    out = tmp_path / "x.safetensors"
    result = csa("import-reference", str(bad), "--model", "csa-nano", "--output", str(out))
    assert result.exit_code == 1 and not out.exists()
    assert "weights-only" in result.stderr and "pickled pathlib.PosixPath" in result.stderr and "argparse.Namespace" in result.stderr
    assert "weights_only=False" not in result.stderr  # torch's own advice is not passed on


def test_ema_asked_of_a_file_without_it(csa, nano_run: tuple[Path, RefCSA, RefCSA], tmp_path: Path) -> None:
    _, model, _ = nano_run
    plain = tmp_path / "checkpoint-noema.pth"
    torch.save({"model": model.state_dict(), "epoch": 1, "args": argparse.Namespace(model="convselfattn")}, plain)
    result = csa("import-reference", str(plain), "--model", "csa-nano", "--ema", "--output", str(tmp_path / "y.safetensors"))
    assert result.exit_code == 1 and "no 'model_ema' entry" in result.stderr and "drop --ema" in result.stderr
