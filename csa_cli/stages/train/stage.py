"""`train_stage`: a zoo model trained (or fine-tuned) on an ImageFolder, resumable, on one process or torchrun's workers.

    record = train_stage("csa-nano", dataset="train/", val_dataset="val/", output="run/", recipe="small", overrides={"epochs": 5})

Rank 0 validates, writes metrics.jsonl, curves.png, the resume state and the final
model.safetensors (+ model_ema.safetensors) with the checkpoint metadata `csa eval --weights` uses.
SIGTERM and SIGUSR1 (a cluster scheduler's warning) save the state at the next step and stop.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from csa_cli import events
from csa_cli.errors import UsageError
from csa_cli.paths import atomic_path
from csa_cli.records import Record, make_record
from csa_cli.stages.train.records import CONFIG_FILE, CURVE_FILE, EMA_FILE, METRICS_FILE, MODEL_FILE, RESULT_FILE, EpochMetrics, ResumeState, RunConfig

if TYPE_CHECKING:
    from csa_cli.data.datasets import LabeledDataset
    from csa_cli.manifest import Preprocessing
    from csa_cli.stages.train.distributed import World
    from csa_cli.stages.train.loop import Parts
    from csa_cli.stages.train.recipe import Recipe


class _StopFlag:
    """Set by SIGTERM / SIGUSR1; the loop checks it after each optimizer step."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self) -> bool:
        return self.signal is not None


@contextlib.contextmanager
def _catch_signals(flag: _StopFlag) -> Iterator[None]:
    def handler(signum: int, _frame: Any) -> None:
        flag.signal = signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _open_data(dataset: str, val_dataset: str | None, data_dir: str | None) -> tuple[LabeledDataset, LabeledDataset | None]:
    from csa_cli.stages.pull.dataset import open_dataset
    from csa_cli.stages.train.data import check_classes

    train = open_dataset(dataset, data_dir)
    val = open_dataset(val_dataset, data_dir) if val_dataset else None
    check_classes(train, val)
    return train, val


def _prepare_output(output: Path, resume: bool) -> ResumeState | None:
    from csa_cli.stages.train.state import read_state

    state = read_state(output) if output.is_dir() else None
    if resume and state is None:
        raise UsageError(f"--resume: {output} holds no training state", hint="start without --resume, or give the --output of an earlier run")
    if not resume and output.exists() and any(output.iterdir()):
        raise UsageError(f"{output} is not empty", hint="continue that run with --resume, or give a new --output")
    return state


def _save_metrics(output: Path, history: list[EpochMetrics]) -> None:
    from csa_cli.stages.train.plot import plot_curves

    with atomic_path(output / METRICS_FILE) as tmp:
        tmp.write_text("".join(m.model_dump_json() + "\n" for m in history), encoding="utf-8")
    plot_curves(history, output / CURVE_FILE)


