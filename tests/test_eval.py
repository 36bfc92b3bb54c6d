"""csa eval / csa predict and the backends.

The exact-label tests use a model whose predictions are known in advance: a "colour oracle" that
finds the prototype colour nearest to an image's mean colour and answers a fixed score vector
for it. The generated images are photos tinted towards a chosen prototype, so the test knows,
before anything runs, which class each image will be predicted as and which 5 classes rank top.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from csa_cli.data import imagenet
from csa_cli.store import load_results
from tests.fixtures.images import PHOTO_SYNSETS, ImageItem, ImageSet, load_photo, make_image_set, tint, variants

# the oracle is exported with the TorchScript exporter: small, fast, and it handles ArgMin/Gather plainly
pytestmark = pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning")

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
COLOURS = [(225, 30, 30), (30, 225, 30), (30, 30, 225), (225, 225, 30), (225, 30, 225), (30, 225, 225)]
PHOTOS = list(PHOTO_SYNSETS)[:6]
CLASSES = [PHOTO_SYNSETS[p] for p in PHOTOS]  # class k has prototype colour k
SCORES = (10.0, 9.0, 8.0, 7.0, 6.0)  # prototype q ranks classes q, q+1, ..., q+4 (mod 6); class q+5 is out of its top-5
# per class k: three images tinted to k (top-1 hit), one to k-1 (top-5 hit only), one to k+1 (miss)
SHIFTS = (0, 0, 0, -1, +1)


class ColourOracle(nn.Module):
    """Mean colour -> nearest prototype q -> a fixed logit vector (1000 ImageNet classes, or `classes`)."""

    def __init__(self, class_indices: list[int], num_outputs: int = 1000) -> None:
        super().__init__()
        protos = (np.asarray(COLOURS, np.float64) / 255.0 - MEAN) / STD  # in the normalized space the model sees
        self.register_buffer("protos", torch.tensor(protos, dtype=torch.float32))
        table = torch.zeros(len(COLOURS), num_outputs)
        for q in range(len(COLOURS)):
            for rank, score in enumerate(SCORES):
                table[q, class_indices[(q + rank) % len(COLOURS)]] = score
        self.register_buffer("table", table)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3))
        dist = ((mean[:, None, :] - self.protos[None, :, :]) ** 2).sum(-1)
        return self.table[dist.argmin(dim=1)]


def _export(module: nn.Module, path: Path, batch: int | None) -> Path:
    x = torch.zeros(batch or 2, 3, 224, 224)
    dynamic = None if batch else {"input": {0: "batch"}, "logits": {0: "batch"}}
    torch.onnx.export(module, (x,), str(path), input_names=["input"], output_names=["logits"], dynamic_axes=dynamic, opset_version=17, dynamo=False)
    return path


def _design() -> list[ImageItem]:
    items = []
    for k, photo in enumerate(PHOTOS):
        for j, (shift, pixels) in enumerate(zip(SHIFTS, variants(load_photo(photo, 96), len(SHIFTS), seed=k), strict=True)):
            q = (k + shift) % len(COLOURS)
            items.append(ImageItem(synset=CLASSES[k], pixels=tint(pixels, COLOURS[q]), tag=str(q)))
            assert j < len(SHIFTS)
    return items


def _expected(items: list[ImageItem]) -> tuple[int, int]:
    """(top-1 hits, top-5 hits) from the design alone."""
    top1 = top5 = 0
    for it in items:
        k, q = CLASSES.index(it.synset), int(it.tag)
        top1 += k == q
        top5 += (k - q) % len(COLOURS) < len(SCORES)
    return top1, top5


@pytest.fixture(scope="module")
def oracle_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ImageSet]:
    return make_image_set(tmp_path_factory.mktemp("oracle"), _design())


@pytest.fixture(scope="module")
def oracle_onnx(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int | None], Path]:
    folder = tmp_path_factory.mktemp("oracle-onnx")
    index = imagenet.synset_index()
    module = ColourOracle([index[s] for s in CLASSES]).eval()
    cache: dict[int | None, Path] = {}

    def get(batch: int | None = None) -> Path:
        if batch not in cache:
            cache[batch] = _export(module, folder / f"oracle-b{batch or 'dyn'}.onnx", batch)
        return cache[batch]

    return get


def test_design_is_what_the_test_claims(oracle_sets: dict[str, ImageSet]) -> None:
    items = oracle_sets["folders"].items
    assert len(items) == 30
    assert _expected(items) == (18, 24)


@pytest.mark.parametrize("layout", ["folders", "flat-csv", "flat-txt"])
def test_exact_top1_top5_in_every_layout(layout: str, oracle_sets: dict[str, ImageSet], oracle_onnx, csa) -> None:
    image_set = oracle_sets[layout]
    result = csa("eval", str(oracle_onnx()), "--model", "test-convnext", "--data-dir", str(image_set.root), "--batch-size", "7", "--workers", "0")
    assert result.exit_code == 0, result.stderr
    rec = result.record
    top1, top5 = _expected(image_set.items)
    assert (rec["top1_correct"], rec["top5_correct"], rec["images"]) == (top1, top5, 30)
    assert rec["top1"] == pytest.approx(100 * top1 / 30) and rec["top5"] == pytest.approx(100 * top5 / 30)
    assert rec["kind"] == "eval" and rec["backend"] == "onnxruntime" and rec["precision"] == "fp32"
    assert rec["model"] == "test-convnext" and rec["dataset"] == "imagenet-val"
    assert rec["throughput"] > 0 and rec["dataset_fingerprint"]
    assert "images/s" in result.stderr  # progress on stderr
    stored = [r for r in load_results("eval", "test-convnext") if r.get("result_key") == rec["result_key"]]
    assert stored and stored[-1]["top1_correct"] == top1


def test_imagefolder_dir_limit_and_torch_backend(oracle_sets: dict[str, ImageSet]) -> None:
    """The core on the torch backend with DataLoader workers; --limit keeps the first N by file name."""
    from csa_cli.backends import open_backend
    from csa_cli.data.datasets import resolve_dataset
    from csa_cli.data.preprocess import build_transform
    from csa_cli.manifest import load_manifest
    from csa_cli.stages.evaluate.loop import run_eval

    image_set = oracle_sets["folders"]
    ds = resolve_dataset(str(image_set.val_dir), limit=11)
    index = imagenet.synset_index()
    backend = open_backend("torch", ColourOracle([index[s] for s in CLASSES]), device="cpu")
    metrics = run_eval(backend, ds, build_transform(load_manifest().get("test-convnext").preprocessing), model="oracle", batch_size=4, workers=2)
    first = sorted(image_set.items, key=lambda it: it.name)[:11]
    assert (metrics.top1_correct, metrics.top5_correct, metrics.images) == (*_expected(first), 11)


def test_static_batch_onnx_pads_and_splits(oracle_sets: dict[str, ImageSet], oracle_onnx, csa) -> None:
    image_set = oracle_sets["flat-csv"]
    result = csa("eval", str(oracle_onnx(4)), "--model", "test-convnext", "--data-dir", str(image_set.root), "--batch-size", "5", "--workers", "0")
    assert result.exit_code == 0, result.stderr
    assert (result.record["top1_correct"], result.record["top5_correct"]) == _expected(image_set.items)
    assert result.record["backend_info"]["static_batch"] == 4


def test_unreadable_and_non_image_files_are_counted(oracle_sets: dict[str, ImageSet], oracle_onnx, csa, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(oracle_sets["folders"].val_dir, root)
    cls = CLASSES[0]
    (root / cls / "ILSVRC2012_val_00000999.JPEG").write_bytes(b"\xff\xd8\xff truncated")
    (root / cls / "notes.txt").write_text("not an image")
    result = csa("eval", str(oracle_onnx()), "--model", "test-convnext", "--dataset", str(root), "--workers", "0")
    assert result.exit_code == 0, result.stderr
    rec = result.record
    assert rec["unreadable"] == 1 and rec["unreadable_files"][0].endswith("ILSVRC2012_val_00000999.JPEG")
    assert (rec["top1_correct"], rec["top5_correct"], rec["images"]) == (*_expected(oracle_sets["folders"].items), 30)
    assert "unreadable" in result.stderr and "non-image file" in result.stderr


def test_calibration_images_are_excluded(imagenet_photos: ImageSet, quantized_nano: dict[str, Any], csa, tmp_path: Path) -> None:
    """The quantize record's calibration images are left out of its evaluation, piped or from a record file."""
    val_dir = imagenet_photos.val_dir
    calib = {Path(p).resolve() for p in quantized_nano["calib_files"]}
    assert len(calib) == 5 and all(val_dir.resolve() in p.parents for p in calib)
    every = {(val_dir / it.synset / it.name).resolve() for it in imagenet_photos.items}
    predictions = tmp_path / "predictions.jsonl"
    args = ("eval", "--dataset", str(val_dir), "--workers", "0", "--predictions", str(predictions))
    result = csa(*args, input=json.dumps(quantized_nano) + "\n")
    assert result.exit_code == 0, result.stderr
    rec = result.record
    assert rec["excluded_calibration"] == 5 and rec["images"] == len(every) - 5 and rec["precision"] == quantized_nano["precision"]
    assert rec["weights"] == quantized_nano["weights"] == "random"
    evaluated = {Path(json.loads(line)["image"]).resolve() for line in predictions.read_text().splitlines()}
    assert evaluated == every - calib
    rec_file = tmp_path / "quantized.json"
    rec_file.write_text(json.dumps(quantized_nano))
    again = csa("eval", str(rec_file), "--dataset", str(val_dir), "--workers", "0")
    assert again.exit_code == 0, again.stderr
    assert again.record["excluded_calibration"] == 5 and again.record["top1_correct"] == rec["top1_correct"]


