"""CSA in timm's registry: importing csa_cli.models.csa registers the variants, built by timm's factory."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import csa_cli.models.csa as csa
from csa_cli.manifest import load_manifest

timm = pytest.importorskip("timm")


# csa_nano with one block a stage and narrow stages: timm's kwargs reach CSAConfig, and the tests stay cheap
SMALL = {"depths": (1, 1, 1, 1), "dims": (16, 32, 64, 128), "heads": (1, 1, 2, 4), "reduced": (7, 7, 7, 4)}


def _small(**kwargs: object) -> torch.nn.Module:
    return timm.create_model("csa_nano", **SMALL, **kwargs)


def _x(size: int = 64, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_import_registers_every_variant_in_a_fresh_interpreter() -> None:
    code = "import timm; before = set(timm.list_models('csa_*'))\nimport csa_cli.models.csa\nprint(sorted(set(timm.list_models('csa_*')) - before))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(sorted(csa.list_variants()))


def test_create_model_builds_the_csa_network_with_its_pretrained_cfg() -> None:
    model = timm.create_model("csa_nano", num_classes=7).eval()
    assert isinstance(model, csa.CSANet) and model.variant == "csa_nano"
    assert model.pretrained_cfg["architecture"] == "csa_nano"
    assert model(_x()).shape == (2, 7)
    ours = csa.build_csa("csa_nano", 7)
    assert sorted(model.state_dict()) == sorted(ours.state_dict())  # the same network, so checkpoints load both ways
    assert _small(drop_path_rate=0.2).config.drop_path_rate == 0.2  # timm's train.py passes these
    with pytest.raises(Exception, match="global_pool"):
        timm.create_model("csa_nano", global_pool="max")


@pytest.mark.parametrize("name", ["csa-nano", "csa-tiny", "csa-small"])
def test_pretrained_cfg_is_the_zoo_entrys_preprocessing(name: str) -> None:
    entry = load_manifest().get(name)
    cfg = timm.models.get_pretrained_cfg(entry.architecture.name).to_dict()
    pre = entry.preprocessing
    assert tuple(cfg["input_size"]) == (3, *pre.input_size)
    assert (cfg["crop_pct"], cfg["interpolation"]) == (pre.crop_pct, pre.interpolation)
    assert tuple(cfg["mean"]) == pytest.approx(pre.mean) and tuple(cfg["std"]) == pytest.approx(pre.std)
    assert tuple(cfg["pool_size"]) == csa.feature_sizes(csa.variant_config(entry.architecture.name), pre.input_size)[-1]


def test_features_only_gives_maps_at_the_declared_reductions() -> None:
    model = _small(features_only=True, out_indices=(1, 2, 3)).eval()
    info = model.feature_info
    assert info.reduction() == [8, 16, 32] and info.channels() == [32, 64, 128]
    size = 128
    with torch.no_grad():
        maps = model(_x(size))
    sizes = csa.feature_sizes(csa.variant_config("csa_nano"), (size, size))
    for fmap, reduction, channels, i in zip(maps, info.reduction(), info.channels(), (1, 2, 3), strict=True):
        assert fmap.shape[1] == channels
        assert fmap.shape[-2:] == sizes[i]
        # the 3x3 stride-2 downsampling has no padding: a map is the nominal size or one smaller
        assert size // reduction - 1 <= fmap.shape[-1] <= size // reduction


def test_forward_features_and_head_compose_to_forward() -> None:
    model = _small(num_classes=5).eval()
    with torch.no_grad():
        feats = model.forward_features(_x())
        assert feats.shape == (2, 128, 1, 1)
        torch.testing.assert_close(model.forward_head(feats), model(_x()))
        assert model.forward_head(feats, pre_logits=True).shape == (2, model.num_features)


def test_reset_classifier_changes_num_classes() -> None:
    model = _small().eval()
    backbone = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head.fc")}
    model.reset_classifier(3)
    assert model.num_classes == 3 and model(_x()).shape == (2, 3)
    assert model.get_classifier().out_channels == 3
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in backbone.items())
    model.reset_classifier(0)  # timm's "backbone only": pooled features
    assert model(_x()).shape == (2, 128)


def test_grad_checkpointing_gives_the_same_outputs_and_gradients() -> None:
    torch.manual_seed(0)
    plain = _small(num_classes=4)
    ckpt = _small(num_classes=4)
    ckpt.load_state_dict(plain.state_dict())
    ckpt.set_grad_checkpointing(True)
    assert all(stage.grad_checkpointing for stage in ckpt.stages)
    x = _x()
    out_plain, out_ckpt = plain(x), ckpt(x)
    torch.testing.assert_close(out_ckpt, out_plain)
    out_plain.square().sum().backward()
    out_ckpt.square().sum().backward()
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, msg=name)


def test_group_matcher_puts_every_parameter_in_a_group() -> None:
    from timm.models import group_parameters

    model = _small()
    groups = group_parameters(model, model.group_matcher())
    named = {n for n, _ in model.named_parameters()}
    assert {n for names in groups.values() for n in names} == named
    assert len(groups) > len(model.stages)  # stem, every block, the head


def test_group_matcher_puts_a_stage_downsample_with_its_first_block_and_orders_the_stages() -> None:
    """timm's convention (its ConvNeXt uses the same matcher): a stage's downsample joins the group of the stage's
    first block, so layer-wise lr decay treats them as one depth; groups follow the network's depth."""
    from timm.models import group_parameters

    model = timm.create_model("csa_nano", **{**SMALL, "depths": (1, 2, 1, 1)})
    groups = group_parameters(model, model.group_matcher())
    group_of = {name: gid for gid, names in groups.items() for name in names}
    for i in (1, 2, 3):
        assert group_of[f"stages.{i}.downsample.conv.weight"] == group_of[f"stages.{i}.blocks.0.value.conv.weight"]
        assert group_of[f"stages.{i - 1}.blocks.0.value.conv.weight"] < group_of[f"stages.{i}.blocks.0.value.conv.weight"]
    assert group_of["stages.0.downsample.conv.weight"] == min(group_of.values())  # the stem first
    coarse = group_parameters(model, model.group_matcher(coarse=True))
    assert len(coarse) == len(groups) - 1  # stage 1's two blocks share a group when coarse


