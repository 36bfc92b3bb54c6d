"""The CSA architecture, the baseline builders, reference weights and the checkpoint format."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from csa_cli.errors import CsaError, UsageError
from csa_cli.models import build_from_entry, create_model, inference_form
from csa_cli.models.checkpoint import load_checkpoint, load_model_from_checkpoint, read_metadata, save_checkpoint
from csa_cli.models.csa import CSABlock, CSAConfig, CSANet, build_csa, exact_scale, feature_sizes, resize_to, rotate, variant_config
from csa_cli.models.reference import from_reference_state_dict, our_key_to_reference, to_reference_state_dict
from tests.fixtures.models import randomize_bn

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- sizes


def test_csa_tiny_has_the_reference_parameter_count(csa_tiny_model: CSANet) -> None:
    assert abs(n_params(csa_tiny_model) / 27.64e6 - 1) < 1e-3


@pytest.mark.parametrize(("name", "low", "high"), [("csa-nano", 3e6, 5e6), ("csa-small", 45e6, 55e6)])
def test_variant_sizes(name: str, low: float, high: float) -> None:
    with torch.device("meta"):  # parameter shapes only: no memory, no init time
        model = create_model(name)
    assert low <= n_params(model) <= high


def test_num_classes_changes_only_the_head() -> None:
    with torch.device("meta"):
        a, b = create_model("csa_nano", num_classes=1000), create_model("csa_nano", num_classes=10)
    dim = variant_config("csa_nano").dims[-1]
    assert n_params(a) - n_params(b) == 990 * (dim + 1)


# --------------------------------------------------------------------------- the block


def test_rotate_transposes_channels_and_positions() -> None:
    heads, s = 2, 3
    n = s * s
    q = torch.randn(2, heads * n, s, s)
    k = rotate(q, heads, s)
    qm = q.reshape(2, heads, n, n)  # [b, head, channel, position]
    km = k.reshape(2, heads, n, n)
    for c, p in [(0, 0), (1, 5), (8, 2)]:
        assert torch.equal(km[:, :, c, p], qm[:, :, p, c])


def _grad_at_far_corner(block: CSABlock) -> torch.Tensor:
    x = torch.randn(1, block.dim, 56, 56, requires_grad=True)
    block(x)[..., 0, 0].sum().backward()
    assert x.grad is not None
    return x.grad[..., 55, 55]


def test_one_block_has_a_global_receptive_field() -> None:
    torch.manual_seed(0)
    block = CSABlock(16, heads=1, reduced=14).eval()
    randomize_bn(block)
    assert _grad_at_far_corner(block).abs().max() > 0
    block.use_rotate = False  # without the rotate-multiply the block only sees a neighbourhood
    assert _grad_at_far_corner(block).abs().max() == 0


# --------------------------------------------------------------------------- resize


def test_naive_scale_floors_below_the_target_and_exact_scale_does_not() -> None:
    # the reference defect: the float32 scale 14/27 sits just below 14/27, so 27 * scale (exact) floors to 13
    assert math.floor(27 * float(np.float32(14 / 27))) == 13
    for n_in in range(1, 400):
        for n_out in (1, 6, 7, 13, 14, 27, 56, 96, n_in, max(1, n_in // 4), 2 * n_in):
            scale = exact_scale(n_in, n_out)
            assert math.floor(float(np.float32(n_in) * np.float32(scale))) == n_out
            assert math.floor(n_in * scale) == n_out
            assert abs(scale * n_in / n_out - 1) < 1e-5  # a nudge, not a different resize


@pytest.mark.parametrize(("size_in", "size_out"), [((27, 27), (14, 14)), ((14, 14), (27, 27)), ((13, 23), (14, 14)), ((6, 11), (7, 7))])
def test_resize_to_gives_the_exact_size(size_in: tuple[int, int], size_out: tuple[int, int]) -> None:
    x = torch.randn(1, 2, *size_in)
    y = resize_to(x, size_out)
    assert tuple(y.shape[-2:]) == size_out
    ref = torch.nn.functional.interpolate(x, size=size_out, mode="bilinear", align_corners=False)
    assert rel_err(y, ref) < 1e-4  # same sampling as a size-given resize, up to the nudge


# --------------------------------------------------------------------------- the network


@pytest.mark.parametrize("img_size", [(224, 224), (256, 256), (320, 320), (224, 384), (64, 64)])
def test_input_sizes(csa_nano_model: CSANet, img_size: tuple[int, int]) -> None:
    with torch.no_grad():
        assert csa_nano_model(torch.randn(1, 3, *img_size)).shape == (1, 1000)
        feats = csa_nano_model.forward_stages(torch.randn(1, 3, *img_size))
    assert [tuple(f.shape[-2:]) for f in feats] == feature_sizes(csa_nano_model.config, img_size)


def test_feature_sizes_at_224() -> None:
    assert feature_sizes(variant_config("csa_tiny"), (224, 224)) == [(56, 56), (27, 27), (13, 13), (6, 6)]


@pytest.mark.parametrize("out_indices", [(0, 1, 2, 3), (1, 3), (2,)])
def test_features_only(out_indices: tuple[int, ...]) -> None:
    model = create_model("csa-nano", features_only=True, out_indices=out_indices).eval()
    assert model.head is None
    cfg = variant_config("csa_nano")
    sizes = feature_sizes(cfg, (224, 320))
    with torch.no_grad():
        feats = model(torch.randn(2, 3, 224, 320))
    assert isinstance(feats, list)
    assert [tuple(f.shape) for f in feats] == [(2, cfg.dims[i], *sizes[i]) for i in out_indices]
    assert [f["num_chs"] for f in model.feature_info] == [cfg.dims[i] for i in out_indices]


def test_out_indices_out_of_range() -> None:
    with pytest.raises(UsageError, match=r"out_indices \[4\] out of range for 4 stages") as bad:
        create_model("csa-nano", features_only=True, out_indices=(0, 4))
    assert bad.value.hint == "use indices in 0..3"


def test_csa_tiny_forward_backward_batch_2(csa_tiny_model: CSANet) -> None:
    model = csa_tiny_model.train()
    logits = model(torch.randn(2, 3, 224, 224))
    assert logits.shape == (2, 1000)
    loss = nn.functional.cross_entropy(logits, torch.tensor([3, 7]))
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0
    model.zero_grad(set_to_none=True)


def test_batch_1_keeps_its_axis(csa_tiny_model: CSANet) -> None:
    model = csa_tiny_model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


def test_a_few_optimizer_steps_lower_the_loss() -> None:
    torch.manual_seed(0)
    model = create_model("csa-nano", num_classes=4).train()
    x, y = torch.randn(8, 3, 64, 64), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[2] < losses[1] < losses[0], losses


# --------------------------------------------------------------------------- inference form


@pytest.mark.parametrize("img_size", [(224, 224), (224, 384), (320, 320)])
def test_inference_form_equals_training_form(csa_nano_model: CSANet, img_size: tuple[int, int]) -> None:
    fused = inference_form(csa_nano_model)
    assert fused is not csa_nano_model and fused.is_inference_form
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(2, 3, *img_size)
    with torch.no_grad():
        assert rel_err(fused(x), csa_nano_model(x)) < 1e-5


def test_inference_form_of_csa_tiny(csa_tiny_model: CSANet) -> None:
    model = copy.deepcopy(csa_tiny_model).eval()  # the session fixture stays as built
    randomize_bn(model, seed=1)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert rel_err(inference_form(model)(x), model(x)) < 1e-5


def test_inference_form_moves_the_gate_before_the_upsize_only_where_cheaper(csa_nano_model: CSANet) -> None:
    fused = inference_form(csa_nano_model)
    seen: list[tuple[int, int, int]] = []  # (stage channels, channels resized to H x W, map side)

    def hook(block: CSABlock):
        def record(_m: nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
            (x,) = inputs
            s2, hw = block.reduced**2, x.shape[-2] * x.shape[-1]
            seen.append((block.dim, block.dim if s2 < hw else block.heads * s2, x.shape[-1]))

        return record

    handles = [b.register_forward_hook(hook(b)) for b in fused.stages[0].blocks] + [b.register_forward_hook(hook(b)) for b in fused.stages[3].blocks]
    with torch.no_grad():
        fused(torch.randn(1, 3, 224, 224))
    for h in handles:
        h.remove()
    # stage 0 (56x56 > 14x14): C channels resized; stage 3 (6x6 < 7x7): hN channels, as in training
    assert {(d, c) for d, c, _ in seen} == {(40, 40), (320, 4 * 49)}


def test_inference_form_leaves_the_input_alone() -> None:
    model = create_model("csa-nano", num_classes=10).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inference_form(model)
    assert model.training and not model.is_inference_form
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_inference_form_of_a_baseline_is_an_eval_copy() -> None:
    model = create_model("test-convnext", num_classes=10).train()
    form = inference_form(model)
    assert form is not model and not form.training and model.training


# --------------------------------------------------------------------------- create_model


def test_create_model_builds_every_family() -> None:
    import timm.models

    x = torch.randn(1, 3, 224, 224)
    convnext = create_model("test-convnext", num_classes=7)
    assert isinstance(convnext, timm.models.ConvNeXt)
    cvt = create_model("test-cvt", num_classes=7).eval()
    with torch.no_grad():
        out = cvt(x)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 7)
    assert isinstance(create_model("csa_tiny", num_classes=3), CSANet)


def test_build_from_entry_uses_the_entry_config() -> None:
    from csa_cli.manifest import get_entry

    swin = build_from_entry(get_entry("test-swin"), num_classes=5)
    assert swin.embed_dim == 32 and swin.num_classes == 5


def test_baseline_features_only() -> None:
    cvt = create_model("test-cvt", features_only=True, out_indices=(0, 2)).eval()
    with torch.no_grad():
        feats = cvt(torch.randn(1, 3, 224, 224))
    assert [f.shape[1] for f in feats] == [16, 64]


@pytest.mark.parametrize("name", ["csa-nano", "test-cvt"])
def test_reset_classifier(name: str) -> None:
    model = create_model(name)
    model.reset_classifier(5)
    assert model.num_classes == 5
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 5)


def test_unknown_names_suggest() -> None:
    with pytest.raises(CsaError, match="unknown model 'csa-tiyn'") as info:
        create_model("csa-tiyn")
    assert "csa-tiny" in (info.value.hint or "")


def test_unknown_csa_option() -> None:
    with pytest.raises(UsageError, match="depthz"):
        create_model("csa_nano", depthz=(1, 1, 1, 1))


def test_config_overrides_and_round_trip() -> None:
    model = create_model("csa_nano", num_classes=10, layer_scale=1e-6, depths=[1, 1, 1, 1])
    assert model.config.depths == (1, 1, 1, 1) and len(model.blocks()) == 4
    assert CSAConfig.from_dict(model.config.to_dict()) == model.config
    # every per-stage override becomes a tuple, whatever sequence it came as: configs compare equal
    listed = build_csa("csa-nano", depths=[1, 1, 1, 1], dims=[8, 8, 8, 8], heads=[1, 1, 1, 1], reduced=[1, 2, 3, 4]).config
    assert (listed.depths, listed.dims, listed.heads, listed.reduced) == ((1, 1, 1, 1), (8, 8, 8, 8), (1, 1, 1, 1), (1, 2, 3, 4))
    assert listed == CSAConfig.from_dict(listed.to_dict())


def test_layer_scale_folds_exactly() -> None:
    model = create_model("csa_nano", num_classes=10, layer_scale=0.5, depths=[1, 1, 1, 1]).eval()
    randomize_bn(model)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert rel_err(inference_form(model)(x), model(x)) < 1e-5


# --------------------------------------------------------------------------- reference weights


def test_reference_state_dict_round_trip(csa_nano_model: CSANet) -> None:
    ref = to_reference_state_dict(csa_nano_model)
    assert "downsample_layers.0.0.weight" in ref and "stages.1.0.norm_q.running_var" in ref and "head.weight" in ref
    assert not any(k.startswith("stages.0.blocks") for k in ref)
    ddp = {f"module.{k}": v for k, v in ref.items()}  # a DDP-saved dict loads too
    loaded = from_reference_state_dict("csa-nano", ddp).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(loaded(x), csa_nano_model(x))


def test_reference_linear_head_and_class_count() -> None:
    model = create_model("csa_nano", num_classes=10).eval()
    ref = to_reference_state_dict(model)
    ref["head.weight"] = ref["head.weight"][:, :, 0, 0]  # an nn.Linear head
    loaded = from_reference_state_dict("csa_nano", ref).eval()
    assert loaded.num_classes == 10
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_reference_errors_name_the_keys(csa_nano_model: CSANet) -> None:
    ref = to_reference_state_dict(csa_nano_model)
    del ref["stages.2.1.qk.weight"]
    ref["stages.0.0.attn.weight"] = torch.zeros(1)
    with pytest.raises(CsaError) as info:
        from_reference_state_dict("csa-nano", ref)
    assert "missing 1 key(s): stages.2.1.qk.weight" in info.value.message
    assert "unexpected 1 key(s): stages.0.0.attn.weight" in info.value.message


def test_reference_shape_mismatch_names_the_variant(csa_nano_model: CSANet) -> None:
    ref = to_reference_state_dict(csa_nano_model)
    ref["stages.1.0.q.weight"] = torch.zeros(5, 80, 1, 1)
    with pytest.raises(CsaError, match=r"shape mismatch loading csa-nano: stages.1.0.q.weight \(5, 80, 1, 1\) vs \(196, 80, 1, 1\)"):
        from_reference_state_dict("csa-nano", ref)


def test_every_parameter_has_a_reference_name(csa_tiny_model: CSANet) -> None:
    names = [our_key_to_reference(k) for k in csa_tiny_model.state_dict()]
    assert None not in names and len(set(names)) == len(names)


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip(csa_nano_model: CSANet, tmp_path: Path) -> None:
    path = save_checkpoint(csa_nano_model, tmp_path / "nano.safetensors", "csa-nano")
    assert [p.name for p in tmp_path.iterdir()] == ["nano.safetensors"]  # no temp file left
    name, state_dict, meta = load_checkpoint(path)
    assert name == "csa-nano" and meta["arch"]["name"] == "csa_nano" and meta["arch"]["config"]["dims"] == [40, 80, 160, 320]
    assert set(state_dict) == set(csa_nano_model.state_dict())
    _, model = load_model_from_checkpoint(path)
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), csa_nano_model(x))


def test_baseline_checkpoint_rebuilds_from_the_manifest(tmp_path: Path) -> None:
    model = create_model("test-convnext", num_classes=10).eval()
    path = save_checkpoint(model, tmp_path / "convnext.safetensors", "test-convnext")
    name, loaded = load_model_from_checkpoint(path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert name == "test-convnext" and torch.equal(loaded.eval()(x), model(x))


@pytest.mark.gpu
def test_csa_on_cuda_matches_cpu(csa_nano_model: CSANet) -> None:
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    x = torch.randn(4, 3, 224, 224)
    gpu = copy.deepcopy(csa_nano_model).cuda()
    with torch.no_grad():
        cpu_out = csa_nano_model(x)
        assert rel_err(gpu(x.cuda()).cpu(), cpu_out) < 1e-4
        half = inference_form(gpu).half()(x.cuda().half()).float().cpu()
    assert torch.isfinite(half).all() and rel_err(half, cpu_out) < 5e-2


def test_checkpoint_refuses_foreign_files(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CsaError, match="not a csa checkpoint"):
        read_metadata(tmp_path / "plain.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(CsaError, match="not a readable safetensors"):
        read_metadata(tmp_path / "junk.safetensors")


def test_checkpoint_refuses_the_inference_form(csa_nano_model: CSANet, tmp_path: Path) -> None:
    with pytest.raises(CsaError, match="inference-form"):
        save_checkpoint(inference_form(csa_nano_model), tmp_path / "x.safetensors", "csa-nano")
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- csa import-reference


def test_import_reference_end_to_end(csa, csa_nano_model: CSANet, tmp_path: Path) -> None:
    pth = tmp_path / "checkpoint-best.pth"
    ref = to_reference_state_dict(csa_nano_model)
    torch.save({"model": ref, "epoch": 299}, pth)  # as ConvNeXt's training script saves it
    out = tmp_path / "out" / "nano.safetensors"
    result = csa("import-reference", str(pth), "--model", "csa-nano", "--output", str(out))
    assert result.exit_code == 0, result.stderr
    rec = result.record
    assert rec["kind"] == "checkpoint" and rec["model"] == "csa-nano" and Path(rec["path"]) == out.resolve()
    assert rec["weights"] == rec["path"] and len(rec["weights_hash"]) == 64 and rec["license"].startswith("Apache-2.0")
    name, model = load_model_from_checkpoint(out)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert name == "csa-nano" and torch.equal(model.eval()(x), csa_nano_model(x))
    # default output: under CSA_HOME, keyed by the source's hash
    again = csa("import-reference", str(pth), "--model", "csa-nano")
    assert again.exit_code == 0 and "checkpoints" in again.record["path"] and Path(again.record["path"]).is_file()


class PickledObject:
    """Not a tensor: torch.load(weights_only=True) must refuse to unpickle it."""


def test_import_reference_errors(csa, csa_nano_model: CSANet, tmp_path: Path) -> None:
    pth = tmp_path / "nano.pth"
    torch.save(to_reference_state_dict(csa_nano_model), pth)
    wrong = csa("import-reference", str(pth), "--model", "csa-tiny", "--output", str(tmp_path / "t.safetensors"))
    assert wrong.exit_code == 1 and "Error: the state dict does not match csa-tiny: missing" in wrong.stderr
    assert "Hint: these weights fit csa-nano: use --model csa-nano" in wrong.stderr
    assert not (tmp_path / "t.safetensors").exists()
    assert wrong.record["kind"] == "error"
    baseline = csa("import-reference", str(pth), "--model", "test-convnext")
    assert baseline.exit_code == 1 and "not a CSA model" in baseline.stderr
    missing = csa("import-reference", str(tmp_path / "nope.pth"), "--model", "csa-nano")
    assert missing.exit_code == 1 and "checkpoint not found" in missing.stderr
    torch.save({"model": PickledObject()}, tmp_path / "evil.pth")
    evil = csa("import-reference", str(tmp_path / "evil.pth"), "--model", "csa-nano")
    assert evil.exit_code == 1 and "weights-only" in evil.stderr


def _conv_gmacs(model: nn.Module, img_size: tuple[int, int]) -> float:
    macs = 0

    def hook(mod: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal macs
        assert isinstance(mod, nn.Conv2d)
        macs += out[0].numel() * mod.weight[0].numel()  # per output element: C_in/groups * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, *img_size, device=next(model.parameters()).device))
    for h in handles:
        h.remove()
    return macs / 1e9


def test_csa_tiny_compute_matches_the_zoo_figure() -> None:
    with torch.device("meta"):  # shapes only: counting needs no arithmetic
        model = create_model("csa-tiny").eval()
    gmacs = _conv_gmacs(model, (224, 224))
    assert 4.0 < gmacs < 4.2  # zoo: ~4.1 GMACs at 224


def test_inference_form_does_less_work(csa_nano_model: CSANet) -> None:
    assert _conv_gmacs(inference_form(csa_nano_model), (224, 224)) < 0.95 * _conv_gmacs(csa_nano_model, (224, 224))


def test_drop_path_keeps_the_expected_value_and_drops_whole_samples() -> None:
    """Stochastic depth (timm's drop_path): each sample's residual is zeroed with probability p or scaled by 1/(1-p)."""
    from csa_cli.models.csa import drop_path

    torch.manual_seed(0)
    x = torch.ones(4000, 2, 3, 3)
    y = drop_path(x, 0.25, training=True)
    per_sample = y.reshape(4000, -1)
    assert torch.all(per_sample == per_sample[:, :1])  # one decision per sample, not per element
    values = torch.unique(per_sample).tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / 0.75)
    kept = float((per_sample[:, 0] > 0).float().mean())
    assert abs(kept - 0.75) < 0.03 and abs(float(y.mean()) - 1.0) < 0.04
    assert drop_path(x, 0.25, training=False) is x and drop_path(x, 0.0, training=True) is x


def test_stochastic_depth_grows_linearly_from_zero_to_the_rate() -> None:
    """timm's schedule: block i of n gets drop_path_rate * i / (n - 1), the last block the full rate."""
    model = build_csa("csa-nano", drop_path_rate=0.3)
    rates = [b.drop_path_rate for b in model.modules() if isinstance(b, CSABlock)]
    n = sum(variant_config("csa-nano").depths)
    assert len(rates) == n
    assert rates == pytest.approx([0.3 * i / (n - 1) for i in range(n)])
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.3)