def test_min_top1(oracle_sets: dict[str, ImageSet], oracle_onnx, csa) -> None:
    args = ("eval", str(oracle_onnx()), "--model", "test-convnext", "--data-dir", str(oracle_sets["folders"].root), "--workers", "0", "--limit", "12")
    ok = csa(*args, "--min-top1", "10")
    assert ok.exit_code == 0, ok.stderr
    top1 = ok.record["top1"]
    below = csa(*args, "--min-top1", str(math.floor(top1) + 1))
    assert below.exit_code == 3
    assert "under --min-top1" in below.stderr
    assert below.records[0]["kind"] == "eval" and below.records[0]["top1"] == top1  # the numbers come first
    assert csa(*args, "--min-top1", "150").exit_code == 2


def test_predict_top5_names_and_probabilities(oracle_sets: dict[str, ImageSet], oracle_onnx, csa) -> None:
    item = next(it for it in oracle_sets["folders"].items if it.tag == "2")  # tinted to prototype 2
    image = oracle_sets["folders"].val_dir / item.synset / item.name
    result = csa("predict", str(oracle_onnx()), str(image), "--model", "test-convnext")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout.strip().splitlines()[-1])
    top = data["predictions"][0]["top"]
    index = imagenet.synset_index()
    assert [p["synset"] for p in top] == [CLASSES[(2 + r) % 6] for r in range(5)]
    assert top[0]["name"] == imagenet.class_names()[index[CLASSES[2]]]
    denom = sum(math.exp(s) for s in SCORES) + (1000 - len(SCORES)) * math.exp(0)
    assert [p["probability"] for p in top] == pytest.approx([math.exp(s) / denom for s in SCORES], rel=1e-5)


