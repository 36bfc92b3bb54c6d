"""Building what a run trains: the model (fresh, or from weights with a new head), its preprocessing, optimizer, schedule, EMA, teacher."""

from __future__ import annotations

import contextlib
import functools
import os
from typing import TYPE_CHECKING, Any

from csa_cli import events
from csa_cli.errors import CsaError

if TYPE_CHECKING:
    from torch import nn

    from csa_cli.manifest import ModelEntry, Preprocessing
    from csa_cli.stages.train.distributed import World
    from csa_cli.stages.train.recipe import Recipe


def _drop_path_kwargs(entry: ModelEntry, rate: float) -> dict[str, Any]:
    # CSA and timm builders take drop_path_rate; transformers' configs name it per model, so it is left to them
    return {"drop_path_rate": rate} if rate > 0 and entry.architecture.builder in ("csa", "timm") else {}


def build_student(
    model: str, weights: str | None, num_classes: int, recipe: Recipe, manifest: str | os.PathLike[str] | None
) -> tuple[nn.Module, ModelEntry, str | None]:
    """(module in train mode, entry as the weights see it, weights label): random init, or weights with the head replaced for num_classes."""
    import torch

    from csa_cli.manifest import load_manifest
    from csa_cli.models.factory import build_from_entry
    from csa_cli.stages.pull.weights import entry_for_weights, load_model

    entry = load_manifest(manifest).get(model)
    kwargs = _drop_path_kwargs(entry, recipe.drop_path)
    if weights in (None, "", "random"):
        return build_from_entry(entry, num_classes, **kwargs).train(), entry, None
    loaded = load_model(entry, weights, manifest=manifest)
    entry = entry_for_weights(entry, weights)
    head = getattr(loaded.module, "num_classes", entry.num_classes)
    module = build_from_entry(entry, head, **kwargs)  # the recipe's drop path is set at construction
    module.load_state_dict(loaded.module.state_dict())
    if head != num_classes:
        reset = getattr(module, "reset_classifier", None)
        if reset is None:
            raise CsaError(f"{model} cannot replace its classifier for {num_classes} classes", hint="train it from scratch (no --weights)")
        with torch.random.fork_rng():
            reset(num_classes)
        events.info(f"{entry.name}: {head}-class head replaced by a new {num_classes}-class one; the backbone keeps {loaded.weights}'s weights")
    return module.train(), entry, loaded.weights


def run_preprocessing(entry: ModelEntry, img_size: tuple[int, int] | None, recipe: Recipe) -> Preprocessing:
    """The eval preprocessing of this run (validation, and what the checkpoint records): the entry's at --img-size, the recipe's crop."""
    update: dict[str, Any] = {}
    if img_size is not None:
        update["input_size"] = img_size
    if recipe.crop_pct is not None:
        update["crop_pct"] = recipe.crop_pct
    return entry.preprocessing.model_copy(update=update)


def build_teacher(spec: str, num_classes: int, device: str, manifest: str | os.PathLike[str] | None) -> nn.Module:
    """`MODEL[:WEIGHTS]` in eval mode on `device`; its head must predict the dataset's classes."""
    from csa_cli.stages.pull.weights import load_model

    name, _, weights = spec.partition(":")
    loaded = load_model(name, weights or None, manifest=manifest)
    classes = getattr(loaded.module, "num_classes", None)
    if classes is not None and classes != num_classes:
        raise CsaError(
            f"teacher {name} predicts {classes} classes, the dataset has {num_classes}",
            hint="give a teacher trained on these classes: --teacher MODEL:PATH (e.g. a `csa train` checkpoint)",
        )
    for p in loaded.module.parameters():
        p.requires_grad_(False)
    return loaded.module.eval().to(device)


def optimizer_and_schedule(module: nn.Module, recipe: Recipe, updates_per_epoch: int) -> tuple[Any, Any]:
    """timm's optimizer factory (no weight decay on norms and biases) and its step-wise scheduler."""
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    optimizer = create_optimizer_v2(module, opt=recipe.opt, lr=recipe.lr, weight_decay=recipe.weight_decay)
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched=recipe.sched,
        num_epochs=recipe.epochs,
        warmup_epochs=recipe.warmup_epochs,  # type: ignore[arg-type]  # timm multiplies it by updates_per_epoch: fractions work
        warmup_lr=recipe.warmup_lr,
        min_lr=recipe.min_lr,
        step_on_epochs=False,
        updates_per_epoch=updates_per_epoch,
    )
    scheduler.step_update(0)  # the warmup's first rate, before the first step
    return optimizer, scheduler


def wrap_for_world(module: nn.Module, recipe: Recipe, world: World) -> nn.Module:
    """To the device (channels_last), SyncBatchNorm under DDP on CUDA, then DistributedDataParallel."""
    import torch

    if world.distributed and recipe.sync_bn and world.device.startswith("cuda"):
        module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
    module.to(world.device)
    if recipe.channels_last:
        module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return module


def ddp(module: nn.Module, world: World) -> nn.Module:
    if not world.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[world.local_rank] if world.device.startswith("cuda") else None)


def amp_parts(recipe: Recipe, device: str) -> tuple[Any, Any]:
    """(autocast factory, grad scaler): fp16 autocast with a scaler on CUDA when the recipe asks for AMP; plain fp32 elsewhere."""
    import torch

    on = recipe.amp and device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda" if on else "cpu", enabled=on)
    autocast = functools.partial(torch.autocast, "cuda", dtype=torch.float16) if on else contextlib.nullcontext
    return autocast, scaler


def make_ema(module: nn.Module, recipe: Recipe) -> Any:
    if not recipe.ema:
        return None
    from timm.utils import ModelEmaV3

    return ModelEmaV3(module, decay=recipe.ema_decay)
