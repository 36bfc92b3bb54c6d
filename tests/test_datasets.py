"""Datasets: both ImageNet val layouts, ImageFolders, deterministic --limit, fingerprints, clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from csa_cli.data import imagenet
from csa_cli.data.datasets import open_imagefolder, open_imagenet_val, resolve_dataset
from csa_cli.errors import CsaError, UsageError
from tests.fixtures.images import ImageItem, ImageSet, make_image_set


def _names_and_labels(ds) -> list[tuple[str, int]]:
    return [(Path(p).name, label) for p, label in ds.samples]


def test_imagenet_class_list_is_sorted_wordnet_ids_with_names() -> None:
    ids = imagenet.synsets()
    assert len(ids) == 1000 and list(ids) == sorted(ids)
    assert ids[0] == "n01440764" and ids[-1] == "n15075141"
    assert imagenet.class_names()[imagenet.synset_index()["n02123045"]] == "tabby"
    assert imagenet.class_names()[0] == "tench"


@pytest.mark.parametrize("layout", ["folders", "flat-csv", "flat-txt"])
def test_each_layout_labels_every_image_by_its_synset(layout: str, imagenet_layouts: dict[str, ImageSet]) -> None:
    image_set = imagenet_layouts[layout]
    ds = resolve_dataset("imagenet-val", image_set.root)
    index = imagenet.synset_index()
    assert ds.info.label_space == "imagenet-1k" and ds.info.num_classes == 1000
    assert len(ds) == len(image_set.items) == 32
    for name, label in _names_and_labels(ds):
        assert label == index[image_set.labels[name]], name
    assert ds.info.layout == ("imagenet-folders" if layout == "folders" else "imagenet-flat")
    assert ds.info.classes_present == 8


def test_layouts_agree_on_order_limit_and_fingerprint(imagenet_layouts: dict[str, ImageSet]) -> None:
    full = {layout: resolve_dataset("imagenet-val", s.root) for layout, s in imagenet_layouts.items()}
    limited = {layout: resolve_dataset("imagenet-val", s.root, limit=10) for layout, s in imagenet_layouts.items()}
    orders = {tuple(_names_and_labels(ds)) for ds in full.values()}
    assert len(orders) == 1
    assert len({ds.info.fingerprint for ds in full.values()}) == 1
    first = _names_and_labels(limited["folders"])
    assert [n for n, _ in first] == [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, 11)]
    assert all(_names_and_labels(ds) == first for ds in limited.values())
    assert len({label for _, label in first}) > 1  # the first N mix classes
    assert limited["folders"].info.fingerprint != full["folders"].info.fingerprint
    assert limited["folders"].info.images == 10 and limited["folders"].info.limit == 10
    # deterministic: asking again gives the same set
    assert _names_and_labels(resolve_dataset("imagenet-val", imagenet_layouts["flat-csv"].root, limit=10)) == first


def test_data_dir_from_csa_data(monkeypatch: pytest.MonkeyPatch, imagenet_layouts: dict[str, ImageSet]) -> None:
    monkeypatch.setenv("CSA_DATA", str(imagenet_layouts["flat-csv"].root))
    assert len(resolve_dataset("imagenet-val")) == 32
    monkeypatch.delenv("CSA_DATA")
    with pytest.raises(CsaError, match="needs the ImageNet folder") as err:
        resolve_dataset("imagenet-val")
    assert "CSA_DATA" in (err.value.hint or "") and "--data-dir" in (err.value.hint or "")


def test_synset_imagefolder_keeps_imagenet_indices(imagenet_photos: ImageSet) -> None:
    ds = resolve_dataset(str(imagenet_photos.val_dir))
    assert ds.info.label_space == "imagenet-1k" and ds.info.num_classes == 1000
    assert {label for _, label in ds.samples} == {imagenet.synset_index()[s] for s in imagenet_photos.synsets}


def test_plain_imagefolder_uses_sorted_folder_names(tmp_path: Path) -> None:
    for k, cls in enumerate(["zebra", "apple", "mango"]):
        for j in range(2):
            from PIL import Image

            (tmp_path / cls).mkdir(exist_ok=True)
            Image.fromarray(np.full((32, 40, 3), 40 * k + j, np.uint8)).save(tmp_path / cls / f"{cls}{j}.png")
    (tmp_path / "mango" / "README.txt").write_text("not an image")
    ds = open_imagefolder(tmp_path)
    assert ds.info.label_space == "folders" and ds.info.num_classes == 3
    assert ds.class_names == ["apple", "mango", "zebra"]
    assert {Path(p).parent.name: label for p, label in ds.samples} == {"apple": 0, "mango": 1, "zebra": 2}
    assert ds.info.skipped_files == 1
    assert any("non-image" in w for w in ds.info.warnings)


# --- bad inputs ---------------------------------------------------------------------------------


def test_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(CsaError, match="dataset folder not found"):
        resolve_dataset(str(tmp_path / "nope"))
    with pytest.raises(CsaError, match="ImageNet folder not found") as err:
        resolve_dataset("imagenet-val", tmp_path / "nope")
    assert "val/<wnid>" in (err.value.hint or "")


def test_unknown_dataset_name() -> None:
    with pytest.raises(UsageError, match="unknown dataset 'imagenet-train'"):
        resolve_dataset("imagenet-train")


def test_empty_dir(tmp_path: Path) -> None:
    with pytest.raises(CsaError, match="no images found in"):
        resolve_dataset(str(tmp_path))
    with pytest.raises(CsaError, match=r"no ImageNet validation images found \(looked in"):
        resolve_dataset("imagenet-val", tmp_path)


def test_class_folders_with_only_non_image_files(tmp_path: Path) -> None:
    (tmp_path / "n01440764").mkdir()
    (tmp_path / "n01440764" / "notes.txt").write_text("x")
    (tmp_path / "n01443537").mkdir()
    (tmp_path / "n01443537" / "labels.csv").write_text("y")
    with pytest.raises(CsaError, match="no images found") as err:
        resolve_dataset(str(tmp_path))
    assert err.value.hint is not None


def test_flat_images_without_ground_truth_is_a_wrong_layout(tmp_path: Path, imagenet_photos: ImageSet) -> None:
    for f in imagenet_photos.files[:3]:
        shutil.copy(f, tmp_path / f.name)
    with pytest.raises(CsaError, match="no class folders and no ground-truth file") as err:
        resolve_dataset(str(tmp_path))
    assert "LOC_val_solution.csv" in (err.value.hint or "")


def test_images_one_level_too_deep_point_to_the_right_folder(tmp_path: Path, imagenet_photos: ImageSet) -> None:
    shutil.copytree(imagenet_photos.root, tmp_path / "imagenet")  # tmp/imagenet/val/<wnid>/*.JPEG
    ds = resolve_dataset(str(tmp_path / "imagenet" / "val"))
    assert len(ds) == 32
    # tmp/ holds imagenet/ which holds val/: no images directly in class folders
    with pytest.raises(CsaError, match="no images found") as err:
        resolve_dataset(str(tmp_path))
    assert "did you mean --dataset" in (err.value.hint or "")


def test_imagenet_val_rejects_non_synset_folders(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "val" / "cats").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "val" / "cats" / "a.png")
    with pytest.raises(CsaError, match="not ImageNet WordNet ids"):
        resolve_dataset("imagenet-val", tmp_path)
    assert resolve_dataset(str(tmp_path / "val")).info.num_classes == 1  # fine as a plain ImageFolder


def test_ground_truth_txt_needs_the_devkit_map(tmp_path: Path, imagenet_layouts: dict[str, ImageSet]) -> None:
    root = tmp_path / "flat"
    shutil.copytree(imagenet_layouts["flat-txt"].root, root)
    (root / "map_clsloc.txt").unlink()
    with pytest.raises(CsaError, match="ILSVRC2012_IDs") as err:
        open_imagenet_val(root)
    assert "meta.mat" in (err.value.hint or "")


def test_ground_truth_txt_from_devkit_meta_mat(tmp_path: Path, imagenet_layouts: dict[str, ImageSet]) -> None:
    scipy_io = pytest.importorskip("scipy.io")  # scipy comes with scikit-image, a dev dependency
    root = tmp_path / "flat"
    shutil.copytree(imagenet_layouts["flat-txt"].root, root)
    mapping = [line.split() for line in (root / "map_clsloc.txt").read_text().splitlines()]
    (root / "map_clsloc.txt").unlink()
    rows = np.array(
        [(int(i), w, n, 0) for w, i, n in mapping] + [(1001, "n00001740", "entity", 5)],
        dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")],
    )
    (root / "data").mkdir()
    scipy_io.savemat(str(root / "data" / "meta.mat"), {"synsets": rows})
    ds = open_imagenet_val(root)
    index = imagenet.synset_index()
    labels = imagenet_layouts["flat-txt"].labels
    assert all(label == index[labels[name]] for name, label in _names_and_labels(ds))


def test_stray_image_without_label_in_flat_layout(tmp_path: Path, imagenet_layouts: dict[str, ImageSet]) -> None:
    root = tmp_path / "flat"
    shutil.copytree(imagenet_layouts["flat-csv"].root, root)
    shutil.copy(root / "val" / "ILSVRC2012_val_00000001.JPEG", root / "val" / "holiday.JPEG")
    with pytest.raises(CsaError, match=r"have no label in LOC_val_solution\.csv"):
        open_imagenet_val(root)


def test_limit_zero_is_a_usage_error(imagenet_photos: ImageSet) -> None:
    with pytest.raises(UsageError, match="--limit must be at least 1"):
        resolve_dataset(str(imagenet_photos.val_dir), limit=0)


def test_custom_design_set_round_trips(tmp_path: Path) -> None:
    items = [ImageItem(synset=s, pixels=np.full((20, 30, 3), v, np.uint8)) for s, v in [("n01440764", 10), ("n15075141", 200), ("n01440764", 90)]]
    sets = make_image_set(tmp_path, items, layouts=("folders",))
    ds = resolve_dataset("imagenet-val", sets["folders"].root)
    assert sorted(label for _, label in ds.samples) == [0, 0, 999]


def test_kaggle_and_devkit_folder_layouts(tmp_path: Path, imagenet_layouts: dict[str, ImageSet]) -> None:
    expected = _names_and_labels(resolve_dataset("imagenet-val", imagenet_layouts["folders"].root))
    kaggle = tmp_path / "kaggle"
    shutil.copytree(imagenet_layouts["flat-csv"].val_dir, kaggle / "ILSVRC" / "Data" / "CLS-LOC" / "val")
    shutil.copy(imagenet_layouts["flat-csv"].root / "LOC_val_solution.csv", kaggle / "LOC_val_solution.csv")
    assert _names_and_labels(resolve_dataset("imagenet-val", kaggle)) == expected
    devkit = tmp_path / "devkit"
    shutil.copytree(imagenet_layouts["flat-txt"].val_dir, devkit / "val")
    (devkit / "ILSVRC2012_devkit_t12" / "data").mkdir(parents=True)
    for name in ("ILSVRC2012_validation_ground_truth.txt", "map_clsloc.txt"):
        shutil.copy(imagenet_layouts["flat-txt"].root / name, devkit / "ILSVRC2012_devkit_t12" / "data" / name)
    ds = resolve_dataset("imagenet-val", devkit)
    assert _names_and_labels(ds) == expected
    assert ds.info.ground_truth is not None and ds.info.ground_truth.endswith("ILSVRC2012_validation_ground_truth.txt")


def test_stray_image_beside_class_folders_is_ignored_with_a_warning(tmp_path: Path, imagenet_photos: ImageSet) -> None:
    shutil.copytree(imagenet_photos.val_dir, tmp_path / "val")
    shutil.copy(imagenet_photos.files[0], tmp_path / "val" / "cover.JPEG")
    ds = resolve_dataset(str(tmp_path / "val"))
    assert len(ds) == 32 and ds.info.layout == "imagenet-folders"
    assert any("cover.JPEG" in w and "ignored" in w for w in ds.info.warnings)
