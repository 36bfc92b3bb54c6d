"""Training recipes: named presets of every setting, each overridable by its own option.

`imagenet` is the reference recipe NVIDIA trained csa-tiny with (ConvNeXt's: shared/reference/
csa-architecture.md; ConvNeXt's main.py defaults `--lr 4e-3` at batch 4096, `--warmup_epochs 20`,
`--drop_path 0.1`, `--smoothing 0.1`, `--mixup 0.8 --cutmix 1.0`, `--aa rand-m9-mstd0.5-inc1`,
`--reprob 0.25`, `--model_ema`): the learning rate scales linearly from 4e-3 at a global batch of
4096 to the actual one. `finetune` starts from trained weights (a smaller rate, short warmup, no
mixup). `small` is for small data sets (no scaling, no long warmup, mixup or EMA).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from csa_cli.errors import UsageError

RecipeName = Literal["imagenet", "finetune", "small"]


class Recipe(BaseModel):
    """Every setting of a run; `lr` is the resolved rate (base_lr scaled to the global batch where base_batch is set)."""

    model_config = ConfigDict(extra="forbid")

    name: RecipeName
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1, description="images per process and step")
    grad_accum_steps: int = Field(default=1, ge=1)
    base_lr: float = Field(gt=0)
    base_batch: int | None = Field(description="the global batch base_lr is given for; None: no scaling")
    lr: float | None = Field(default=None, gt=0, description="the rate used; None until resolved")
    opt: str = "adamw"
    weight_decay: float = Field(ge=0)
    sched: str = "cosine"
    warmup_epochs: float = Field(ge=0)
    warmup_lr: float = 1e-6
    min_lr: float = 1e-6
    clip_grad: float | None = None
    drop_path: float = Field(ge=0, lt=1)
    label_smoothing: float = Field(ge=0, lt=1)
    mixup: float = Field(ge=0)
    cutmix: float = Field(ge=0)
    auto_augment: str | None = Field(description="timm's RandAugment spec, or None")
    reprob: float = Field(ge=0, le=1, description="random erasing probability")
    hflip: float = Field(ge=0, le=1)
    affine: bool = Field(description="a light random affine (rotation, shift, scale) instead of RandomResizedCrop")
    crop_pct: float | None = Field(default=None, gt=0, le=1, description="eval crop; None: the zoo entry's")
    ema: bool
    ema_decay: float = Field(default=0.9999, gt=0, lt=1)
    amp: bool = Field(description="autocast (bf16) and a grad scaler on CUDA; ignored on CPU")
    sync_bn: bool = Field(description="SyncBatchNorm under DDP on CUDA")
    channels_last: bool = True
    freeze_bn: bool = Field(default=False, description="BatchNorm layers stay in eval mode (running statistics frozen)")
    distill: Literal["soft", "hard"] = "soft"
    distill_alpha: float = Field(default=0.5, ge=0, le=1, description="weight of the teacher's term")
    distill_tau: float = Field(default=1.0, gt=0, description="softmax temperature of soft distillation")


PRESETS: dict[str, dict[str, Any]] = {
    "imagenet": dict(
        epochs=300,
        batch_size=128,
        base_lr=4e-3,
        base_batch=4096,
        weight_decay=0.05,
        warmup_epochs=20,
        drop_path=0.1,
        label_smoothing=0.1,
        mixup=0.8,
        cutmix=1.0,
        auto_augment="rand-m9-mstd0.5-inc1",
        reprob=0.25,
        hflip=0.5,
        affine=False,
        ema=True,
        ema_decay=0.9999,
        amp=True,
        sync_bn=True,
    ),
    "finetune": dict(
        epochs=30,
        batch_size=64,
        base_lr=1e-4,
        base_batch=512,
        weight_decay=0.05,
        warmup_epochs=2,
        drop_path=0.1,
        label_smoothing=0.1,
        mixup=0.0,
        cutmix=0.0,
        auto_augment="rand-m9-mstd0.5-inc1",
        reprob=0.25,
        hflip=0.5,
        affine=False,
        ema=True,
        ema_decay=0.9998,
        amp=True,
        sync_bn=True,
    ),
    # the reference for small data: AdamW 2e-3, wd 0.05, cosine with 15 % warmup, smoothing 0.1, light affine
    "small": dict(
        epochs=5,
        batch_size=64,
        base_lr=2e-3,
        base_batch=None,
        weight_decay=0.05,
        warmup_epochs=0.75,
        drop_path=0.0,
        label_smoothing=0.1,
        mixup=0.0,
        cutmix=0.0,
        auto_augment=None,
        reprob=0.0,
        hflip=0.0,
        affine=True,
        crop_pct=1.0,
        ema=False,
        amp=True,
        sync_bn=False,
    ),
}
SMALL_WARMUP_FRACTION = 0.15


def default_recipe(weights: str | None) -> RecipeName:
    """finetune when starting from weights, else the reference recipe."""
    return "finetune" if weights not in (None, "", "random") else "imagenet"


def build_recipe(name: str, overrides: dict[str, Any], *, world_size: int) -> Recipe:
    """The preset with the given (non-None) overrides, its learning rate resolved for `world_size` processes."""
    if name not in PRESETS:
        raise UsageError(f"unknown recipe '{name}'", hint=f"use one of {', '.join(PRESETS)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    settings = {**PRESETS[name], **given}
    if name == "small" and "warmup_epochs" not in given:
        settings["warmup_epochs"] = round(SMALL_WARMUP_FRACTION * settings["epochs"], 4)
    try:
        recipe = Recipe(name=name, **settings)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        option = "--" + str(first["loc"][0]).replace("_", "-")
        raise UsageError(f"{option}: {first['msg']}", hint="see csa train --help") from None
    if recipe.lr is None:
        global_batch = recipe.batch_size * recipe.grad_accum_steps * world_size
        scale = global_batch / recipe.base_batch if recipe.base_batch else 1.0
        recipe = recipe.model_copy(update={"lr": recipe.base_lr * scale})
    return recipe


def global_batch(recipe: Recipe, world_size: int) -> int:
    return recipe.batch_size * recipe.grad_accum_steps * world_size


def same_run(saved: dict[str, Any], current: Recipe) -> list[str]:
    """The settings in which a resume folder's recipe differs from this run's (epochs may grow)."""
    now = current.model_dump(mode="json")
    return sorted(k for k in set(saved) | set(now) if k != "epochs" and saved.get(k) != now.get(k))
