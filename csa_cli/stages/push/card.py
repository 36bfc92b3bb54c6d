"""The model card (README.md) of a pushed checkpoint: YAML metadata with a model-index, and the text.

The metadata goes through huggingface_hub's own ModelCardData / EvalResult (repocard_data.py), so
the `model-index` block is the one the Hub parses into its results widget. The text says what
the weights are (NVIDIA's CSA architecture), what was measured and how, the preprocessing, the
recipe, the intended use and the dataset's terms, and how to load the weights with timm and csa.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from csa_cli.manifest import Preprocessing
from csa_cli.models.checkpoint import CheckpointMeta

ARCHITECTURE_SOURCE = "NVIDIA technical blog, 'Emulating the Attention Mechanism in Transformer Models with a Fully Convolutional Network' (Jan 2024)"
IMAGENET_TERMS = (
    "ImageNet's terms of access (https://image-net.org/download.php): non-commercial research and educational use;"
    " weights trained on it are commonly released for research only"
)


class CardFacts(BaseModel):
    """Everything the card states, gathered by the push stage."""

    model_config = ConfigDict(extra="forbid")

    repo: str
    model: str = Field(description="the zoo model the weights are for (csa-nano, ...)")
    architecture: str = Field(description="timm's architecture name (csa_nano, ...)")
    meta: CheckpointMeta
    preprocessing: Preprocessing
    license: str
    dataset: str | None = Field(default=None, description="the training data: a Hub dataset id or a name")
    params_m: float
    has_ema: bool = False


def _pct(value: float) -> str:
    return f"{value:.2f} %"


def _results(facts: CardFacts) -> list[tuple[str, str, float]]:
    """(metric name, weights, value in percent): val top-1/top-5 as `csa train` measured them (percent in the checkpoint)."""
    meta = facts.meta
    found = (("top-1 accuracy", "raw", meta.val_top1), ("top-5 accuracy", "raw", meta.val_top5), ("top-1 accuracy", "EMA", meta.val_top1_ema))
    return [(name, weights, round(float(value), 4)) for name, weights, value in found if value is not None]


def card_metadata(facts: CardFacts) -> Any:
    """huggingface_hub's ModelCardData: license, library, tags, datasets, metrics, and the model-index."""
    from huggingface_hub import EvalResult, ModelCardData

    dataset = facts.dataset or "custom"
    results = [
        EvalResult(
            task_type="image-classification",
            task_name="Image Classification",
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split="validation",
            metric_type="accuracy",
            metric_name=f"{name} ({weights} weights)",
            metric_value=value,
            metric_config="top5" if "top-5" in name else "top1",
        )
        for name, weights, value in _results(facts)
    ]
    return ModelCardData(
        license=facts.license,
        library_name="timm",
        pipeline_tag="image-classification",
        tags=["image-classification", "timm", "csa", "convolutional-self-attention", "tensorrt", "nvidia-drive-orin"],
        datasets=[facts.dataset] if facts.dataset else None,
        metrics=["accuracy"],
        model_name=facts.repo.split("/")[-1],
        eval_results=results or None,
    )


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def _recipe_rows(recipe: dict[str, Any] | None) -> list[list[str]]:
    if not recipe:
        return [["(not recorded)", "the checkpoint carries no recipe"]]
    return [[str(k), f"`{v}`"] for k, v in sorted(recipe.items())]


def card_text(facts: CardFacts) -> str:
    """README.md: the YAML front matter, then the card's sections.

    Long because it is the card's whole text: one template read top to bottom, as the Hub shows it.
    """
    from huggingface_hub import ModelCard

    meta, pre = facts.meta, facts.preprocessing
    classes = meta.num_classes or 0
    names = meta.class_names or []
    results = _results(facts)
    h, w = pre.input_size
    resize = int(h / pre.crop_pct)
    dataset = facts.dataset or "a dataset the checkpoint does not name"
    measured = (
        _table(["metric", "weights", "value"], [[name, weights, _pct(value)] for name, weights, value in results])
        if results
        else "No accuracy was recorded in the checkpoint (it was not trained by `csa train`, or had no validation set)."
    )
    shown_names = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
    files = "File: `model.safetensors`."
    if facts.has_ema:
        files = "Files: `model.safetensors` (the raw weights) and `model_ema.safetensors` (their exponential moving average)."
    terms = IMAGENET_TERMS if "imagenet" in dataset.lower() else f"the terms of use of {dataset}, which the user of these weights must check and follow"
    body = f"""
# {facts.repo.split("/")[-1]}

A **Convolutional Self-Attention (CSA)** image classifier: `{facts.architecture}`, {facts.params_m:.2f} M parameters,
{classes} classes, trained on {dataset}. The architecture is NVIDIA's CSA ({ARCHITECTURE_SOURCE}): a
transformer-like backbone built only from operators that TensorRT's restricted (safety) mode accepts
(Conv, BatchNorm, Sigmoid, Mul, Add, Reshape, Transpose, Resize, AveragePool), for NVIDIA DRIVE Orin.
These weights were made and published with the `csa` command-line tool (`csa train`, `csa push`).

## Results

{measured}

How they were measured: by `csa train`, on its validation set ({dataset}, split `validation`), at the
end of training, in PyTorch FP32, with the eval preprocessing below; top-1 is the percentage of
images whose highest-scoring class is the label, top-5 whether the label is among the five highest.
`csa eval {meta.model} --weights model.safetensors --dataset VAL_DIR` reproduces them; exporting and
quantizing (`csa export`, `csa quantize`) and evaluating again measures what INT8 costs.

## Preprocessing

{
        _table(
            ["step", "value"],
            [
                ["resize", f"shorter side to {resize} ({pre.interpolation}): input size / crop_pct {pre.crop_pct}"],
                ["center crop", f"{h} x {w}"],
                ["normalize", f"mean {list(pre.mean)}, std {list(pre.std)} (RGB, 0-1)"],
            ],
        )
    }

`config.json` carries the same as timm's `pretrained_cfg`, so `timm.data.resolve_data_config` and
`create_transform` rebuild it.

## Training

{_table(["setting", "value"], _recipe_rows(meta.recipe))}

Dataset fingerprint (sha256 of the training set's file list): `{meta.dataset_fingerprint or "not recorded"}`.
Classes (index order): {shown_names or "not recorded"}.
{files}

## How to use

With timm: the CSA architectures are registered in timm's model registry by csa's model file, so import it first:

```python
import timm
import csa_cli.models.csa  # registers csa_nano, csa_tiny, csa_small with timm

model = timm.create_model("hf-hub:{facts.repo}", pretrained=True).eval()
```

timm's `train.py` / `validate.py` run on it with that import added at their top and
`--model hf-hub:{facts.repo}`. With csa, the manifest entry `csa push` printed makes it a zoo model:
`csa pull NAME`, then `csa eval / export / quantize / engine NAME`.

## Intended use

Image classification over the {classes} classes above, and as a backbone (`features_only=True`) for
detection or segmentation heads; measuring accuracy, INT8 loss and latency of CSA on NVIDIA GPUs and
DRIVE Orin. Not validated for any safety-critical decision: check it on the data it will see.

## Dataset terms

The weights derive from {dataset}; they carry {terms}.
"""
    return str(ModelCard(f"---\n{card_metadata(facts).to_yaml()}\n---\n{body}"))