def _read_metrics(output: Path, epochs_done: int) -> list[EpochMetrics]:
    path = output / METRICS_FILE
    if not path.is_file():
        return []
    lines = [EpochMetrics.model_validate_json(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [m for m in lines if m.epoch <= epochs_done]


def _state_tensors(parts: Parts) -> dict[str, Any]:
    import torch

    return {
        "model": parts.raw.state_dict(),
        "ema": parts.ema.module.state_dict() if parts.ema is not None else {},
        "optimizer": parts.optimizer.state_dict(),
        "scaler": parts.scaler.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),  # the per-step reseeding makes it redundant; kept for anything outside the loop
    }


def _restore(parts: Parts, tensors: dict[str, Any]) -> None:
    import torch

    parts.raw.load_state_dict(tensors["model"])
    if parts.ema is not None:
        parts.ema.module.load_state_dict(tensors["ema"])
    parts.optimizer.load_state_dict(tensors["optimizer"])
    parts.scaler.load_state_dict(tensors["scaler"])
    parts.scheduler.load_state_dict(tensors["scheduler"])
    torch.set_rng_state(tensors["torch_rng"])


def _final_weights(parts: Parts, output: Path, model: str, meta: dict[str, Any]) -> tuple[Path, Path | None]:
    from csa_cli.models.checkpoint import save_checkpoint

    raw = save_checkpoint(parts.raw, output / MODEL_FILE, model, source="csa train", **meta)
    ema = save_checkpoint(parts.ema.module, output / EMA_FILE, model, source="csa train (EMA weights)", **meta) if parts.ema is not None else None
    return raw, ema


def _validate(parts: Parts, loader: Any) -> tuple[float | None, float | None, float | None]:
    from csa_cli.stages.train.loop import evaluate

    if loader is None:
        return None, None, None
    top1, top5 = evaluate(parts.raw, loader, parts.world.device, parts.recipe.channels_last)
    top1_ema = evaluate(parts.ema.module, loader, parts.world.device, parts.recipe.channels_last)[0] if parts.ema is not None else None
    return top1, top5, top1_ema


def train_stage(
    model: str,
    *,
    dataset: str,
    output: str | os.PathLike[str],
    val_dataset: str | None = None,
    data_dir: str | None = None,
    recipe: str | None = None,
    overrides: dict[str, Any] | None = None,
    img_size: tuple[int, int] | None = None,
    weights: str | None = None,
    teacher: str | None = None,
    resume: bool = False,
    seed: int = 0,
    device: str = "auto",
    workers: int = 2,
    max_steps: int | None = None,
    manifest: str | os.PathLike[str] | None = None,
) -> Record:
    """Train `model` on `dataset` into `output`; a "train" record (stopped=True when a signal stopped it, resumable)."""
    from csa_cli.stages.train.distributed import close_world, init_world

    world = init_world(device)
    quiet = contextlib.nullcontext() if world.is_main else events.listening(lambda _event: None)  # rank 0 speaks for all
    try:
        with quiet:
            return _train(world, model, dataset=dataset, output=Path(output).expanduser().resolve(), val_dataset=val_dataset, data_dir=data_dir,
                          recipe_name=recipe,
                          overrides=overrides or {}, img_size=img_size, weights=weights, teacher=teacher, resume=resume, seed=seed,
                          workers=workers, max_steps=max_steps, manifest=manifest)  # fmt: skip
    finally:
        close_world(world)


def _train(world: World, model: str, *, output: Path, recipe_name: str | None, overrides: dict[str, Any], **options: Any) -> Record:
    """Long because it is the run's one sequence: data, recipe, resume checks, parts, then the epochs (each step in its helper)."""
    from csa_cli.stages.train import data
    from csa_cli.stages.train.distributed import barrier
    from csa_cli.stages.train.recipe import global_batch

    train_ds, val_ds, recipe, state = _checked_inputs(model, output, recipe_name, overrides, world.size, options)
    fingerprint = train_ds.info.fingerprint
    barrier(world)  # every rank has checked before rank 0 writes
    seed = int(options["seed"])
    data.seed_everything(seed)  # the same initial weights on every rank and in every run with this seed
    parts, entry, weights_label = _build_parts(world, model, recipe, train_ds.info.num_classes, seed, options)
    pre = _preprocessing(entry, options["img_size"], recipe)
    images = data.SeededImages(train_ds.samples, data.train_transform(recipe, pre), seed)
    sampler = data.ResumableSampler(len(images), batch_size=recipe.batch_size, rank=world.rank, world_size=world.size, seed=seed)
    updates = sampler.batches_per_epoch // recipe.grad_accum_steps
    if updates < 1:
        raise UsageError(
            f"{len(images)} training images do not fill one global batch of {global_batch(recipe, world.size)}", hint="lower --batch-size or --grad-accum-steps"
        )
    from csa_cli.stages.train.setup import optimizer_and_schedule

    parts.optimizer, parts.scheduler = optimizer_and_schedule(parts.raw, recipe, updates)
    val_loader = data.eval_loader(val_ds.samples, pre, recipe.batch_size, options["workers"]) if val_ds is not None and world.is_main else None
    epoch, batches_done, history = 0, 0, []
    if state is not None:
        from csa_cli.stages.train.state import load_tensors

        _restore(parts, load_tensors(output))
        epoch, batches_done, history = state.epoch, state.batches_done, _read_metrics(output, state.epoch)
        events.info(f"resuming {output}: epoch {epoch + 1}, {batches_done} of {updates * recipe.grad_accum_steps} batches done, step {state.global_step}")
    base = ResumeState(model=model, recipe=recipe.model_dump(mode="json"), seed=seed, world_size=world.size, dataset_fingerprint=fingerprint,
                       num_classes=train_ds.info.num_classes, epoch=epoch, batches_done=batches_done, global_step=0)  # fmt: skip
    if world.is_main:
        _write_config(output, model, recipe, world, train_ds, pre, options)
        events.info(
            f"training {model} on {len(images)} images ({train_ds.info.num_classes} classes), recipe {recipe.name}: lr {recipe.lr:.3g}, "
            f"global batch {global_batch(recipe, world.size)}, {recipe.epochs} epochs, {world.size} process(es) on {world.device}"
        )
    flag = _StopFlag()
    with _catch_signals(flag):
        stopped = _epochs(parts, output, base, images, sampler, val_loader, history, flag=flag, updates=updates, max_steps=options["max_steps"])
    if stopped is not None:
        return stopped
    return _finish(parts, output, model, base, history, train_ds, pre, weights_label)


def _checked_inputs(
    model: str, output: Path, recipe_name: str | None, overrides: dict[str, Any], world_size: int, options: dict[str, Any]
) -> tuple[LabeledDataset, LabeledDataset | None, Recipe, ResumeState | None]:
    """The data, the recipe and the resume state, each checked: every bad input fails here, before a model is built."""
    from csa_cli.stages.train.recipe import build_recipe, default_recipe
    from csa_cli.stages.train.state import check_resumable

    train_ds, val_ds = _open_data(options["dataset"], options["val_dataset"], options["data_dir"])
    recipe = build_recipe(recipe_name or default_recipe(options["weights"]), overrides, world_size=world_size)
    state = _prepare_output(output, options["resume"])
    if state is not None:
        check_resumable(state, model=model, recipe=recipe, world_size=world_size, fingerprint=train_ds.info.fingerprint, output=output)
    return train_ds, val_ds, recipe, state


def preflight(model: str, *, output: str | os.PathLike[str], recipe: str | None, overrides: dict[str, Any], world_size: int, **options: Any) -> None:
    """What the launcher checks before it starts workers, so that a bad input is one Error line, not one per process."""
    from csa_cli.manifest import load_manifest

    load_manifest(options.get("manifest")).get(model)
    _checked_inputs(model, Path(output).expanduser().resolve(), recipe, overrides, world_size, options)


def _build_parts(world: World, model: str, recipe: Recipe, num_classes: int, seed: int, options: dict[str, Any]) -> tuple[Parts, Any, str | None]:
    from csa_cli.stages.train import setup
    from csa_cli.stages.train.loop import Parts, make_criterion, make_mixup

    module, entry, weights_label = setup.build_student(model, options["weights"], num_classes, recipe, options["manifest"])
    module = setup.wrap_for_world(module, recipe, world)
    autocast, scaler = setup.amp_parts(recipe, world.device)
    teacher = setup.build_teacher(options["teacher"], num_classes, world.device, options["manifest"]) if options["teacher"] else None
    parts = Parts(model=setup.ddp(module, world), raw=module, optimizer=None, scheduler=None, scaler=scaler, criterion=make_criterion(recipe),
                  recipe=recipe, world=world, seed=seed, num_classes=num_classes, ema=setup.make_ema(module, recipe),
                  mixup=make_mixup(recipe, num_classes), teacher=teacher, autocast=autocast)  # fmt: skip
    return parts, entry, weights_label


def _preprocessing(entry: Any, img_size: tuple[int, int] | None, recipe: Recipe) -> Preprocessing:
    from csa_cli.stages.train.setup import run_preprocessing

    return run_preprocessing(entry, img_size, recipe)


def _write_config(output: Path, model: str, recipe: Recipe, world: World, train_ds: LabeledDataset, pre: Preprocessing, options: dict[str, Any]) -> None:
    from csa_cli.stages.train.recipe import global_batch

    config = RunConfig(model=model, dataset=options["dataset"], val_dataset=options["val_dataset"], weights=options["weights"],
                       teacher=options["teacher"], recipe=recipe.model_dump(mode="json"), seed=int(options["seed"]), world_size=world.size,
                       global_batch=global_batch(recipe, world.size), device=world.device, class_names=train_ds.class_names,
                       preprocessing=pre.model_dump(mode="json"))  # fmt: skip
    with atomic_path(output / CONFIG_FILE) as tmp:
        tmp.write_text(config.model_dump_json(indent=2), encoding="utf-8")


def _epochs(
    parts: Parts, output: Path, base: ResumeState, images: Any, sampler: Any, val_loader: Any, history: list[EpochMetrics], *, flag: _StopFlag,
    updates: int, max_steps: int | None,
) -> Record | None:  # fmt: skip
    """Epoch after epoch from the saved position; a stop record when a signal came, None when the run completed."""
    from csa_cli.stages.train.data import train_loader
    from csa_cli.stages.train.distributed import barrier
    from csa_cli.stages.train.loop import train_epoch
    from csa_cli.stages.train.state import save_state

    recipe, world = parts.recipe, parts.world
    batches = updates * recipe.grad_accum_steps
    epoch, first = base.epoch, base.batches_done
    while epoch < recipe.epochs:
        sampler.start(epoch, first)
        images.epoch = epoch
        result = train_epoch(parts, train_loader(images, sampler, recipe.batch_size, 0), epoch=epoch, first_batch=first, batches=batches,
                             stop=flag, max_steps=max_steps)  # fmt: skip
        step = (epoch * batches + result.batches_done) // recipe.grad_accum_steps
        if result.stopped:
            if world.is_main:
                save_state(output, base.model_copy(update={"epoch": epoch, "batches_done": result.batches_done, "global_step": step}), _state_tensors(parts))
            barrier(world)
            return _stop_record(output, base.model, flag, epoch, result.batches_done, step, world.is_main)
        if world.is_main:
            top1, top5, top1_ema = _validate(parts, val_loader)
            lr = float(parts.optimizer.param_groups[0]["lr"])
            history.append(EpochMetrics(epoch=epoch + 1, train_loss=_mean_loss(result.loss, world), val_top1=top1, val_top5=top5,
                                        val_top1_ema=top1_ema, lr=lr, images_per_s=result.images / max(result.seconds, 1e-9),
                                        epoch_s=result.seconds))  # fmt: skip
            _save_metrics(output, history)
            save_state(output, base.model_copy(update={"epoch": epoch + 1, "batches_done": 0, "global_step": step}), _state_tensors(parts))
            events.info(_epoch_line(history[-1], recipe.epochs))
        else:
            _mean_loss(result.loss, world)
        barrier(world)
        epoch, first = epoch + 1, 0
        if flag() and epoch < recipe.epochs:
            return _stop_record(output, base.model, flag, epoch, 0, step, world.is_main)
        if max_steps is not None and step >= max_steps:
            break
    return None


def _mean_loss(loss: float, world: World) -> float:
    if not world.distributed:
        return loss
    import torch
    import torch.distributed as dist

    value = torch.tensor([loss], device=world.device if world.device.startswith("cuda") else "cpu")
    dist.all_reduce(value)
    return float(value.item()) / world.size


def _epoch_line(m: EpochMetrics, epochs: int) -> str:
    val = f", val top-1 {m.val_top1:.2f} %" if m.val_top1 is not None else ""
    ema = f" (EMA {m.val_top1_ema:.2f} %)" if m.val_top1_ema is not None else ""
    return f"epoch {m.epoch}/{epochs}: loss {m.train_loss:.4f}{val}{ema}, {m.images_per_s:.1f} images/s, {m.epoch_s:.1f} s"


def _stop_record(output: Path, model: str, flag: _StopFlag, epoch: int, batches_done: int, step: int, main: bool) -> Record:
    name = signal.Signals(flag.signal).name if flag.signal is not None else "a signal"
    events.warn(f"{name}: training state saved at epoch {epoch + 1}, batch {batches_done}, step {step}; continue with --resume")
    record = make_record("train", model=model, output=str(output), stopped=True, signal=name, epoch=epoch + 1, batches_done=batches_done, step=step)
    if main:  # the launcher reports it
        _write_result(output, record)
    return record


def _write_result(output: Path, record: Record) -> None:
    with atomic_path(output / RESULT_FILE) as tmp:
        tmp.write_text(record.to_json() + "\n", encoding="utf-8")


def _finish(
    parts: Parts, output: Path, model: str, base: ResumeState, history: list[EpochMetrics], train_ds: LabeledDataset, pre: Preprocessing,
    weights_label: str | None,
) -> Record:  # fmt: skip
    """The final weights with their metadata (rank 0), the finished state, and the record."""
    last = history[-1] if history else None
    meta = {
        "class_names": train_ds.class_names,
        "preprocessing": pre,
        "recipe": base.recipe,
        "dataset_fingerprint": base.dataset_fingerprint,
        "val_top1": last.val_top1 if last else None,
        "val_top5": last.val_top5 if last else None,
        "val_top1_ema": last.val_top1_ema if last else None,
    }
    raw, ema = output / MODEL_FILE, (output / EMA_FILE if parts.ema is not None else None)
    if parts.world.is_main:
        raw, ema = _final_weights(parts, output, model, {k: v for k, v in meta.items() if v is not None})
        state_json = output / "checkpoint" / "state.json"
        done = ResumeState.model_validate_json(state_json.read_text(encoding="utf-8")).model_copy(update={"finished": True})
        with atomic_path(state_json) as tmp:
            tmp.write_text(done.model_dump_json(indent=2), encoding="utf-8")
    record = make_record(
        "train", model=model, path=str(raw), weights=str(raw), ema_path=str(ema) if ema else None, output=str(output), recipe=base.recipe["name"],
        epochs=len(history), world_size=base.world_size, num_classes=base.num_classes, val_top1=meta["val_top1"], val_top5=meta["val_top5"],
        val_top1_ema=meta["val_top1_ema"], metrics=str(output / METRICS_FILE), curves=str(output / CURVE_FILE), init_weights=weights_label,
    )  # fmt: skip
    if parts.world.is_main:
        _write_result(output, record)
    return record


def read_result(output: Path) -> Record:
    """The record rank 0 left in `output` (what the launcher prints)."""
    from csa_cli.records import parse_record

    return parse_record((output / RESULT_FILE).read_text(encoding="utf-8").strip())


def register_run(record: Record, name: str, *, dataset: str | None, manifest: str | os.PathLike[str] | None) -> Record:
    """`--register NAME`: the run's weights as a user-manifest entry (push's local entry), so NAME works like any zoo model."""
    from csa_cli.manifest import register_entry
    from csa_cli.stages.push.entry import local_entry

    if not record.path:
        raise UsageError("--register: the run made no weights (it was stopped)", hint="continue it with --resume, then register")
    written = register_entry(name, local_entry(Path(record.path), manifest, dataset=dataset), manifest)
    events.info(f"registered {name} in {written}: `--weights pretrained` of {name} loads {record.path}")
    return record.with_fields(registered=name, manifest=str(written))
