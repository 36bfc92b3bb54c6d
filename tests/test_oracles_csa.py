"""What a CSA block and csa-nano compute, checked against an oracle that shares no code with ours.

`reference_forward` below is the network written out from shared/reference/csa-architecture.md as
plain functional ops over a state dict in the reference (DL4AGX) layout, the names
csa_cli/models/reference.py maps to ours: it never calls csa_cli.models.csa, so a change there
(swish turned into a sigmoid, a wrong rotate, a dropped residual) makes the two disagree even though
both model forms and the ONNX export, which share csa.py, still agree with each other.

tests/data/oracles/csa_reference.npz pins its outputs for a fixed input and fixed weights
(make_csa_reference.py beside it says how): weights drawn from numpy's RandomState, not torch's
generator, so they are the same on every torch release.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

DATA = Path(__file__).parent / "data" / "oracles" / "csa_reference.npz"
SEED = 20
# csa-nano: (depths, dims, heads, reduced) as shared/reference says, written here again on purpose
NANO = {"depths": (2, 2, 4, 2), "dims": (40, 80, 160, 320), "heads": (1, 1, 2, 4), "reduced": (14, 14, 14, 7)}
BLOCK = {"dim": 8, "heads": 2, "reduced": 3}  # a block small enough to store, rotate included (N = 9)


# ------------------------------------------------------------------------------------------
# the oracle


def _swish(x: torch.Tensor) -> torch.Tensor:
    return x / (1.0 + torch.exp(-x))  # z * sigmoid(z), spelled differently from csa.swish on purpose


def _bn(x: torch.Tensor, sd: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    return F.batch_norm(x, sd[prefix + ".running_mean"], sd[prefix + ".running_var"], sd[prefix + ".weight"], sd[prefix + ".bias"], False, 0.0, 1e-5)


def _conv(x: torch.Tensor, sd: dict[str, torch.Tensor], prefix: str, *, stride: int = 1, padding: int = 0, groups: int = 1) -> torch.Tensor:
    return F.conv2d(x, sd[prefix + ".weight"], sd[prefix + ".bias"], stride=stride, padding=padding, groups=groups)


def _resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    # by output size, not csa.resize_to's float32-exact scales: the sampled coordinates differ by ~1 ulp
    return x if x.shape[-2:] == (h, w) else F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)


def reference_block(x: torch.Tensor, sd: dict[str, torch.Tensor], p: str, heads: int, s: int) -> torch.Tensor:
    """Steps 1-9 of the CSA block, `p` the block's reference prefix (stages.i.j)."""
    b, c, h, w = x.shape
    n = s * s
    v = _swish(_bn(_conv(x, sd, p + ".v", padding=2, groups=c), sd, p + ".act_v.0"))  # 1
    q = _bn(_conv(_resize(v, s, s), sd, p + ".q"), sd, p + ".norm_q")  # 2, 3
    matrix = q.reshape(b, heads, n, n)  # per head: N channels x N positions
    k = matrix.transpose(-1, -2).reshape(b, heads * n, s, s)  # 4: entry [c, p] of k is q[p, c]
    a = _resize(q * k, h, w)  # 5, 6
    g = torch.sigmoid(_bn(_conv(a, sd, p + ".qk"), sd, p + ".act_qk.0"))  # 7
    y = _conv(_swish(_bn(_conv(g * v, sd, p + ".qkv"), sd, p + ".act_qkv.0")), sd, p + ".mlp")  # 8
    if p + ".gamma" in sd:
        y = y * sd[p + ".gamma"]
    return x + y  # 9