def test_registered_pretrained_cfg_is_the_one_timm_pretrained_cfg_describes() -> None:
    """timm holds the cfg built at import; the function must describe the same thing (no weights to download: url "")."""
    cfg = csa.timm_pretrained_cfg()
    for name in ("csa_nano", "csa_tiny", "csa_small"):
        registered = timm.models.get_pretrained_cfg(name).to_dict()
        for key, value in cfg.items():
            assert key in registered, key
            assert (tuple(registered[key]) if isinstance(registered[key], list) else registered[key]) == value, key
    assert csa.timm_pretrained_cfg(num_classes=10)["num_classes"] == 10


def test_timm_kwargs_reach_the_network() -> None:
    """What timm's factory and train.py pass: an empty global_pool (timm's "keep"), lists for per-stage fields, drop_rate."""
    model = timm.create_model("csa_nano", global_pool="", depths=[1, 1, 2, 1], dims=[16, 32, 64, 128], heads=[1, 1, 2, 4], drop_rate=0.3)
    assert model.config.depths == (1, 1, 2, 1) and model.config.dims == (16, 32, 64, 128) and model.config.heads == (1, 1, 2, 4)
    assert [len(stage.blocks) for stage in model.stages] == [1, 1, 2, 1]
    assert model.drop_rate == 0.3 and model.head.drop_rate == 0.3
    with pytest.raises(Exception, match=r"^csa models take no patch_size, window_size$") as bad:
        timm.create_model("csa_nano", window_size=7, patch_size=4)
    assert bad.value.hint.startswith("known options: bn_eps, depths, dims")  # type: ignore[attr-defined]


def test_pretrained_true_loads_the_weights_a_pretrained_cfg_points_at(tmp_path) -> None:
    """timm.create_model(..., pretrained=True) with a local file in the pretrained cfg (what a Hub repo gives timm)."""
    from safetensors.torch import save_file

    source = _small().eval()
    save_file(source.state_dict(), str(tmp_path / "model.safetensors"))
    loaded = _small(pretrained=True, pretrained_cfg_overlay={"file": str(tmp_path / "model.safetensors")}).eval()
    for (name, a), b in zip(source.state_dict().items(), loaded.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, msg=name)
    fresh = _small().eval()
    assert not torch.equal(fresh.stages[0].downsample.conv.weight, source.stages[0].downsample.conv.weight)  # not by chance


def test_in_chans_reaches_the_stem() -> None:
    model = _small(in_chans=1).eval()
    assert model.stages[0].downsample.conv.in_channels == 1
    assert model(torch.zeros(1, 1, 64, 64)).shape == (1, 1000)


def test_the_group_matcher_s_stem_is_the_first_downsample() -> None:
    import re

    model = _small()
    stem = model.group_matcher()["stem"]
    matched = [n for n, _ in model.named_parameters() if re.match(stem, n)]
    assert matched and all(n.startswith("stages.0.downsample.") for n in matched)
    assert matched == [n for n, _ in model.named_parameters() if n.startswith("stages.0.downsample.")]


def test_the_head_alone_gives_logits_unless_asked_for_pre_logits() -> None:
    model = _small().eval()
    features = model.forward_features(torch.randn(2, 3, 64, 64))
    with torch.no_grad():
        logits = model.head(features)
        pooled = model.head(features, pre_logits=True)
        torch.testing.assert_close(logits, model.forward_head(features))
    assert logits.shape == (2, model.num_classes) and pooled.shape == (2, model.num_features)


def test_a_features_only_network_has_no_classifier() -> None:
    from csa_cli.models.csa import build_csa

    model = build_csa("csa-nano", features_only=True, **SMALL)
    assert model.head is None and model.get_classifier() is None


def test_unknown_options_are_all_named_in_one_line() -> None:
    from csa_cli.errors import UsageError
    from csa_cli.models.csa import build_csa

    with pytest.raises(UsageError, match=r"^unknown CSA option\(s\): colour, flavour$") as err:
        build_csa("csa-nano", flavour=1, colour=2)
    assert str(err.value.hint).startswith("known options: bn_eps, depths, dims")


def test_timm_s_factory_builds_without_head_dropout_unless_asked() -> None:
    assert timm.create_model("csa_nano", **SMALL).head.drop_rate == 0.0
    assert timm.create_model("csa_nano", drop_rate=0.2, **SMALL).head.drop_rate == 0.2


def test_the_group_matcher_has_timm_s_two_keys() -> None:
    # timm's models name their matchers "stem" and "blocks"; its layer-decay and freezing helpers read them
    assert set(_small().group_matcher()) == set(_small().group_matcher(coarse=True)) == {"stem", "blocks"}