# --- torch and onnxruntime agree on real models ------------------------------------------------


@pytest.mark.parametrize("model", ["csa-nano", "test-convnext"])
def test_torch_and_onnxruntime_give_the_same_predictions(model: str, imagenet_photos: ImageSet, exported, csa) -> None:
    images = [str(p) for p in imagenet_photos.files[:6]]
    onnx_path = exported(model)  # static batch 1: the ORT backend splits the 6 images
    torch_run = csa("predict", model, *images, "--weights", "random", "--backend", "torch", "--device", "cpu")
    ort_run = csa("predict", str(onnx_path), *images, "--model", model)
    assert torch_run.exit_code == 0, torch_run.stderr
    assert ort_run.exit_code == 0, ort_run.stderr
    t, o = json.loads(torch_run.stdout.splitlines()[-1]), json.loads(ort_run.stdout.splitlines()[-1])
    assert t["backend"] == "torch" and o["backend"] == "onnxruntime" and t["weights"] == o["weights"] == "random"
    for a, b in zip(t["predictions"], o["predictions"], strict=True):
        assert a["top"][0]["index"] == b["top"][0]["index"]
        assert {p["index"] for p in a["top"]} == {p["index"] for p in b["top"]}
        assert [p["probability"] for p in a["top"]] == pytest.approx([p["probability"] for p in b["top"]], rel=1e-3, abs=1e-6)
    # not a degenerate model: different photos get different scores
    assert len({round(p["top"][0]["probability"], 6) for p in t["predictions"]}) > 1