def test_timm_reads_avg_pooling_and_1000_classes_from_an_untrained_variant(tmp_path: Path) -> None:
    """What timm's Hub helpers write for a CSA model (config.json) names average pooling and 1000 classes, and
    timm builds the model back from it."""
    import json

    import timm
    from timm.models._hub import save_config_for_hf

    import csa_cli.models.csa  # noqa: F401  (registers the variants with timm)

    model = timm.create_model("csa_nano")
    assert model.pretrained_cfg["num_classes"] == 1000 and model.num_classes == 1000
    save_config_for_hf(model, str(tmp_path / "config.json"))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["global_pool"] == "avg" and config["num_classes"] == 1000
    rebuilt = timm.create_model("csa_nano", global_pool=config["global_pool"], num_classes=config["num_classes"])
    assert rebuilt.global_pool == rebuilt.head.global_pool == "avg"  # the model's attribute is timm's fallback


def test_config_kernel_and_bn_eps_reach_every_block() -> None:
    model = build_csa("csa-nano", dw_kernel=3, bn_eps=1e-3, mlp_ratio=2)
    blocks = [m for m in model.modules() if isinstance(m, CSABlock)]
    assert blocks and all(b.value.conv.kernel_size == (3, 3) and b.value.conv.padding == (1, 1) for b in blocks)
    assert all(b.fc1.conv.out_channels == b.fc2.in_channels == 2 * b.dim for b in blocks)  # the MLP's width
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(m.eps == 1e-3 for m in norms)


