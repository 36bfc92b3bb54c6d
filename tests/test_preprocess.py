"""Preprocessing equals timm's eval transform, on real photos, for the zoo's settings."""

from __future__ import annotations

import pickle

import pytest
import torch
from PIL import Image

from csa_cli.data.preprocess import build_transform, default_preprocessing, load_batch, scale_size
from csa_cli.manifest import Preprocessing, load_manifest
from tests.fixtures.images import load_photo

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera")


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    import skimage.data

    # full-size photos (no downscaling here): square, landscape, a grayscale one; plus a tiny
    # portrait image (upscaled, odd sizes) and a palette image
    images = [Image.fromarray(getattr(skimage.data, name)()) for name in PHOTOS]
    images.append(Image.fromarray(skimage.data.chelsea()[40:113:, 100:151]))  # 73 x 51, portrait
    images.append(Image.fromarray(skimage.data.coffee()).convert("P"))
    return images


def _timm_transform(pre: Preprocessing):
    from timm.data import create_transform, resolve_data_config

    cfg = resolve_data_config(
        {"input_size": (3, *pre.input_size), "crop_pct": pre.crop_pct, "interpolation": pre.interpolation, "mean": pre.mean, "std": pre.std}
    )
    return create_transform(**cfg)


@pytest.mark.parametrize(("zoo_name", "timm_tag"), [("convnext-tiny", "convnext_tiny.fb_in1k"), ("swin-tiny", "swin_tiny_patch4_window7_224.ms_in1k")])
def test_zoo_preprocessing_equals_timm_pretrained_config(zoo_name: str, timm_tag: str, photos: list[Image.Image]) -> None:
    import timm
    from timm.data import create_transform, resolve_data_config

    pre = load_manifest().get(zoo_name).preprocessing
    # timm's own data config for the pinned weights, at the train size (the seed compares at 224)
    cfg = resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg(timm_tag).to_dict())
    assert (pre.crop_pct, pre.interpolation, tuple(pre.mean), tuple(pre.std)) == (cfg["crop_pct"], cfg["interpolation"], cfg["mean"], cfg["std"])
    assert (3, *pre.input_size) == cfg["input_size"]
    theirs, ours = create_transform(**cfg), build_transform(pre)
    for img in photos:
        expected = theirs(img.convert("RGB"))  # timm's dataset loader converts to RGB before its transform
        got = ours(img)
        assert got.shape == (3, *pre.input_size)
        assert got.dtype == torch.float32
        assert torch.max(torch.abs(got - expected)).item() <= 1e-6


