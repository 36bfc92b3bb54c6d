"""`train`: train or fine-tune a zoo model on an ImageFolder (docs/training.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from csa_cli.api._common import OnEvent, _listening
from csa_cli.errors import CsaError, ExitCode, UsageError

if TYPE_CHECKING:
    from csa_cli.api._common import PathLike
    from csa_cli.records import Record


class Interrupted(CsaError):
    """A run stopped by a signal (a scheduler's SIGTERM / SIGUSR1): its state is saved, `resume=True` continues it."""

    exit_code = ExitCode.INTERRUPTED


def train(
    model: str,
    *,
    dataset: str | None = None,
    output: PathLike | None = None,
    val_dataset: str | None = None,
    data_dir: str | None = None,
    recipe: str | None = None,
    epochs: int | None = None,
    img_size: str | int | tuple[int, int] | None = None,
    batch_size: int | None = None,
    grad_accum_steps: int | None = None,
    lr: float | None = None,
    weight_decay: float | None = None,
    opt: str | None = None,
    sched: str | None = None,
    warmup_epochs: float | None = None,
    min_lr: float | None = None,
    clip_grad: float | None = None,
    drop_path: float | None = None,
    label_smoothing: float | None = None,
    mixup: float | None = None,
    cutmix: float | None = None,
    aa: str | None = None,
    reprob: float | None = None,
    hflip: float | None = None,
    affine: bool | None = None,
    crop_pct: float | None = None,
    ema: bool | None = None,
    ema_decay: float | None = None,
    amp: bool | None = None,
    sync_bn: bool | None = None,
    channels_last: bool | None = None,
    freeze_bn: bool | None = None,
    weights: str | None = None,
    teacher: str | None = None,
    distill: str | None = None,
    resume: bool = False,
    seed: int = 0,
    device: str = "auto",
    workers: int = 2,
    max_steps: int | None = None,
    nproc_per_node: int | None = None,
    nnodes: int = 1,
    node_rank: int = 0,
    rdzv_endpoint: str | None = None,
    register: str | None = None,
    manifest: PathLike | None = None,
    on_event: OnEvent = None,
) -> Record:
    """`csa train`: a "train" record (weights, EMA weights, metrics, val top-1) of `model` trained on `dataset`.

    Every recipe setting left None takes the recipe's value (`recipe`: imagenet, finetune, small).
    With `nproc_per_node` this process launches that many workers through torchrun's elastic
    launcher and returns rank 0's record. A run stopped by SIGTERM / SIGUSR1 raises Interrupted
    (exit 130) once its state is saved.

    Long because every recipe setting is a parameter of its own, as it is an option of the command.
    """
    from csa_cli.stages.export.stage import parse_img_size
    from csa_cli.stages.train import distributed
    from csa_cli.stages.train.stage import preflight, read_result, register_run, train_stage

    if not dataset:
        raise UsageError("csa train needs --dataset DIR (one folder per class)")
    if output is None:
        raise UsageError("csa train needs --output DIR (the run's folder)")
    if distill not in (None, "soft", "hard"):
        raise UsageError(f"--distill takes soft or hard, got {distill!r}")
    img_text = f"{img_size[0]}x{img_size[1]}" if isinstance(img_size, tuple) else (None if img_size is None else str(img_size))
    size = parse_img_size(img_text)
    given = dict(epochs=epochs, batch_size=batch_size, grad_accum_steps=grad_accum_steps, lr=lr, weight_decay=weight_decay, opt=opt,
                 sched=sched, warmup_epochs=warmup_epochs, min_lr=min_lr, clip_grad=clip_grad, drop_path=drop_path,
                 label_smoothing=label_smoothing, mixup=mixup, cutmix=cutmix, reprob=reprob, hflip=hflip, affine=affine, crop_pct=crop_pct,
                 ema=ema, ema_decay=ema_decay, amp=amp, sync_bn=sync_bn, channels_last=channels_last, freeze_bn=freeze_bn, distill=distill)  # fmt: skip
    settings: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if aa is not None:
        settings["auto_augment"] = None if aa.lower() == "none" else aa
    out_dir = Path(output)
    with _listening(on_event):
        if nproc_per_node is not None and not distributed.is_worker():
            argv = worker_argv(model, dataset=dataset, val_dataset=val_dataset, output=out_dir, data_dir=data_dir, recipe=recipe,
                               img_size=img_text, weights=weights, teacher=teacher, resume=resume, seed=seed, device=device, workers=workers,
                               max_steps=max_steps, manifest=manifest, aa=aa, **{k: v for k, v in settings.items() if k != "auto_augment"})  # fmt: skip
            distributed.check_launch(nproc_per_node, distributed.resolve_device(device))
            preflight(model, output=out_dir, recipe=recipe, overrides=settings, world_size=nproc_per_node * nnodes, dataset=dataset,
                      val_dataset=val_dataset, data_dir=data_dir, weights=weights, resume=resume, manifest=manifest)  # fmt: skip
            distributed.launch(argv, nproc=nproc_per_node, nnodes=nnodes, node_rank=node_rank, rdzv_endpoint=rdzv_endpoint, device=device)
            if node_rank != 0:  # rank 0 ran on node 0, which reports the run: this node's record says only that
                from csa_cli.records import Record

                return Record(kind="train", model=model, node_rank=node_rank, reported_by="node 0")  # type: ignore[call-arg]
            record = read_result(out_dir)  # rank 0 ran on this node and left its record in the output folder
        else:
            record = train_stage(model, dataset=dataset, output=out_dir, val_dataset=val_dataset, data_dir=data_dir, recipe=recipe,
                                 overrides=settings, img_size=size, weights=weights, teacher=teacher, resume=resume, seed=seed, device=device,
                                 workers=workers, max_steps=max_steps, manifest=manifest)  # fmt: skip
            if not reports_run():
                return record  # a worker whose launcher reports the run: no error, no registration here
        if record.field("stopped"):
            raise Interrupted(
                f"stopped by {record.field('signal')} at epoch {record.field('epoch')}: the state is saved",
                hint="continue with the same command and --resume",
            )
        if register:
            record = register_run(record, register, dataset=dataset, manifest=manifest)
        return record


def reports_run() -> bool:
    """Whether this process reports the run: not a worker, or the worker our launcher (or plain torchrun's rank 0) reads."""
    from csa_cli.stages.train import distributed

    return not distributed.is_worker() or distributed.prints_record()


# recipe option -> its flag pair: the workers get the same settings on their command line
_BOOL_FLAGS = {"ema": "--ema/--no-ema", "amp": "--amp/--no-amp", "sync_bn": "--sync-bn/--no-sync-bn", "channels_last": "--channels-last/--no-channels-last",
               "affine": "--affine/--no-affine", "freeze_bn": "--freeze-bn/--no-freeze-bn"}  # fmt: skip


def worker_argv(model: str, **given: Any) -> list[str]:
    """The workers' command line: every option given here, spelled as on the command line."""
    argv = [model]
    for name, value in given.items():
        if value is None or (value is False and name not in _BOOL_FLAGS):
            continue
        if name in _BOOL_FLAGS:
            on, off = _BOOL_FLAGS[name].split("/")
            argv.append(on if value else off)
        elif value is True:
            argv.append("--" + name.replace("_", "-"))
        else:
            argv += ["--" + name.replace("_", "-"), os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
    return argv
