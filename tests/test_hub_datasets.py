"""`--dataset hf://datasets/OWNER/NAME[@REV][:SPLIT]`: Hub dataset repos (ImageFolder and parquet), pulled from the
loopback Hub, pinned and verified like weights, for eval and calibration; a gated repo says how to get access."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.cli import CliResult
from tests.fixtures.hub import HubEnv
from tests.hubserver import DATASETS


@dataclass
class HubDatasets:
    folder: str  # hf://datasets/... of an ImageFolder repo (validation/<wnid>/<image>)
    parquet: str  # hf://datasets/... of a parquet repo (data/validation-*.parquet + README with ImageNet's names)
    gated: str
    repos: dict[str, str]
    folder_files: dict[str, bytes]


def _parquet(images: list[Path], labels: list[int]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    image = pa.array([{"bytes": p.read_bytes(), "path": p.name} for p in images], type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    buffer = io.BytesIO()
    pq.write_table(pa.table({"image": image, "label": pa.array(labels, type=pa.int64())}), buffer)
    return buffer.getvalue()


def _readme(names: tuple[str, ...]) -> bytes:
    """A dataset card header as the Hub writes it for a ClassLabel feature."""
    import yaml

    label = {"name": "label", "dtype": {"class_label": {"names": dict(enumerate(names))}}}
    header = {"dataset_info": {"features": [{"name": "image", "dtype": "image"}, label]}}
    return ("---\n" + yaml.safe_dump(header) + "---\n# a test copy\n").encode()


@pytest.fixture
def hub_datasets(hub_env: HubEnv, imagenet_photos: Any) -> Any:
    from csa_cli.data import imagenet

    server, ns = hub_env.server, hub_env.namespace
    files = sorted(imagenet_photos.val_dir.rglob("*.JPEG"))
    folder = {f"validation/{p.parent.name}/{p.name}": p.read_bytes() for p in files}
    folder.update({f"train/{p.parent.name}/{p.name}": p.read_bytes() for p in files[:8]})
    index = imagenet.synset_index()
    parquet = {
        "data/validation-00000-of-00001.parquet": _parquet(files, [index[p.parent.name] for p in files]),
        "README.md": _readme(imagenet.full_names()),
    }
    repos = {"folder": f"{ns}/photos", "parquet": f"{ns}/photos-parquet", "gated": f"{ns}/gated-imagenet"}
    server.add_dataset(repos["folder"], folder)
    server.add_dataset(repos["parquet"], parquet)
    server.add_dataset(repos["gated"], parquet, gated=True)
    yield HubDatasets(*(f"hf://datasets/{repos[k]}" for k in ("folder", "parquet", "gated")), repos=repos, folder_files=folder)
    for repo in repos.values():
        server.remove_repo(DATASETS + repo)


def _eval(csa: Callable[..., CliResult], dataset: str) -> dict[str, Any]:
    # the first 8 images by file name: the same 8 in every layout (their fingerprint says so)
    result = csa("eval", "test-convnext", "--weights", "random", "--backend", "torch", "--dataset", dataset, "--limit", "8", "--workers", "0")
    assert result.exit_code == 0, result.stderr
    return result.record


def test_imagefolder_repo_evaluates_like_the_local_folder_and_is_pinned(hub_env: HubEnv, hub_datasets: HubDatasets, imagenet_photos: Any, csa: Any) -> None:
    local = _eval(csa, str(imagenet_photos.val_dir))
    remote = _eval(csa, hub_datasets.folder)
    # the same images and labels: the same fingerprint, the same numbers
    for key in ("images", "top1", "top5", "dataset_fingerprint"):
        assert remote[key] == local[key], key
    assert remote["dataset"].startswith(hub_datasets.folder + "@") and remote["dataset"].endswith(":validation")
    lock = json.loads((hub_env.csa_home / "locks" / "datasets" / (hub_datasets.repos["folder"].replace("/", "--") + ".lock.json")).read_text())
    pinned = lock["main:"]
    assert pinned["split"] == "validation" and pinned["layout"] == "imagefolder" and len(pinned["files"]) == len(imagenet_photos.files)
    # a new commit upstream changes nothing: the pin holds, and nothing is downloaded again
    server = hub_env.server
    gets = server.file_gets(DATASETS + hub_datasets.repos["folder"])
    server.add_dataset(hub_datasets.repos["folder"], {**hub_datasets.folder_files, "validation/n01930112/extra.JPEG": b"not an image"})
    again = _eval(csa, hub_datasets.folder)
    assert again["dataset"] == remote["dataset"] and again["top1"] == remote["top1"]
    assert server.file_gets(DATASETS + hub_datasets.repos["folder"]) == gets
    # a split by name, and a split that is not there
    train = _eval(csa, hub_datasets.folder + ":train")
    assert train["images"] == 8 and train["dataset"].endswith(":train")
    missing = csa("eval", "test-convnext", "--weights", "random", "--dataset", hub_datasets.folder + ":test")
    assert missing.exit_code == 2 and "has no split test" in missing.stderr and "train, validation" in missing.stderr


def test_parquet_repo_evaluates_like_the_local_folder_and_calibrates(hub_env: HubEnv, hub_datasets: HubDatasets, imagenet_photos: Any, csa: Any) -> None:
    local = _eval(csa, str(imagenet_photos.val_dir))
    remote = _eval(csa, hub_datasets.parquet)
    # ImageNet's 1000 class names in the card: the ImageNet-1K indices hold, so the numbers are the folder's
    for key in ("images", "top1", "top5"):
        assert remote[key] == local[key], key
    unpacked = [p for p in (hub_env.csa_home / "datasets").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert len(unpacked) == len(imagenet_photos.files) and {p.parent.name for p in unpacked} == set(imagenet_photos.synsets)
    quantized = csa("quantize", "csa-nano", "--calib-dataset", hub_datasets.parquet, "--calib-images", "4")
    assert quantized.exit_code == 0, quantized.stderr
    assert quantized.record["kind"] == "quantized" and len(quantized.record["calib_files"]) == 4
    assert all(Path(f).is_relative_to(hub_env.csa_home / "datasets") for f in quantized.record["calib_files"])


def test_gated_and_malformed_datasets_say_what_to_do(hub_env: HubEnv, hub_datasets: HubDatasets, csa: Any) -> None:
    gated = csa("eval", "test-convnext", "--weights", "random", "--dataset", hub_datasets.gated)
    assert gated.exit_code == 1 and gated.stderr.count("Error:") == 1
    assert "is gated and this token was not granted access (403)" in gated.stderr
    assert f"accept the dataset's conditions on {hub_env.server.url}/datasets/{hub_datasets.repos['gated']}" in gated.stderr
    bad = csa("eval", "test-convnext", "--dataset", "hf://datasets/only-a-name")
    assert bad.exit_code == 2 and "not a Hub dataset" in bad.stderr