@pytest.mark.parametrize(
    "pre",
    [
        Preprocessing(input_size=(224, 224), crop_pct=0.95, interpolation="bilinear", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        Preprocessing(input_size=(256, 256), crop_pct=1.0, interpolation="nearest", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
        Preprocessing(input_size=(224, 320), crop_pct=0.875, interpolation="bicubic", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
        Preprocessing(input_size=(320, 224), crop_pct=0.9, interpolation="bilinear", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    ],
    ids=["bilinear-0.95", "nearest-1.0", "224x320", "320x224"],
)
def test_other_settings_equal_timm(pre: Preprocessing, photos: list[Image.Image]) -> None:
    theirs, ours = _timm_transform(pre), build_transform(pre)
    for img in photos[:3]:
        diff = torch.max(torch.abs(ours(img) - theirs(img.convert("RGB")))).item()
        assert diff <= 1e-6


def test_resize_target_is_floor_of_size_over_crop_pct() -> None:
    assert scale_size((224, 224), 0.875) == (256, 256)
    assert scale_size((224, 224), 0.9) == (248, 248)
    assert scale_size((224, 320), 0.875) == (256, 365)
    assert build_transform(default_preprocessing()).scale_size == (256, 256)


def test_one_picklable_object_for_eval_calibration_and_predict(tmp_path) -> None:
    pre = load_manifest().get("convnext-tiny").preprocessing
    transform = build_transform(pre)
    clone = pickle.loads(pickle.dumps(transform))  # DataLoader workers receive a pickled copy
    photo = load_photo("chelsea", 200)
    path = tmp_path / "cat.png"
    Image.fromarray(photo).save(path)
    batch = load_batch([path, path], pre)  # predict's path
    assert batch.shape == (2, 3, 224, 224)
    assert torch.equal(batch[0], transform(Image.open(path)))
    assert torch.equal(clone(Image.open(path)), transform(Image.open(path)))
    # normalized with the entry's mean/std: undoing it gives back pixel values in [0, 1]
    mean, std = torch.tensor(pre.mean).view(3, 1, 1), torch.tensor(pre.std).view(3, 1, 1)
    pixels = batch[0] * std + mean
    assert float(pixels.min()) >= -1e-6 and float(pixels.max()) <= 1 + 1e-6
    assert float(batch[0].min()) < 0  # and the normalized tensor itself is not in [0, 1]


def test_unreadable_image_is_a_clear_error(tmp_path) -> None:
    from csa_cli.data.preprocess import open_image
    from csa_cli.errors import CsaError

    bad = tmp_path / "broken.JPEG"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(CsaError, match=r"cannot read .*broken\.JPEG as an image") as unreadable:
        open_image(bad)
    assert unreadable.value.hint == "give a JPEG/PNG/BMP/WebP/TIFF file"
    with pytest.raises(CsaError, match="image not found") as missing:
        open_image(tmp_path / "missing.png")
    assert missing.value.hint == "check the path"


# sizes whose padding is odd on one side or both (where centring by rounding and by halving differ), one side only, none
@pytest.mark.parametrize("size", [(9, 7), (40, 30), (5, 12), (3, 12), (12, 4), (13, 6), (3, 4)])
def test_centre_crop_larger_than_the_image_pads_with_zeros_as_torchvision(size: tuple[int, int]) -> None:
    """An image smaller than the crop (a rounding edge of the cover resize) is padded as torchvision's CenterCrop does."""
    import numpy as np
    from torchvision.transforms import CenterCrop

    from csa_cli.data.preprocess import EvalTransform

    pixels = np.random.default_rng(0).integers(1, 256, (size[1], size[0], 3), dtype=np.uint8)  # no zeros: padding shows
    img = Image.fromarray(pixels)
    transform = EvalTransform(Preprocessing(input_size=(11, 10), crop_pct=1.0, interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3))
    ours, theirs = transform._centre_crop(img), CenterCrop((11, 10))(img)
    assert ours.size == theirs.size == (10, 11)
    assert np.array_equal(np.asarray(ours), np.asarray(theirs))


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_eval_transform_is_bit_exact_with_torchvision(interpolation: str, photos: list[Image.Image]) -> None:
    """Resize, CenterCrop, ToTensor and Normalize written on PIL and numpy give torchvision's float32 values bit for bit."""
    from torchvision import transforms as T

    pre = Preprocessing(input_size=(224, 224), crop_pct=0.875, interpolation=interpolation, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    mode = {"bicubic": T.InterpolationMode.BICUBIC, "bilinear": T.InterpolationMode.BILINEAR}[interpolation]
    theirs = T.Compose([T.Resize(256, interpolation=mode), T.CenterCrop(224), T.ToTensor(), T.Normalize(pre.mean, pre.std)])
    ours = build_transform(pre)
    for img in photos[:3]:
        assert torch.equal(ours(img), theirs(img.convert("RGB")))


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK"])
def test_open_image_gives_rgb_whatever_the_file_holds(mode: str, tmp_path) -> None:
    from csa_cli.data.preprocess import open_image

    path = tmp_path / ("img.jpg" if mode == "CMYK" else "img.png")
    Image.new("RGB", (6, 5), (200, 100, 50)).convert(mode).save(path)
    img = open_image(path)
    assert img.mode == "RGB" and img.size == (6, 5)