def test_backends_logits_agree_and_static_batch_split(exported, imagenet_photos: ImageSet) -> None:
    from csa_cli.backends import open_backend
    from csa_cli.data.preprocess import load_batch
    from csa_cli.stages.pull.weights import load_model

    loaded = load_model("csa-nano", "random")
    batch = load_batch(imagenet_photos.files[:3], loaded.entry.preprocessing).numpy()
    torch_logits = open_backend("torch", loaded, device="cpu").run(batch)
    ort = open_backend("onnxruntime", exported("csa-nano"), threads=1)
    ort_logits = ort.run(batch)
    assert ort.describe()["static_batch"] == 1 and ort.describe()["provider"] == "CPUExecutionProvider"
    assert ort_logits.shape == torch_logits.shape == (3, 1000)
    assert np.max(np.abs(ort_logits - torch_logits)) / np.max(np.abs(torch_logits)) < 1e-4


# --- bad inputs --------------------------------------------------------------------------------


def test_bad_inputs(csa, oracle_onnx, tmp_path: Path, imagenet_photos: ImageSet) -> None:
    onnx_path = str(oracle_onnx())
    base = ("eval", onnx_path, "--model", "test-convnext", "--workers", "0")

    missing = csa(*base, "--dataset", str(tmp_path / "missing"))
    assert missing.exit_code == 1 and "dataset folder not found" in missing.stderr
    assert missing.record["kind"] == "error"

    empty = tmp_path / "empty"
    empty.mkdir()
    res = csa(*base, "--dataset", str(empty))
    assert res.exit_code == 1 and "no images found" in res.stderr

    flat = tmp_path / "flat"
    flat.mkdir()
    for f in imagenet_photos.files[:2]:
        shutil.copy(f, flat / f.name)
    res = csa(*base, "--dataset", str(flat))
    assert res.exit_code == 1 and "no class folders and no ground-truth file" in res.stderr and "Hint:" in res.stderr

    texts = tmp_path / "texts"
    (texts / "n01440764").mkdir(parents=True)
    (texts / "n01440764" / "a.txt").write_text("x")
    res = csa(*base, "--dataset", str(texts))
    assert res.exit_code == 1 and "no images found" in res.stderr

    three = tmp_path / "three"
    for k, name in enumerate(["apple", "mango", "zebra"]):
        (three / name).mkdir(parents=True)
        shutil.copy(imagenet_photos.files[k], three / name / "x.JPEG")
    res = csa(*base, "--dataset", str(three))
    assert res.exit_code == 1 and "has 3 class folders, but test-convnext has 1000 outputs" in res.stderr

    res = csa(*base, "--dataset", str(imagenet_photos.val_dir), "--limit", "0")
    assert res.exit_code == 2 and "--limit must be at least 1" in res.stderr
    res = csa(*base, "--dataset", str(imagenet_photos.val_dir), "--batch-size", "0")
    assert res.exit_code == 2
    res = csa(*base, "--dataset", str(imagenet_photos.val_dir), "--backend", "torch")
    assert res.exit_code == 2 and "runs on onnxruntime" in res.stderr
    res = csa(*base, "--dataset", "imagenet-train")
    assert res.exit_code == 2 and "unknown dataset" in res.stderr
    res = csa("eval", "no-such-model", "--dataset", str(imagenet_photos.val_dir))
    assert res.exit_code == 1 and "unknown model" in res.stderr

    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a protobuf")
    res = csa("eval", str(garbage), "--model", "test-convnext", "--dataset", str(imagenet_photos.val_dir))
    assert res.exit_code == 1 and "is not an ONNX model" in res.stderr

    res = csa("eval", str(oracle_onnx()), "--data-dir", str(tmp_path / "nowhere"), "--workers", "0")
    assert res.exit_code == 1 and "ImageNet folder not found" in res.stderr
    assert "names no zoo model" in res.stderr  # the bare ONNX fell back to the graph's size, with a warning