def reference_forward(x: torch.Tensor, sd: dict[str, torch.Tensor], cfg: dict[str, Any] = NANO) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(logits, every stage's output) of a CSA network from its reference-layout state dict."""
    feats = []
    for i, depth in enumerate(cfg["depths"]):
        down = f"downsample_layers.{i}"
        x = _conv(x, sd, down + ".0", stride=4, padding=3) if i == 0 else _conv(x, sd, down + ".0", stride=2)
        x = _bn(x, sd, down + ".1")
        for j in range(depth):
            x = reference_block(x, sd, f"stages.{i}.{j}", cfg["heads"][i], cfg["reduced"][i])
        feats.append(x)
    pooled = x.mean(dim=(2, 3), keepdim=True)
    logits = _conv(_bn(pooled, sd, "norm"), sd, "head").flatten(1)
    return logits, feats


# ------------------------------------------------------------------------------------------
# fixed weights and inputs


def seeded_state_dict(model: torch.nn.Module, seed: int = SEED) -> dict[str, torch.Tensor]:
    """Every tensor of `model`'s state dict from RandomState(seed), in sorted-name order.

    Convs ~ N(0, 1/fan_in) so activations neither vanish nor explode over ten blocks; BN statistics
    away from (0, 1) so a skipped or misplaced BN shows.
    """
    rng = np.random.RandomState(seed)
    out: dict[str, torch.Tensor] = {}
    for name, tensor in sorted(model.state_dict().items()):
        shape = tuple(tensor.shape)
        if name.endswith("num_batches_tracked"):
            value = np.zeros(shape)
        elif name.endswith("running_var"):
            value = rng.uniform(0.5, 2.0, shape)
        elif name.endswith("running_mean") or name.endswith(".bias"):
            value = rng.normal(0.0, 0.2, shape)
        elif tensor.ndim == 1:  # BN weight, layer scale
            value = rng.uniform(0.5, 1.5, shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            value = rng.normal(0.0, 1.0 / math.sqrt(fan_in), shape)
        out[name] = torch.as_tensor(value, dtype=tensor.dtype)
    return out


def nano(seed: int = SEED) -> torch.nn.Module:
    from csa_cli.models.csa import build_csa

    model = build_csa("csa_nano")
    model.load_state_dict(seeded_state_dict(model, seed))
    return model.eval()


def block(seed: int = SEED, layer_scale: float | None = None) -> torch.nn.Module:
    from csa_cli.models.csa import CSABlock

    module = CSABlock(BLOCK["dim"], BLOCK["heads"], BLOCK["reduced"], layer_scale=layer_scale)
    module.load_state_dict(seeded_state_dict(module, seed))
    return module.eval()


def block_reference_sd(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The block's parameters under reference names (csa_cli/models/reference.py), as block 0 of stage 0."""
    from csa_cli.models.reference import our_key_to_reference

    sd = {}
    for key, value in module.state_dict().items():
        ref = our_key_to_reference(f"stages.0.blocks.0.{key}")
        assert ref is not None, key
        sd[ref] = value.reshape(1, -1, 1, 1) if ref.endswith(".gamma") else value
    return sd


def inputs(seed: int = SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """(csa-nano image batch 1x3x64x64, block input 2x8x6x5: non-square, larger than the reduced side)."""
    rng = np.random.RandomState(seed + 1)
    image = torch.as_tensor(rng.normal(0.0, 1.0, (1, 3, 64, 64)), dtype=torch.float32)
    feature = torch.as_tensor(rng.normal(0.0, 1.0, (2, BLOCK["dim"], 6, 5)), dtype=torch.float32)
    return image, feature


def close(actual: torch.Tensor | np.ndarray, expected: torch.Tensor | np.ndarray, rel: float = 1e-4) -> None:
    a, e = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    scale = max(float(np.abs(e).max()), 1e-6)
    err = float(np.abs(a - e).max())
    assert err <= rel * scale, f"max |diff| {err:.3g} > {rel:g} x max |expected| {scale:.3g}"


# ------------------------------------------------------------------------------------------
# tests


@pytest.fixture(scope="module")
def stored() -> dict[str, np.ndarray]:
    with np.load(DATA) as data:
        return {k: data[k] for k in data.files}


def test_swish_is_x_times_sigmoid_x() -> None:
    from csa_cli.models.csa import swish

    points = [-6.0, -2.0, -0.5, 0.0, 0.5, 1.0, 3.0]
    expected = [x / (1.0 + math.exp(-x)) for x in points]  # swish(1) = 0.7311, swish(-2) = -0.2384
    assert swish(torch.tensor(points, dtype=torch.float64)).tolist() == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_stored_inputs_are_the_seeded_ones(stored: dict[str, np.ndarray]) -> None:
    image, feature = inputs()
    assert np.array_equal(stored["image"], image.numpy()) and np.array_equal(stored["block_input"], feature.numpy())


@pytest.mark.parametrize("form", ["training", "inference"])
def test_block_matches_stored_and_oracle(stored: dict[str, np.ndarray], form: str) -> None:
    _, feature = inputs()
    module = block()
    oracle = reference_block(feature, block_reference_sd(module), "stages.0.0", BLOCK["heads"], BLOCK["reduced"])
    if form == "inference":
        from csa_cli.models.csa import CSABlock

        module.fuse()
        assert isinstance(module, CSABlock) and module.fused
    with torch.no_grad():
        out = module(feature)
    close(out, stored["block_output"])
    close(out, oracle)
    # the residual carries x through: what the block adds is pinned, not only x itself
    close(out - feature, stored["block_output"] - stored["block_input"], rel=2e-4)


def test_layer_scaled_block_matches_oracle() -> None:
    _, feature = inputs()
    module = block(layer_scale=0.5)
    with torch.no_grad():
        oracle = reference_block(feature, block_reference_sd(module), "stages.0.0", BLOCK["heads"], BLOCK["reduced"])
        close(module(feature), oracle)
        module.fuse()
        close(module(feature), oracle)


@pytest.fixture(scope="module")
def seeded_nano() -> torch.nn.Module:
    return nano()


def test_csa_nano_matches_stored_and_oracle(stored: dict[str, np.ndarray], seeded_nano: torch.nn.Module) -> None:
    from csa_cli.models.reference import to_reference_state_dict

    image, _ = inputs()
    model = seeded_nano
    with torch.no_grad():
        logits = model(image)
        feats = model.forward_stages(image)
        oracle_logits, oracle_feats = reference_forward(image, to_reference_state_dict(model))
        fused = model.for_inference()(image)
    close(logits, stored["logits"])
    close(logits, oracle_logits)
    close(fused, stored["logits"])
    for i, feat in enumerate(feats):
        close(feat.mean(dim=(2, 3)), stored[f"stage{i}_mean"])
        close(feat, oracle_feats[i])
    assert int(np.argmax(stored["logits"])) == int(logits.argmax())


def test_reference_import_of_the_seeded_weights_gives_the_stored_logits(stored: dict[str, np.ndarray], seeded_nano: torch.nn.Module) -> None:
    from csa_cli.models.reference import from_reference_state_dict, to_reference_state_dict

    image, _ = inputs()
    ref_sd = to_reference_state_dict(seeded_nano)
    model = from_reference_state_dict("csa-nano", ref_sd).eval()
    with torch.no_grad():
        close(model(image), stored["logits"])


# ------------------------------------------------------------------------------------------
# the configuration around the block (what mutation testing found untested)


def test_config_from_dict_names_unknown_keys() -> None:
    from csa_cli.errors import CsaError
    from csa_cli.models.csa import CSAConfig

    with pytest.raises(CsaError, match="unknown CSA config keys: bogus, zz") as err:
        CSAConfig.from_dict({"depths": [1], "dims": [8], "heads": [1], "reduced": [2], "zz": 1, "bogus": 2})
    assert err.value.hint == "known keys: " + ", ".join(sorted(CSAConfig.__dataclass_fields__))
    assert err.value.hint.startswith("known keys: bn_eps, depths, dims, ")


def test_register_variant_makes_it_buildable_by_name() -> None:
    from csa_cli.models import csa

    config = csa.CSAConfig(depths=(1,), dims=(8,), heads=(1,), reduced=(2,))
    try:
        assert csa.register_variant("csa_oracle_test", config) is config
        assert csa.variant_config("csa-oracle-test") is config and "csa_oracle_test" in csa.list_variants()
        assert csa.build_csa("csa_oracle_test", num_classes=3).config is config
    finally:
        csa._VARIANTS.pop("csa_oracle_test", None)


def test_reset_classifier_refuses_without_a_trainable_head_and_keeps_bn_eps() -> None:
    from csa_cli.errors import CsaError
    from csa_cli.models.csa import build_csa

    small = {"depths": (1,), "dims": (8,), "heads": (1,), "reduced": (2,)}
    for model in (build_csa("csa_nano", features_only=True, **small), build_csa("csa_nano", num_classes=4, **small).for_inference()):
        with pytest.raises(CsaError, match=r"^this CSA model has no trainable classifier to reset \(features_only or inference form\)$"):
            model.reset_classifier(5)
    model = build_csa("csa_nano", num_classes=4, bn_eps=1e-3, **small)
    model.reset_classifier(5)
    assert model.num_classes == 5 and model.head is not None and model.head.norm.eps == 1e-3
    assert model.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 5)


def test_feature_sizes_match_the_network_for_other_stem_kernels_and_strides() -> None:
    from csa_cli.models.csa import build_csa, feature_sizes

    for kernel, stride in [(7, 2), (5, 2), (3, 4)]:
        model = build_csa("csa_nano", depths=(1, 1), dims=(8, 8), heads=(1, 1), reduced=(2, 2), stem_kernel=kernel, stem_stride=stride)
        with torch.no_grad():
            feats = model.forward_stages(torch.zeros(1, 3, 64, 96))
        assert [tuple(f.shape[-2:]) for f in feats] == feature_sizes(model.config, (64, 96)), (kernel, stride)


@pytest.mark.parametrize("size", [(64, 64), (224, 224), (224, 384), (96, 64)])
def test_check_input_size_accepts_multiples_of_32_from_64(size: tuple[int, int]) -> None:
    from csa_cli.models.csa import check_input_size

    check_input_size(size)


@pytest.mark.parametrize("size", [(32, 64), (64, 32), (96, 100), (100, 96), (63, 64)])
def test_check_input_size_refuses_others(size: tuple[int, int]) -> None:
    from csa_cli.errors import UsageError
    from csa_cli.models.csa import check_input_size

    with pytest.raises(UsageError, match=rf"^input size {size[0]}x{size[1]} is not supported by CSA$") as err:
        check_input_size(size)
    assert err.value.hint == "height and width must be multiples of 32, at least 64 (e.g. 224, 256, 320, 224x384)"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"depths": (), "dims": (), "heads": (), "reduced": ()}, "^CSA config: depths, dims, heads and reduced need one value per stage$"),
        ({"depths": (1, 1), "dims": (8,), "heads": (1,), "reduced": (2,)}, "need one value per stage"),
        ({"depths": (1,), "dims": (8,), "heads": (1,), "reduced": (0,)}, "^CSA config: depths, dims, heads and reduced must be positive$"),
        ({"depths": (0,), "dims": (8,), "heads": (1,), "reduced": (2,)}, "^CSA config: depths, dims, heads and reduced must be positive$"),
    ],
)
def test_config_refuses_empty_ragged_or_non_positive_stages(fields: dict[str, Any], message: str) -> None:
    from csa_cli.errors import UsageError
    from csa_cli.models.csa import CSAConfig

    with pytest.raises(UsageError, match=message):
        CSAConfig(**fields)


