"""`csa train MODEL --dataset DIR --output DIR`: train or fine-tune a zoo model (one "train" record).

With --nproc-per-node N this process is torchrun's elastic launcher: N workers run the same
command, and this process prints their final record. Every recipe setting is an option whose
default is the recipe's (shown by --recipe).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from csa_cli.cli import options
from csa_cli.cli.common import stage_command
from csa_cli.cli.options import examples
from csa_cli.console import Output, table

if TYPE_CHECKING:
    from csa_cli.records import Record

EXAMPLES = examples(
    (
        "small data, 5 epochs at 96 px (csa-nano reaches 99 % on digits)",
        "csa train csa-nano --dataset ~/imagenet/val --output run --recipe small --epochs 5 --img-size 96",
    ),
    ("continue that run where a scheduler's SIGTERM / SIGUSR1 stopped it", "csa train csa-nano --dataset ~/imagenet/val --output run --recipe small --resume"),
    ("distil a ConvNeXt into a CSA model", "csa train csa-tiny --dataset ~/imagenet/val --output distil --teacher convnext-tiny:pretrained --distill soft"),
)


def render_train(record: Record) -> object:
    rows: list[list[Any]] = []
    for name in ("model", "path", "ema_path", "recipe", "epochs", "world_size", "num_classes", "val_top1", "val_top5", "val_top1_ema", "metrics", "curves"):
        value = record.field(name)
        if value is None:
            continue
        if name.startswith("val_") and isinstance(value, float):
            value = f"{value:.2f} %"
        rows.append([name, value])
    return table(f"csa train: {record.model}", ["field", "value"], rows)


def register(app: typer.Typer) -> None:
    """Add `csa train`.

    Long because the command declares every recipe setting as an option of its own.
    """

    @app.command("train", short_help="Train or fine-tune a model on an ImageFolder.", epilog=EXAMPLES)
    @stage_command("train")
    def train(
        out: Output,
        model: str = typer.Argument(..., metavar="MODEL", help="A zoo model (see `csa list`).", show_default=False),
        dataset: str | None = options.DATASET(None, shown="none: required, the training images (one folder per class)"),
        val_dataset: str | None = typer.Option(
            None, "--val-dataset", metavar="DATASET", help="Validation images, the same classes. Default: none (no validation).", show_default=False
        ),
        output: Path | None = typer.Option(
            None, "--output", metavar="DIR", help="The run's folder (weights, metrics, checkpoints). Required.", show_default=False
        ),
        data_dir: str | None = options.DATA_DIR(),
        recipe: str | None = typer.Option(
            None,
            "--recipe",
            metavar="NAME",
            help="imagenet (the reference recipe) | finetune | small. Default: finetune with --weights, else imagenet.",
            show_default=False,
        ),
        epochs: int | None = typer.Option(None, "--epochs", metavar="N", help="Epochs. Default: the recipe's (300, 30, 5).", show_default=False),
        img_size: str | None = options.IMG_SIZE(),
        batch_size: int | None = options.BATCH_SIZE(None, shown="the recipe's, per process (128, 64, 64)"),
        grad_accum_steps: int | None = typer.Option(
            None, "--grad-accum-steps", metavar="N", help="Micro-batches per optimizer step. Default: 1.", show_default=False
        ),
        lr: float | None = typer.Option(
            None, "--lr", metavar="LR", help="Learning rate. Default: the recipe's, scaled to the global batch (4e-3 at 4096 for imagenet).", show_default=False
        ),
        weight_decay: float | None = typer.Option(None, "--weight-decay", metavar="WD", help="AdamW weight decay. Default: 0.05.", show_default=False),
        opt: str | None = typer.Option(None, "--opt", metavar="NAME", help="timm optimizer name. Default: adamw.", show_default=False),
        sched: str | None = typer.Option(None, "--sched", metavar="NAME", help="timm scheduler name, stepped per update. Default: cosine.", show_default=False),
        warmup_epochs: float | None = typer.Option(
            None,
            "--warmup-epochs",
            metavar="N",
            help="Warmup epochs (fractions allowed). Default: the recipe's (20, 2, 15 % of the epochs).",
            show_default=False,
        ),
        min_lr: float | None = typer.Option(None, "--min-lr", metavar="LR", help="The cosine's floor. Default: 1e-6.", show_default=False),
        clip_grad: float | None = typer.Option(None, "--clip-grad", metavar="NORM", help="Clip the gradient norm. Default: no clipping.", show_default=False),
        drop_path: float | None = typer.Option(
            None, "--drop-path", metavar="P", help="Stochastic depth rate. Default: the recipe's (0.1, 0.1, 0).", show_default=False
        ),
        label_smoothing: float | None = typer.Option(None, "--label-smoothing", metavar="E", help="Label smoothing. Default: 0.1.", show_default=False),
        mixup: float | None = typer.Option(
            None, "--mixup", metavar="ALPHA", help="Mixup alpha (0: off). Default: the recipe's (0.8, 0, 0).", show_default=False
        ),
        cutmix: float | None = typer.Option(
            None, "--cutmix", metavar="ALPHA", help="CutMix alpha (0: off). Default: the recipe's (1.0, 0, 0).", show_default=False
        ),
        aa: str | None = typer.Option(
            None,
            "--aa",
            metavar="SPEC",
            help="timm RandAugment spec, or none. Default: rand-m9-mstd0.5-inc1 (imagenet, finetune), none (small).",
            show_default=False,
        ),
        reprob: float | None = typer.Option(
            None, "--reprob", metavar="P", help="Random erasing probability. Default: the recipe's (0.25, 0.25, 0).", show_default=False
        ),
        hflip: float | None = typer.Option(
            None, "--hflip", metavar="P", help="Horizontal flip probability. Default: the recipe's (0.5, 0.5, 0).", show_default=False
        ),
        affine: bool | None = typer.Option(
            None, "--affine/--no-affine", help="A light random affine instead of RandomResizedCrop. Default: on for small.", show_default=False
        ),
        crop_pct: float | None = typer.Option(
            None, "--crop-pct", metavar="F", help="Eval centre-crop fraction. Default: the model's (small: 1.0).", show_default=False
        ),
        ema: bool | None = typer.Option(None, "--ema/--no-ema", help="Model EMA (timm ModelEmaV3). Default: on, off for small.", show_default=False),
        ema_decay: float | None = typer.Option(None, "--ema-decay", metavar="D", help="EMA decay. Default: the recipe's (0.9999, 0.9998).", show_default=False),
        amp: bool | None = typer.Option(None, "--amp/--no-amp", help="Mixed precision (fp16 autocast, grad scaler) on CUDA. Default: on.", show_default=False),
        sync_bn: bool | None = typer.Option(
            None, "--sync-bn/--no-sync-bn", help="SyncBatchNorm under DDP on CUDA. Default: on, off for small.", show_default=False
        ),
        channels_last: bool | None = typer.Option(
            None, "--channels-last/--no-channels-last", help="channels_last memory format. Default: on.", show_default=False
        ),
        freeze_bn: bool | None = typer.Option(
            None, "--freeze-bn/--no-freeze-bn", help="Keep BatchNorm in eval mode (statistics frozen). Default: off.", show_default=False
        ),
        weights: str | None = options.WEIGHTS(
            None, shown="none: random initialisation; pretrained or PATH fine-tunes, with a new head for the dataset's classes"
        ),
        teacher: str | None = typer.Option(
            None, "--teacher", metavar="MODEL[:WEIGHTS]", help="Distil from this zoo model (weights: pretrained or PATH). Default: none.", show_default=False
        ),
        distill: str | None = typer.Option(
            None, "--distill", metavar="MODE", help="soft (KL at a temperature) | hard (the teacher's argmax). Default: soft.", show_default=False
        ),
        resume: bool = typer.Option(False, "--resume", help="Continue the run in --output from its last checkpoint.", show_default=False),
        seed: int = typer.Option(0, "--seed", metavar="N", help="Seed of initialisation, order and augmentation. Default: 0.", show_default=False),
        device: str = options.DEVICE(),
        workers: int = typer.Option(2, "--workers", metavar="N", help="DataLoader worker processes for validation. Default: 2.", show_default=False),
        max_steps: int | None = typer.Option(
            None, "--max-steps", metavar="N", help="Stop after N optimizer steps (a smoke test). Default: all epochs.", show_default=False
        ),
        nproc_per_node: int | None = typer.Option(
            None,
            "--nproc-per-node",
            metavar="N",
            help="Launch N worker processes here (torchrun's elastic launcher). Default: train in this process.",
            show_default=False,
        ),
        nnodes: int = typer.Option(1, "--nnodes", metavar="N", help="Nodes in all, with --nproc-per-node. Default: 1.", show_default=False),
        node_rank: int = typer.Option(0, "--node-rank", metavar="N", help="This node's rank. Default: 0.", show_default=False),
        rdzv_endpoint: str | None = typer.Option(
            None, "--rdzv-endpoint", metavar="HOST:PORT", help="Rendezvous of several nodes. Default: this node.", show_default=False
        ),
        register: str | None = typer.Option(
            None,
            "--register",
            metavar="NAME",
            help="Add the trained weights to the user manifest as NAME (see --manifest). Default: no entry.",
            show_default=False,
        ),
        manifest: Path | None = options.MANIFEST(),
    ) -> None:
        """Train MODEL on an ImageFolder (from scratch, or fine-tuned from --weights), validated each epoch, resumable.

        Long because every recipe setting is an option of its own; the body hands them to csa_cli.api.train.
        """
        given = {k: v for k, v in locals().items() if k != "out"}  # the options, by the names api.train takes
        from csa_cli.api.training import reports_run, train

        record = train(**given)
        if record.field("node_rank") or not reports_run():
            return  # rank 0 (its node, or our launcher) prints the record
        out.emit(record, lambda: render_train(record))  # type: ignore[arg-type,return-value]