def test_head_smaller_than_imagenet(csa, tmp_path: Path, imagenet_photos: ImageSet) -> None:
    ten = _export(ColourOracle(list(range(6)), num_outputs=10).eval(), tmp_path / "ten.onnx", None)
    res = csa("eval", str(ten), "--dataset", str(imagenet_photos.val_dir), "--workers", "0")
    assert res.exit_code == 1 and "has 10 outputs, but" in res.stderr and "1000 ImageNet classes" in res.stderr
    # a 3-output graph (say, fine-tuned from a zoo model) on a 3-folder ImageFolder: the graph's head counts, not the entry's
    three = tmp_path / "three"
    for k, name in enumerate(["apple", "mango", "zebra"]):
        (three / name).mkdir(parents=True)
        shutil.copy(imagenet_photos.files[k], three / name / "x.JPEG")
    small = _export(ColourOracle([0, 1, 2, 0, 1, 2], num_outputs=3).eval(), tmp_path / "three.onnx", None)
    res = csa("eval", str(small), "--model", "test-convnext", "--dataset", str(three), "--workers", "0")
    assert res.exit_code == 0, res.stderr
    assert res.record["images"] == 3 and res.record["num_classes"] == 3 and res.record["top5"] == 100.0  # top-5 of 3 classes: all


def test_onnx_at_another_size_keeps_the_entry_preprocessing_at_that_size(csa, tmp_path: Path, oracle_sets: dict[str, ImageSet]) -> None:
    index = imagenet.synset_index()
    module = ColourOracle([index[s] for s in CLASSES]).eval()
    path = tmp_path / "oracle-160.onnx"
    torch.onnx.export(
        module, (torch.zeros(2, 3, 160, 128),), str(path), input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "b"}}, dynamo=False
    )
    res = csa("eval", str(path), "--model", "test-convnext", "--dataset", str(oracle_sets["folders"].val_dir), "--workers", "0")
    assert res.exit_code == 0, res.stderr
    assert res.record["preprocessing"]["input_size"] == [160, 128] and res.record["preprocessing"]["resize"] == [182, 146]
    assert (res.record["top1_correct"], res.record["top5_correct"]) == _expected(oracle_sets["folders"].items)


def test_engine_without_tensorrt_is_exit_4(csa, tmp_path: Path, imagenet_photos: ImageSet) -> None:
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here: the missing-backend path cannot be shown")
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\x00" * 64)
    res = csa("eval", str(engine), "--model", "test-convnext", "--dataset", str(imagenet_photos.val_dir), "--workers", "0")
    assert res.exit_code == 4 and "TensorRT" in res.stderr


def test_predict_bad_inputs(csa, tmp_path: Path, oracle_onnx) -> None:
    assert csa("predict", str(oracle_onnx()), "--model", "test-convnext").exit_code == 2
    bad = tmp_path / "bad.png"
    bad.write_text("no")
    res = csa("predict", str(oracle_onnx()), str(bad), "--model", "test-convnext")
    assert res.exit_code == 1 and "cannot read" in res.stderr


def test_fp16_on_the_cpu_is_a_missing_device(csa, imagenet_photos: ImageSet) -> None:
    res = csa("eval", "test-convnext", "--weights", "random", "--precision", "fp16", "--device", "cpu", "--dataset", str(imagenet_photos.val_dir))
    assert res.exit_code == 4 and "needs a CUDA GPU" in res.stderr


def test_fp16_on_onnxruntime_cpu_is_refused_not_recorded(oracle_sets: dict[str, ImageSet], oracle_onnx, csa, tmp_path: Path) -> None:
    """ONNX Runtime's CPU provider would run the graph in FP32: a record saying fp16 would name what did not run."""
    val = str(oracle_sets["folders"].val_dir)
    before = len(load_results("eval", "test-convnext"))
    res = csa("eval", str(oracle_onnx()), "--model", "test-convnext", "--precision", "fp16", "--dataset", val, "--workers", "0")
    assert res.exit_code == 2 and res.stderr.count("Error:") == 1, res.stderr
    assert "CPU provider runs FP32 kernels" in res.stderr and "FP16 figures come from CUDA" in res.stderr and "TensorRT" in res.stderr
    assert res.record["kind"] == "error" and len(load_results("eval", "test-convnext")) == before
    model = csa("eval", "test-convnext", "--weights", "random", "--backend", "onnxruntime", "--precision", "fp16", "--dataset", val)
    assert model.exit_code == 2 and "CPU provider runs FP32 kernels" in model.stderr  # refused before anything is exported
    image = str(oracle_sets["folders"].val_dir / oracle_sets["folders"].items[0].synset / oracle_sets["folders"].items[0].name)
    predicted = csa("predict", str(oracle_onnx()), image, "--model", "test-convnext", "--precision", "fp16")
    assert predicted.exit_code == 2 and "CPU provider runs FP32 kernels" in predicted.stderr
    int8 = csa("eval", str(oracle_onnx()), "--model", "test-convnext", "--precision", "int8", "--dataset", val, "--workers", "0")
    assert int8.exit_code == 2 and "holds no Q/DQ nodes" in int8.stderr