def test_config_takes_one_of_everything_per_stage() -> None:
    from csa_cli.models.csa import CSAConfig, build_csa

    config = CSAConfig(depths=(1,), dims=(1,), heads=(1,), reduced=(1,))  # the smallest positive values
    assert build_csa(config, num_classes=2).eval()(torch.randn(1, 3, 64, 64)).shape == (1, 2)


def test_a_feature_map_resized_to_or_from_nothing_is_a_usage_error_with_a_hint() -> None:
    from csa_cli.errors import UsageError
    from csa_cli.models.csa import exact_scale

    for sizes in ((0, 4), (4, 0)):
        with pytest.raises(UsageError, match=f"cannot resize {sizes[0]} -> {sizes[1]}: the feature map is too small") as err:
            exact_scale(*sizes)
        assert err.value.hint == "use a larger input (a multiple of 32, at least 64)"


def test_unknown_variant_lists_the_known_ones() -> None:
    from csa_cli.errors import CsaError
    from csa_cli.models.csa import list_variants, variant_config

    assert {"csa_nano", "csa_tiny", "csa_small"} <= set(list_variants()) and list_variants() == sorted(list_variants())
    with pytest.raises(CsaError, match="unknown CSA variant 'csa-huge'") as err:
        variant_config("csa-huge")
    assert err.value.hint == "known variants: " + ", ".join(list_variants())
