"""Eval preprocessing from a manifest entry, identical to timm's eval transform for the same settings.

short side -> floor(size / crop_pct) with the named interpolation, centre crop to the input size,
to a float tensor in [0, 1], normalize with the entry's mean/std. The same object serves eval,
INT8 calibration and predict, so the three can never drift apart. It is picklable (DataLoader
workers get a copy).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from csa_cli.errors import CsaError

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from csa_cli.manifest import Preprocessing


def scale_size(input_size: tuple[int, int], crop_pct: float) -> tuple[int, int]:
    """The resize target before the centre crop: floor(size / crop_pct) per side (timm's rule)."""
    return (math.floor(input_size[0] / crop_pct), math.floor(input_size[1] / crop_pct))


def _resized_size(width: int, height: int, scale: tuple[int, int]) -> tuple[int, int]:
    """(w, h) after the resize: torchvision's shortest-edge rule for a square target, timm's ResizeKeepRatio otherwise."""
    if scale[0] == scale[1]:
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = scale[0], int(scale[0] * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)
    ratio = min(height / scale[0], width / scale[1])  # cover the target, keep the aspect ratio
    return round(width / ratio), round(height / ratio)


class EvalTransform:
    """PIL image (any mode) -> normalized CHW float32 tensor, per the entry's preprocessing.

    The same operations as timm's eval transform (torchvision Resize on a PIL image = PIL's resize
    with the named filter, CenterCrop, ToTensor, Normalize), written on PIL and torch directly so
    that eval, calibration and predict do not import torchvision (seconds of start-up).
    """

    def __init__(self, pre: Preprocessing) -> None:
        from PIL import Image

        self.pre = pre
        self.input_size: tuple[int, int] = (int(pre.input_size[0]), int(pre.input_size[1]))
        self.scale_size = scale_size(pre.input_size, pre.crop_pct)
        filters = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}
        self._filter = filters[pre.interpolation]

    def _resize(self, img: Image.Image) -> Image.Image:
        size = _resized_size(img.width, img.height, self.scale_size)
        if size == img.size:  # torchvision returns the image untouched then
            return img
        return img.resize(size, self._filter)

    def _centre_crop(self, img: Image.Image) -> Image.Image:
        from PIL import Image

        crop_h, crop_w = self.input_size
        if crop_w > img.width or crop_h > img.height:  # torchvision pads with zeros first
            padded = Image.new(img.mode, (max(crop_w, img.width), max(crop_h, img.height)))
            padded.paste(img, ((crop_w - img.width) // 2 if crop_w > img.width else 0, (crop_h - img.height) // 2 if crop_h > img.height else 0))
            img = padded
        top = round((img.height - crop_h) / 2.0)
        left = round((img.width - crop_w) / 2.0)
        return img.crop((left, top, left + crop_w, top + crop_h))

    def __call__(self, img: Image.Image) -> torch.Tensor:
        import numpy as np
        import torch

        if img.mode != "RGB":  # grayscale, CMYK, palette and RGBA photos exist in ImageNet val
            img = img.convert("RGB")
        img = self._centre_crop(self._resize(img))
        # float32 numpy, op for op as torchvision's ToTensor + Normalize (the same IEEE results): tiny
        # torch ops pay intra-op thread hand-offs that cost more than the arithmetic on a busy machine
        x = np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        x -= np.asarray(self.pre.mean, dtype=np.float32).reshape(-1, 1, 1)
        x /= np.asarray(self.pre.std, dtype=np.float32).reshape(-1, 1, 1)
        return torch.from_numpy(np.ascontiguousarray(x))

    def __repr__(self) -> str:
        p = self.pre
        return (
            f"EvalTransform(resize short side to {self.scale_size[0]} ({p.interpolation}), centre crop {self.input_size[0]}x{self.input_size[1]}, "
            f"mean={tuple(p.mean)}, std={tuple(p.std)})"
        )

    def describe(self) -> dict[str, Any]:
        return {**self.pre.model_dump(mode="json"), "resize": list(self.scale_size)}


def build_transform(pre: Preprocessing) -> EvalTransform:
    """The eval / calibration / predict transform of a manifest entry's preprocessing."""
    return EvalTransform(pre)


def default_preprocessing(input_size: tuple[int, int] = (224, 224)) -> Preprocessing:
    """timm's defaults (crop_pct 0.875, bicubic, ImageNet mean/std): for an ONNX file that names no zoo model."""
    from csa_cli.manifest import Preprocessing

    return Preprocessing(input_size=input_size, crop_pct=0.875, interpolation="bicubic", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def open_image(path: str | Path) -> Image.Image:
    """Decode an image file fully (so a truncated file fails here, not later) as RGB."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError:
        raise CsaError(f"image not found: {path}", hint="check the path") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise CsaError(f"cannot read {path} as an image ({exc})", hint="give a JPEG/PNG/BMP/WebP/TIFF file") from None


def load_batch(paths: list[str | Path], pre: Preprocessing) -> torch.Tensor:
    """Images -> one NCHW batch, preprocessed as for eval."""
    import torch

    transform = build_transform(pre)
    return torch.stack([transform(open_image(p)) for p in paths])