@pytest.mark.parametrize(
    ("requested", "quantized", "device", "expected"),
    [
        (None, False, "cpu", "fp32"),
        ("fp32", False, "cuda:0", "fp32"),
        (None, True, "cpu", "int8"),
        ("fp32", True, "cpu", "int8"),  # a Q/DQ graph runs INT8 whatever was asked: the record says so
        ("mixed", True, "cpu", "mixed"),
        ("fp16", False, "cpu", "CPU provider runs FP32 kernels"),
        ("fp16", False, "cuda:0", "this one is FP32"),
        ("fp16", True, "cuda:0", "this one is Q/DQ INT8"),
        ("int8", False, "cpu", "holds no Q/DQ nodes"),
        ("bf16", False, "cpu", "unknown precision"),
    ],
)
def test_onnxruntime_records_the_precision_that_runs(requested: str | None, quantized: bool, device: str, expected: str) -> None:
    from csa_cli.backends.onnxruntime_backend import onnxruntime_precision
    from csa_cli.errors import UsageError

    if expected in ("fp32", "int8", "mixed"):
        assert onnxruntime_precision(requested, quantized=quantized, device=device, name="m.onnx") == expected
    else:
        with pytest.raises(UsageError, match=expected):
            onnxruntime_precision(requested, quantized=quantized, device=device, name="m.onnx")


def test_profile_refuses_fp16_on_onnxruntime(oracle_onnx) -> None:
    from typer.testing import CliRunner

    from csa_cli.cli import app

    result = CliRunner().invoke(app, ["profile", str(oracle_onnx()), "--precision", "fp16", "--iterations", "2"], catch_exceptions=False)
    assert result.exit_code == 2 and "CPU provider runs FP32 kernels" in result.stderr and "FP16 figures come from CUDA" in result.stderr


# --- CUDA (run by benchmarks/gpu.sh on a GPU machine) -------------------------------------------


@pytest.mark.gpu
def test_torch_cuda_fp16_with_pinned_workers_is_exact(oracle_sets: dict[str, ImageSet]) -> None:
    from csa_cli.backends import open_backend
    from csa_cli.data.datasets import resolve_dataset
    from csa_cli.data.preprocess import build_transform
    from csa_cli.manifest import load_manifest
    from csa_cli.stages.evaluate.loop import run_eval

    index = imagenet.synset_index()
    backend = open_backend("torch", ColourOracle([index[s] for s in CLASSES]), device="cuda", precision="fp16")
    assert backend.device.startswith("cuda") and backend.precision == "fp16"
    ds = resolve_dataset(str(oracle_sets["folders"].val_dir))
    metrics = run_eval(backend, ds, build_transform(load_manifest().get("test-convnext").preprocessing), model="oracle", batch_size=8, workers=2)
    assert (metrics.top1_correct, metrics.top5_correct, metrics.images) == (*_expected(oracle_sets["folders"].items), 30)


@pytest.mark.gpu
def test_eval_on_cuda_defaults_to_fp16_and_agrees_with_cpu(csa, imagenet_photos: ImageSet) -> None:
    args = ("eval", "test-convnext", "--weights", "random", "--dataset", str(imagenet_photos.val_dir), "--limit", "8", "--workers", "2")
    gpu = csa(*args)
    cpu = csa(*args, "--device", "cpu")
    assert gpu.exit_code == 0 and cpu.exit_code == 0, gpu.stderr + cpu.stderr
    assert gpu.record["precision"] == "fp16" and gpu.record["device"].startswith("cuda") and gpu.record["backend_info"]["gpu"]
    assert cpu.record["precision"] == "fp32" and cpu.record["device"] == "cpu"
    assert gpu.record["dataset_fingerprint"] == cpu.record["dataset_fingerprint"] and gpu.record["images"] == cpu.record["images"] == 8
    images = [str(p) for p in imagenet_photos.files[:4]]
    g = json.loads(csa("predict", "test-convnext", *images, "--weights", "random").stdout.splitlines()[-1])
    c = json.loads(csa("predict", "test-convnext", *images, "--weights", "random", "--device", "cpu").stdout.splitlines()[-1])
    for a, b in zip(g["predictions"], c["predictions"], strict=True):
        assert a["top"][0]["probability"] == pytest.approx(b["top"][0]["probability"], rel=2e-2)


