"""Preprocessing defaults and descriptions against timm's own constants and the documented formats."""

from __future__ import annotations

import json
import math


def test_default_preprocessing_is_timms_default() -> None:
    from timm.data.constants import DEFAULT_CROP_PCT, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    from csa_cli.data.preprocess import default_preprocessing

    pre = default_preprocessing((160, 192))
    assert tuple(pre.input_size) == (160, 192)
    assert pre.crop_pct == DEFAULT_CROP_PCT and pre.interpolation == "bicubic"
    assert tuple(pre.mean) == IMAGENET_DEFAULT_MEAN and tuple(pre.std) == IMAGENET_DEFAULT_STD
    assert tuple(default_preprocessing().input_size) == (224, 224)


def test_describe_is_the_settings_as_json_plus_the_resize_target() -> None:
    from csa_cli.data.preprocess import build_transform, default_preprocessing

    pre = default_preprocessing((224, 192))
    described = build_transform(pre).describe()
    assert json.loads(json.dumps(described)) == described  # JSON types only (lists, not tuples)
    assert described["resize"] == [math.floor(224 / 0.875), math.floor(192 / 0.875)] == [256, 219]
    assert described["input_size"] == [224, 192] and described["mean"] == [0.485, 0.456, 0.406]
    assert described["interpolation"] == "bicubic" and described["crop_pct"] == 0.875


def test_repr_names_resize_crop_and_normalization() -> None:
    from csa_cli.data.preprocess import build_transform, default_preprocessing

    text = repr(build_transform(default_preprocessing((224, 192))))
    assert text == "EvalTransform(resize short side to 256 (bicubic), centre crop 224x192, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))"
