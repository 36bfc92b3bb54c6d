"""One epoch of training and one pass of validation, with timm's Mixup, losses and EMA.

Each micro-batch reseeds every RNG from (run seed, micro-batch index, rank) before Mixup and the
forward pass (drop path), so the random draws of a step do not depend on how the run got there:
an uninterrupted run and a resumed one take the same steps.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from csa_cli import events
from csa_cli.stages.train.data import derived_seed, seed_everything
from csa_cli.stages.train.distributed import any_rank

if TYPE_CHECKING:
    import torch
    from torch import nn

    from csa_cli.stages.train.distributed import World
    from csa_cli.stages.train.recipe import Recipe


@dataclass
class Parts:
    """What a training step touches."""

    model: nn.Module  # DDP-wrapped under torch.distributed
    raw: nn.Module  # the module itself (what is saved)
    optimizer: Any
    scheduler: Any
    scaler: Any
    criterion: Callable[..., torch.Tensor]
    recipe: Recipe
    world: World
    seed: int
    num_classes: int
    ema: Any = None
    mixup: Any = None
    teacher: nn.Module | None = None
    autocast: Callable[[], Any] = field(default=contextlib.nullcontext)


@dataclass
class EpochResult:
    loss: float
    images: int
    seconds: float
    batches_done: int  # micro-batches of this epoch trained on (all of them unless stopped)
    stopped: bool


def make_criterion(recipe: Recipe) -> Callable[..., torch.Tensor]:
    """timm's losses: soft targets under mixup/cutmix (the smoothing is in the targets), else label smoothing."""
    import torch
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if recipe.mixup > 0 or recipe.cutmix > 0:
        return SoftTargetCrossEntropy()
    if recipe.label_smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=recipe.label_smoothing)
    return torch.nn.CrossEntropyLoss()


def make_mixup(recipe: Recipe, num_classes: int) -> Any:
    if recipe.mixup <= 0 and recipe.cutmix <= 0:
        return None
    from timm.data import Mixup

    return Mixup(mixup_alpha=recipe.mixup, cutmix_alpha=recipe.cutmix, label_smoothing=recipe.label_smoothing, num_classes=num_classes)


def distill_term(student: torch.Tensor, teacher: torch.Tensor, recipe: Recipe) -> torch.Tensor:
    """The teacher's part of the loss: KL between softened distributions (soft, Hinton et al.) or CE on its argmax (hard, DeiT)."""
    import torch.nn.functional as F

    if recipe.distill == "hard":
        return F.cross_entropy(student, teacher.argmax(dim=1))
    tau = recipe.distill_tau
    log_s, log_t = F.log_softmax(student / tau, dim=1), F.log_softmax(teacher / tau, dim=1)
    return F.kl_div(log_s, log_t, reduction="batchmean", log_target=True) * (tau * tau)


def step_loss(parts: Parts, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The loss of one micro-batch (mixup, criterion, and the teacher's term when there is a teacher)."""
    import torch

    if parts.mixup is not None:
        images, targets = parts.mixup(images, targets)
    with parts.autocast():
        logits = parts.model(images)
        loss = parts.criterion(logits, targets)
        if parts.teacher is not None:
            with torch.no_grad():
                teacher_logits = parts.teacher(images)
            alpha = parts.recipe.distill_alpha
            loss = (1 - alpha) * loss + alpha * distill_term(logits.float(), teacher_logits.float(), parts.recipe)
    return loss


def set_train_mode(model: nn.Module, freeze_bn: bool) -> None:
    """train(), with BatchNorm kept in eval mode when the recipe freezes it."""
    from torch.nn.modules.batchnorm import _BatchNorm

    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                m.eval()


def train_epoch(parts: Parts, loader: Any, *, epoch: int, first_batch: int, batches: int, stop: Callable[[], bool], max_steps: int | None) -> EpochResult:
    """Micro-batches first_batch..batches of this epoch; an optimizer step every grad_accum_steps of them.

    Long because accumulation, DDP's no_sync, AMP, the scheduler, EMA and the stop check all
    happen per step, in this order; splitting them would scatter the one order that must hold.
    """
    import torch

    recipe, world = parts.recipe, parts.world
    accum = recipe.grad_accum_steps
    set_train_mode(parts.model, recipe.freeze_bn)
    device = torch.device(world.device)
    total_loss, seen, done, stopped = 0.0, 0, first_batch, False
    start = time.perf_counter()
    with events.progress(f"epoch {epoch + 1}/{recipe.epochs}", batches - first_batch, unit="batches") as bar:
        for images, targets in loader:
            seed_everything(derived_seed(parts.seed, epoch * batches + done, world.rank))
            images = images.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            if recipe.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            last_micro = (done + 1) % accum == 0
            sync = contextlib.nullcontext() if last_micro or not world.distributed else parts.model.no_sync()  # type: ignore[operator]
            with sync:
                loss = step_loss(parts, images, targets)
                parts.scaler.scale(loss / accum).backward()
            total_loss += float(loss.detach())
            seen += images.shape[0]
            done += 1
            bar.advance()
            if last_micro:
                if recipe.clip_grad:
                    parts.scaler.unscale_(parts.optimizer)
                    torch.nn.utils.clip_grad_norm_(parts.raw.parameters(), recipe.clip_grad)
                parts.scaler.step(parts.optimizer)
                parts.scaler.update()
                parts.optimizer.zero_grad(set_to_none=True)
                step = (epoch * batches + done) // accum
                parts.scheduler.step_update(num_updates=step)
                if parts.ema is not None:
                    parts.ema.update(parts.raw, step=step)
                if any_rank(world, stop()) and done < batches:
                    stopped = True  # a scheduler's signal: the caller checkpoints and exits
                    break
                if max_steps is not None and step >= max_steps:
                    break
            if done >= batches:
                break
    micro = max(done - first_batch, 1)
    return EpochResult(total_loss / micro, seen * world.size, time.perf_counter() - start, done, stopped)


def evaluate(model: nn.Module, loader: Any, device: str, channels_last: bool) -> tuple[float, float]:
    """(top-1, top-5) in percent (as `csa eval` reports them), in eval mode, fp32."""
    import torch

    was_training = model.training
    model.eval()
    top1 = top5 = total = 0
    with torch.no_grad():
        for images, targets in loader:
            images, targets = images.to(device), targets.to(device)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            logits = model(images).float()
            k = min(5, logits.shape[1])
            best = logits.topk(k, dim=1).indices
            hits = best == targets[:, None]
            top1 += int(hits[:, 0].sum())
            top5 += int(hits.any(dim=1).sum())
            total += targets.shape[0]
    model.train(was_training)
    return 100.0 * top1 / max(total, 1), 100.0 * top5 / max(total, 1)