def test_terminal_views_render(oracle_sets: dict[str, ImageSet], oracle_onnx, csa) -> None:
    """What a terminal shows instead of the record: the eval table and the predict table."""
    from rich.console import Console

    from csa_cli.cli.eval import _render
    from csa_cli.records import parse_record

    res = csa("eval", str(oracle_onnx()), "--model", "test-convnext", "--dataset", str(oracle_sets["folders"].val_dir), "--workers", "0", "--limit", "6")
    assert res.exit_code == 0, res.stderr
    console = Console(record=True, width=160)
    console.print(_render(parse_record(res.stdout.splitlines()[-1])))
    text = console.export_text()
    rec = res.record
    assert f"{rec['top1']:.2f} %" in text and f"({rec['top5_correct']}/6)" in text and "onnxruntime (fp32, cpu)" in text


def test_predict_reads_a_piped_record(oracle_sets: dict[str, ImageSet], exported: Callable[..., Path], csa, upstream_error: str) -> None:
    """`csa export test-convnext | csa predict IMAGE...`: the record's graph, model and weights; an upstream error is repeated."""
    from csa_cli.stages.export.stage import export_stage

    images = [str(oracle_sets["folders"].val_dir / it.synset / it.name) for it in oracle_sets["folders"].items[:2]]
    exported("test-convnext")  # the session's export: found cached
    record = export_stage("test-convnext", weights="random", batch=1)
    res = csa("predict", *images, input=record.to_json() + "\n")
    assert res.exit_code == 0, res.stderr
    data = json.loads(res.stdout.splitlines()[-1])
    assert data["weights"] == "random" and data["model"] == "test-convnext" and data["backend"] == "onnxruntime"
    direct = json.loads(csa("predict", str(record.path), *images, "--model", "test-convnext").stdout.splitlines()[-1])
    assert data["predictions"] == direct["predictions"]  # the very graph the record names
    res = csa("predict", *images, input=upstream_error)
    assert res.exit_code == 1 and res.stderr == "" and res.stdout == upstream_error  # forwarded silently: the failed stage said why


def test_checkpoint_record_from_pull_is_evaluated_with_its_weights(hub_env, csa, imagenet_photos: ImageSet, tmp_path: Path) -> None:
    """`csa pull M | csa eval`: the pulled (pretrained) weights are the ones scored."""
    from csa_cli.data.datasets import resolve_dataset
    from csa_cli.data.preprocess import build_transform
    from csa_cli.manifest import load_manifest

    pulled = csa("pull", "test-convnext")
    assert pulled.exit_code == 0, pulled.stderr
    per_image = tmp_path / "predictions.jsonl"
    res = csa(
        "eval",
        "--dataset",
        str(imagenet_photos.val_dir),
        "--limit",
        "8",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--predictions",
        str(per_image),
        input=pulled.stdout,
    )
    assert res.exit_code == 0, res.stderr
    rec = res.record
    assert rec["weights"] == "pretrained" and rec["weights_hash"] == pulled.record["weights_hash"] and rec["backend"] == "torch"
    # the same top-5, image by image, from the module the loopback Hub was built from
    ds = resolve_dataset(str(imagenet_photos.val_dir), limit=8)
    transform = build_transform(load_manifest().get("test-convnext").preprocessing)
    from PIL import Image

    batch = torch.stack([transform(Image.open(p)) for p, _ in ds.samples])
    with torch.inference_mode():
        expected = hub_env.modules["test-convnext"].eval()(batch).topk(5, dim=1).indices.tolist()
    lines = [json.loads(line) for line in per_image.read_text().splitlines()]
    assert [(line["image"], line["label"]) for line in lines] == [(p, label) for p, label in ds.samples]
    assert [line["top"] for line in lines] == expected
    assert rec["top5_correct"] == sum(line["label"] in line["top"] for line in lines) and rec["predictions"] == str(per_image)