def test_forward_head_of_a_features_only_model_says_why() -> None:
    model = build_csa("csa-nano", features_only=True)
    with pytest.raises(CsaError, match=r"^a features_only CSA model has no head$"):
        model.forward_head(torch.zeros(1, 256, 2, 2))


def test_fuse_conv_bn_folds_a_bias_free_conv_too() -> None:
    """The fold is generic: a conv without bias (as in most published backbones) followed by BN."""
    from csa_cli.models.csa import fuse_conv_bn

    torch.manual_seed(0)
    conv, bn = nn.Conv2d(4, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
    randomize_bn(bn)
    bn.eval()
    x = torch.randn(2, 4, 5, 5)
    fused = fuse_conv_bn(conv, bn)
    assert fused.bias is not None
    torch.testing.assert_close(fused(x), bn(conv(x)), rtol=1e-5, atol=1e-5)


def test_head_dropout_acts_in_training_only() -> None:
    model = CSANet(variant_config("csa-nano"), 1000, drop_rate=0.4)
    feats = torch.rand(64, model.num_features, 2, 2) + 0.5
    torch.manual_seed(0)
    model.train()
    assert model.head is not None
    pooled = model.head.norm.eval()(F.avg_pool2d(feats, 2))  # what the head drops out: BN'd pooled features
    dropped = model.head(feats, pre_logits=True)
    ratio = (dropped / pooled.flatten(1))[dropped != 0]
    torch.testing.assert_close(ratio, torch.full_like(ratio, 1 / 0.6), rtol=1e-4, atol=1e-4)
    assert 0.3 < float((dropped == 0).float().mean()) < 0.5  # about 40% dropped
    model.eval()
    torch.testing.assert_close(model.head(feats, pre_logits=True), pooled.flatten(1))


def test_reset_classifier_with_another_pooling_says_what_to_do() -> None:
    model = build_csa("csa-nano")
    with pytest.raises(UsageError, match="CSA pools by average only, not 'max'") as bad:
        model.reset_classifier(5, global_pool="max")
    assert bad.value.hint == "leave global_pool unset"
    for same in ("avg", ""):  # timm's name for what CSA does, or nothing: accepted
        model.reset_classifier(4, global_pool=same)
        assert model.num_classes == 4 and model.head.fc.out_channels == 4


def test_folds_keep_the_dtype_of_a_half_precision_model() -> None:
    from csa_cli.models.csa import fuse_bn_conv1x1, fuse_conv_bn

    conv, bn = nn.Conv2d(4, 6, 1).half(), nn.BatchNorm2d(4).half().eval()
    assert fuse_bn_conv1x1(bn, conv).weight.dtype == torch.float16
    assert fuse_conv_bn(nn.Conv2d(4, 6, 3).half(), nn.BatchNorm2d(6).half().eval()).weight.dtype == torch.float16


def test_a_block_made_directly_has_no_stochastic_depth_by_default() -> None:
    block = CSABlock(16, 1, 4).train()
    x = torch.randn(3, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    first = block(x)
    torch.manual_seed(1)
    assert torch.isfinite(first).all() and torch.equal(first, block(x))  # nothing random: no sample dropped


def test_grad_checkpointing_is_on_by_default_when_asked_and_trains_from_a_leaf_input() -> None:
    """set_grad_checkpointing() with no argument turns it on (timm's API), and checkpointed blocks whose input
    needs no gradient (the layers before them frozen) still give their weights gradients."""
    model = build_csa("csa-nano").train()
    assert not model.grad_checkpointing and not any(stage.grad_checkpointing for stage in model.stages)  # off until asked
    model.set_grad_checkpointing()
    assert model.grad_checkpointing and all(stage.grad_checkpointing for stage in model.stages)
    stage = model.stages[1]
    stage.downsample.requires_grad_(False)  # frozen early layers (fine-tuning): the blocks' input needs no gradient
    x = torch.randn(2, 40, 16, 16)
    stage(x).sum().backward()
    assert all(p.grad is not None for p in stage.blocks.parameters())


def test_fuse_bn_conv1x1_folds_into_a_bias_free_conv() -> None:
    from csa_cli.models.csa import fuse_bn_conv1x1

    torch.manual_seed(0)
    bn, conv = nn.BatchNorm2d(4), nn.Conv2d(4, 6, 1, bias=False)
    randomize_bn(bn)
    bn.eval()
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(fuse_bn_conv1x1(bn, conv)(x), conv(bn(x)), rtol=1e-5, atol=1e-5)


def test_a_training_block_drops_its_residual_branch_per_sample_and_an_eval_block_never_does() -> None:
    block = CSABlock(16, 1, 4, drop_path=0.5)
    x = torch.randn(64, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    block.eval()
    assert not any(torch.equal(y, xi) for y, xi in zip(block(x), x, strict=True))  # eval: every branch added
    block.train()
    torch.manual_seed(0)
    y = block(x)
    dropped = [bool(torch.equal(y[i], x[i])) for i in range(64)]  # a dropped branch leaves the input as it was
    assert 10 < sum(dropped) < 54


def test_a_variant_built_by_either_spelling_records_timm_s_name() -> None:
    # checkpoints record the architecture under this name (models/checkpoint.py)
    assert build_csa("csa-nano").variant == build_csa("csa_nano").variant == "csa_nano"


def test_a_one_class_head_is_a_classifier_too() -> None:
    model = build_csa("csa-nano", num_classes=1, depths=[1, 1, 1, 1]).eval()
    assert isinstance(model.head.fc, nn.Conv2d) and model(torch.randn(1, 3, 64, 64)).shape == (1, 1)


def test_features_only_stops_at_the_last_stage_asked_for() -> None:
    model = build_csa("csa-nano", features_only=True, out_indices=(0, 1), depths=[1, 1, 1, 1]).eval()
    ran: list[int] = []
    for i, stage in enumerate(model.stages):
        stage.register_forward_hook(lambda *_, i=i: ran.append(i))
    feats = model(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [model.config.dims[0], model.config.dims[1]]
    assert ran == [0, 1]  # stages 2 and 3 are not computed


def test_build_csa_takes_the_input_channels_asked_for() -> None:
    model = build_csa("csa-nano", num_classes=3, in_chans=1, depths=[1, 1, 1, 1]).eval()
    assert model.stages[0].downsample.conv.in_channels == 1
    assert model(torch.randn(1, 1, 64, 64)).shape == (1, 3)


def test_fuse_conv_bn_keeps_the_padding_mode() -> None:
    from csa_cli.models.csa import fuse_conv_bn

    torch.manual_seed(0)
    conv, bn = nn.Conv2d(4, 6, 3, padding=1, padding_mode="reflect"), nn.BatchNorm2d(6)
    randomize_bn(bn)
    bn.eval()
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(fuse_conv_bn(conv, bn)(x), bn(conv(x)), rtol=1e-5, atol=1e-5)


def test_two_blocks_get_no_drop_path_and_the_full_rate() -> None:
    config = CSAConfig(depths=(1, 1), dims=(8, 16), heads=(1, 1), reduced=(2, 2), drop_path_rate=0.2)
    rates = [b.drop_path_rate for b in build_csa(config, num_classes=2).modules() if isinstance(b, CSABlock)]
    assert rates == pytest.approx([0.0, 0.2])
