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


class _ResizeShortSideKeepRatio:
    """Non-square targets: scale so the image covers the target, keeping the aspect ratio (timm ResizeKeepRatio, longest=0)."""

    def __init__(self, size: tuple[int, int], interpolation: Any) -> None:
        self.size = size
        self.interpolation = interpolation

    def __call__(self, img: Image.Image) -> Image.Image:
        from torchvision.transforms import functional as F

        img_h, img_w = F.get_dimensions(img)[1:]
        ratio = min(img_h / self.size[0], img_w / self.size[1])
        return F.resize(img, [round(img_h / ratio), round(img_w / ratio)], self.interpolation)


class EvalTransform:
    """PIL image (any mode) -> normalized CHW float32 tensor, per the entry's preprocessing."""

    def __init__(self, pre: Preprocessing) -> None:
        from torchvision import transforms
        from torchvision.transforms import InterpolationMode

        self.pre = pre
        self.input_size = tuple(pre.input_size)
        self.scale_size = scale_size(pre.input_size, pre.crop_pct)
        interp = InterpolationMode(pre.interpolation)
        resize: Any
        if self.scale_size[0] == self.scale_size[1]:
            # torchvision's shortest-edge Resize, exactly as timm builds it for a square target
            resize = transforms.Resize(self.scale_size[0], interpolation=interp)
        else:
            resize = _ResizeShortSideKeepRatio(self.scale_size, interp)
        self._ops = transforms.Compose(
            [resize, transforms.CenterCrop(self.input_size), transforms.ToTensor(), transforms.Normalize(mean=list(pre.mean), std=list(pre.std))]
        )

    def __call__(self, img: Image.Image) -> torch.Tensor:
        if img.mode != "RGB":  # grayscale, CMYK, palette and RGBA photos exist in ImageNet val
            img = img.convert("RGB")
        return self._ops(img)

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
