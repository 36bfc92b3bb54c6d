"""Labelled image datasets for eval and calibration: ImageNet-1K val (two layouts) and any ImageFolder.

Class indices follow the sorted WordNet ids (csa_cli/data/imagenet.py), the order every pretrained
ImageNet head uses. An ImageFolder whose folder names are all WordNet ids is an ImageNet subset
(Imagenette-style) and keeps those 1000-class indices; any other ImageFolder's classes are its
sorted folder names, and a head must have exactly that many outputs.

Samples are ordered by file name, then relative path, so `--limit N` takes the same N images
whatever the layout: for ImageNet val that is ILSVRC2012_val_00000001... in the official order,
which mixes the classes.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from csa_cli.data import imagenet
from csa_cli.errors import CsaError, UsageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".gif"})
NAMED_DATASETS = ("imagenet-val",)
GT_TXT = "ILSVRC2012_validation_ground_truth.txt"
GT_CSV = "LOC_val_solution.csv"
MAP_CLSLOC = "map_clsloc.txt"
META_MAT = "meta.mat"
_VAL_NAME = re.compile(r"ILSVRC2012_val_(\d+)", re.IGNORECASE)

EXPECTED_LAYOUTS = (
    "expected either <dir>/val/<wnid>/*.JPEG (or <dir>/<wnid>/*.JPEG), "
    f"or flat <dir>/val/ILSVRC2012_val_*.JPEG with {GT_CSV} or {GT_TXT} (+ the devkit's {META_MAT} or {MAP_CLSLOC}) beside them"
)

Layout = Literal["imagenet-folders", "imagenet-flat", "imagefolder"]
LabelSpace = Literal["imagenet-1k", "folders"]


# --- what we read -------------------------------------------------------------------------------


class LocSolutionRow(BaseModel):
    """One row of Kaggle's LOC_val_solution.csv: the image id and 'wnid x y x y wnid ...' boxes."""

    model_config = ConfigDict(extra="ignore")

    ImageId: str = Field(min_length=1)
    PredictionString: str

    @field_validator("PredictionString")
    @classmethod
    def _starts_with_synset(cls, value: str) -> str:
        first = value.split()[0] if value.split() else ""
        if not imagenet.is_synset(first):
            raise ValueError(f"first token {first!r} is not an ImageNet-1K WordNet id")
        return value

    @property
    def synset(self) -> str:
        return self.PredictionString.split()[0]


class ClsLocMapRow(BaseModel):
    """One line of map_clsloc.txt: 'n02119789 1 kit_fox' (the devkit's ILSVRC2012_ID of each WordNet id)."""

    synset: str
    ilsvrc_id: int = Field(ge=1, le=1000)
    name: str = ""

    @field_validator("synset")
    @classmethod
    def _known(cls, value: str) -> str:
        if not imagenet.is_synset(value):
            raise ValueError(f"{value!r} is not an ImageNet-1K WordNet id")
        return value


class GroundTruthLabels(BaseModel):
    """ILSVRC2012_validation_ground_truth.txt: one ILSVRC2012_ID (1..1000) per line, image 1 first."""

    ids: list[int] = Field(min_length=1)

    @field_validator("ids")
    @classmethod
    def _in_range(cls, ids: list[int]) -> list[int]:
        bad = next((i for i in ids if not 1 <= i <= 1000), None)
        if bad is not None:
            raise ValueError(f"label {bad} is outside 1..1000")
        return ids


class DatasetInfo(BaseModel):
    """What a dataset is, as an eval record names it."""

    name: str
    root: str
    layout: Layout
    label_space: LabelSpace
    num_classes: int = Field(description="the head size this dataset's labels index into")
    classes_present: int
    images: int = Field(description="images selected (after --limit)")
    images_found: int
    skipped_files: int = Field(description="files that are not images by extension, ignored")
    ground_truth: str | None = None
    limit: int | None = None
    fingerprint: str
    warnings: list[str] = Field(default_factory=list)


class LabeledDataset:
    """Image paths with class indices, plus the class names for reports."""

    def __init__(self, info: DatasetInfo, samples: list[tuple[str, int]], class_names: list[str]) -> None:
        self.info = info
        self.samples = samples
        self.class_names = class_names

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"LabeledDataset({self.info.name!r}, {self.info.layout}, {len(self.samples)} images)"


# --- helpers ------------------------------------------------------------------------------------


def is_image_file(path: str | Path) -> bool:
    p = Path(path)
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _scan_files(folder: Path) -> tuple[list[Path], int]:
    """Image files directly inside `folder` (sorted) and the count of other files skipped.

    Not recursive: a class folder holds its images, so a folder one level too high is an error
    (with a hint), not one big class.
    """
    images: list[Path] = []
    skipped = 0
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.startswith(".") or not entry.is_file():
                continue
            if is_image_file(entry.name):
                images.append(Path(entry.path))
            else:
                skipped += 1
    return images, skipped


def _has_images(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(e.is_file() and is_image_file(e.name) for e in entries)


def _suggest(root: Path, depth: int = 3) -> Path | None:
    """The nearest folder below `root` whose subfolders hold images: what --dataset probably meant."""
    level = [root]
    for _ in range(depth):
        nxt: list[Path] = []
        for folder in level:
            subdirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
            if folder != root and any(_has_images(d) for d in subdirs):
                return folder
            nxt.extend(subdirs)
        level = nxt
    return None


def _direct(folder: Path) -> tuple[list[Path], list[Path], int]:
    """(image files, subfolders, other files) directly inside `folder`."""
    images, dirs, other = [], [], 0
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            dirs.append(entry)
        elif is_image_file(entry):
            images.append(entry)
        else:
            other += 1
    return images, dirs, other


def _order(samples: Iterable[tuple[str, int]], root: Path) -> list[tuple[str, int]]:
    return sorted(samples, key=lambda s: (Path(s[0]).name, os.path.relpath(s[0], root)))


def fingerprint(samples: list[tuple[str, int]]) -> str:
    """sha256 of (file name, label, size) of every sample, in order: the same images and labels give the same print in either layout."""
    digest = hashlib.sha256()
    for path, label in samples:
        try:
            size = os.stat(path).st_size
        except OSError:
            size = -1
        digest.update(f"{Path(path).name}\t{label}\t{size}\n".encode())
    return digest.hexdigest()[:16]


def apply_limit(samples: list[tuple[str, int]], limit: int | None) -> list[tuple[str, int]]:
    if limit is None:
        return samples
    if limit < 1:
        raise UsageError(f"--limit must be at least 1, got {limit}")
    return samples[:limit]


# --- ImageFolder --------------------------------------------------------------------------------


def _imagefolder(
    root: Path, class_dirs: list[Path], name: str, *, require_synsets: bool
) -> tuple[list[tuple[str, int]], list[str], LabelSpace, int, int, list[str]]:
    folder_names = [d.name for d in class_dirs]
    all_synsets = all(imagenet.is_synset(n) for n in folder_names)
    warnings: list[str] = []
    if require_synsets and not all_synsets:
        bad = [n for n in folder_names if not imagenet.is_synset(n)][:3]
        raise CsaError(
            f"{root} has class folders that are not ImageNet WordNet ids ({', '.join(bad)}, ...)",
            hint=f"for imagenet-val, {EXPECTED_LAYOUTS}; for other data use --dataset DIR",
        )
    if all_synsets:
        index = imagenet.synset_index()
        label_of = {n: index[n] for n in folder_names}
        space: LabelSpace = "imagenet-1k"
        num_classes = imagenet.NUM_CLASSES
        names = list(imagenet.class_names())
    else:
        label_of = {n: i for i, n in enumerate(folder_names)}  # class_dirs are sorted by name
        space = "folders"
        num_classes = len(folder_names)
        names = folder_names
    samples: list[tuple[str, int]] = []
    skipped = 0
    empty: list[str] = []
    for d in class_dirs:
        files, other = _scan_files(d)
        skipped += other
        if not files:
            empty.append(d.name)
        samples.extend((str(f), label_of[d.name]) for f in files)
    if empty:
        warnings.append(f"{len(empty)} class folder(s) hold no images: {', '.join(empty[:5])}" + (" ..." if len(empty) > 5 else ""))
    return samples, names, space, num_classes, skipped, warnings


# --- ImageNet flat layout -----------------------------------------------------------------------


def _find_first(folders: list[Path], names: tuple[str, ...]) -> Path | None:
    for folder in folders:
        for n in names:
            if (folder / n).is_file():
                return folder / n
    return None


def _read_loc_csv(path: Path) -> dict[str, str]:
    """ImageId (file stem) -> WordNet id."""
    out: dict[str, str] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"ImageId", "PredictionString"} <= set(reader.fieldnames):
            raise CsaError(f"{path} is not a LOC_val_solution.csv (expected columns ImageId,PredictionString)")
        for line_no, row in enumerate(reader, start=2):
            try:
                parsed = LocSolutionRow.model_validate(row)
            except ValidationError as exc:
                raise CsaError(f"{path}, line {line_no}: {exc.errors()[0]['msg']}") from None
            out[parsed.ImageId] = parsed.synset
    return out


def _read_clsloc_map(path: Path) -> dict[int, str]:
    out: dict[int, str] = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            row = ClsLocMapRow(synset=parts[0], ilsvrc_id=int(parts[1]), name=" ".join(parts[2:]))
        except (IndexError, ValueError, ValidationError) as exc:
            raise CsaError(f"{path}, line {line_no}: expected 'wnid ILSVRC2012_ID name' ({exc})") from None
        out[row.ilsvrc_id] = row.synset
    return out


def _read_meta_mat(path: Path) -> dict[int, str]:
    try:
        from scipy.io import loadmat
    except ImportError:
        raise CsaError(f"reading {path} needs scipy", hint=f"pip install scipy, or put the devkit's {MAP_CLSLOC} beside the ground truth") from None
    synsets = loadmat(str(path), squeeze_me=True)["synsets"]
    out: dict[int, str] = {}
    for row in synsets:
        ilsvrc_id, wnid = int(row["ILSVRC2012_ID"]), str(row["WNID"])
        if 1 <= ilsvrc_id <= 1000 and imagenet.is_synset(wnid):
            out[ilsvrc_id] = wnid
    return out


def _flat_imagenet(folder: Path, images: list[Path], search: list[Path]) -> tuple[list[tuple[str, int]], str]:
    index = imagenet.synset_index()
    gt = _find_first(search, (GT_CSV, GT_TXT))
    if gt is None:
        looked = ", ".join(str(f) for f in dict.fromkeys(search))
        raise CsaError(
            f"{folder} holds {len(images)} images but no class folders and no ground-truth file (looked in {looked})",
            hint=EXPECTED_LAYOUTS,
        )
    labels_by_stem: dict[str, int] = {}
    if gt.name == GT_CSV:
        labels_by_stem = {stem: index[wnid] for stem, wnid in _read_loc_csv(gt).items()}
    else:
        mapping_file = _find_first([gt.parent, gt.parent / "data", *search], (MAP_CLSLOC, META_MAT))
        if mapping_file is None:
            raise CsaError(
                f"{gt} gives ILSVRC2012_IDs, whose WordNet ids are listed only in the devkit's {META_MAT} or {MAP_CLSLOC}: neither is beside it",
                hint=f"copy ILSVRC2012_devkit_t12/data/{META_MAT} (or {MAP_CLSLOC}) next to {gt.name}, or use {GT_CSV}",
            )
        id_to_wnid = _read_meta_mat(mapping_file) if mapping_file.name == META_MAT else _read_clsloc_map(mapping_file)
        if len(id_to_wnid) != 1000:
            raise CsaError(f"{mapping_file} maps {len(id_to_wnid)} ILSVRC2012_IDs, expected 1000")
        try:
            gt_ids = GroundTruthLabels(ids=[int(x) for x in gt.read_text(encoding="utf-8").split()])
        except (ValueError, ValidationError) as exc:
            raise CsaError(f"{gt} is not a list of ILSVRC2012_IDs (1..1000), one per line ({exc})") from None
        for number, ilsvrc_id in enumerate(gt_ids.ids, start=1):
            labels_by_stem[f"ILSVRC2012_val_{number:08d}"] = index[id_to_wnid[ilsvrc_id]]
    samples: list[tuple[str, int]] = []
    missing: list[str] = []
    for img in images:
        stem = img.stem
        m = _VAL_NAME.fullmatch(stem)
        key = f"ILSVRC2012_val_{int(m.group(1)):08d}" if m else stem
        if key in labels_by_stem:
            samples.append((str(img), labels_by_stem[key]))
        else:
            missing.append(img.name)
    if missing:
        raise CsaError(
            f"{len(missing)} image(s) in {folder} have no label in {gt.name} (first: {missing[0]})",
            hint="ImageNet val files are named ILSVRC2012_val_XXXXXXXX.JPEG; remove other images from that folder",
        )
    return samples, str(gt)


# --- entry points -------------------------------------------------------------------------------


def _open_folder(root: Path, name: str, *, imagenet_only: bool, extra_search: list[Path] | None = None) -> LabeledDataset | None:
    """A dataset in `root` (class folders, or flat images + ground truth), or None when `root` holds neither."""
    images, dirs, other = _direct(root)
    search = [root, root.parent, *(extra_search or [])]
    class_dirs = bool(dirs) and any(_has_images(d) for d in dirs)
    # flat when there is ground truth, or nothing but loose images; a stray image beside class folders is not a layout
    flat = bool(images) and (not class_dirs or _find_first(search, (GT_CSV, GT_TXT)) is not None)
    if flat:
        samples, gt = _flat_imagenet(root, images, search)
        layout: Layout = "imagenet-flat"
        space: LabelSpace = "imagenet-1k"
        num_classes, names, warnings = imagenet.NUM_CLASSES, list(imagenet.class_names()), []
        skipped = other
        if dirs:
            warnings.append(f"{len(dirs)} subfolder(s) of {root} ignored beside the flat images")
    elif class_dirs:
        samples, names, space, num_classes, skipped, warnings = _imagefolder(root, dirs, name, require_synsets=imagenet_only)
        layout = "imagenet-folders" if space == "imagenet-1k" else "imagefolder"
        gt = None
        skipped += other
        if images:
            warnings.append(
                f"{len(images)} image(s) directly in {root} ignored (not in a class folder): {images[0].name}" + (" ..." if len(images) > 1 else "")
            )
    else:
        return None
    if skipped:
        warnings.append(f"{skipped} non-image file(s) skipped")
    ordered = _order(samples, root)
    info = DatasetInfo(
        name=name,
        root=str(root),
        layout=layout,
        label_space=space,
        num_classes=num_classes,
        classes_present=len({label for _, label in ordered}),
        images=len(ordered),
        images_found=len(ordered),
        skipped_files=skipped,
        ground_truth=gt,
        fingerprint=fingerprint(ordered),
        warnings=warnings,
    )
    return LabeledDataset(info, ordered, names)


def _no_images_error(root: Path, what: str) -> CsaError:
    _, _, other = _direct(root)
    better = _suggest(root)
    if better is not None:
        hint = f"class folders must hold the images directly; did you mean --dataset {better}?"
    elif other:
        hint = f"{other} file(s) there, none of them images ({', '.join(sorted(IMAGE_EXTENSIONS))})"
    else:
        hint = EXPECTED_LAYOUTS
    return CsaError(f"no images found in {root} ({what})", hint=hint)


def open_imagenet_val(root: str | Path) -> LabeledDataset:
    """ImageNet-1K val under `root`: root/val, root/imagenet/val, Kaggle's ILSVRC/Data/CLS-LOC/val, or root itself."""
    base = Path(root).expanduser()
    if not base.is_dir():
        raise CsaError(f"ImageNet folder not found: {base}", hint="pass --data-dir DIR or set CSA_DATA; " + EXPECTED_LAYOUTS)
    candidates = [base / "val", base / "imagenet" / "val", base / "ILSVRC" / "Data" / "CLS-LOC" / "val", base]
    looked: list[str] = []
    for folder in candidates:
        if not folder.is_dir():
            continue
        looked.append(str(folder))
        # Kaggle keeps LOC_val_solution.csv at the top, four levels above the images
        ds = _open_folder(folder, "imagenet-val", imagenet_only=True, extra_search=[base, base / "data", base / "ILSVRC2012_devkit_t12" / "data"])
        if ds is not None:
            return ds
    raise CsaError(f"no ImageNet validation images found (looked in {', '.join(looked)})", hint=EXPECTED_LAYOUTS)


def open_imagefolder(root: str | Path) -> LabeledDataset:
    """Any ImageFolder (synset-named folders keep ImageNet indices), or a flat ImageNet-style folder."""
    folder = Path(root).expanduser()
    if not folder.exists():
        raise CsaError(f"dataset folder not found: {folder}", hint="check --dataset DIR")
    if not folder.is_dir():
        raise CsaError(f"--dataset {folder} is a file, not a folder", hint="give a folder of class folders (ImageFolder layout)")
    ds = _open_folder(folder, str(folder), imagenet_only=False)
    if ds is None:
        raise _no_images_error(folder, "expected one folder per class holding its images")
    return ds


def data_root(data_dir: str | Path | None) -> Path:
    value = data_dir or os.environ.get("CSA_DATA")
    if not value:
        raise CsaError("imagenet-val needs the ImageNet folder: none given", hint="pass --data-dir DIR or set CSA_DATA=DIR; " + EXPECTED_LAYOUTS)
    return Path(value).expanduser()


def resolve_dataset(dataset: str, data_dir: str | Path | None = None, *, limit: int | None = None) -> LabeledDataset:
    """`imagenet-val` (found through data_dir or CSA_DATA) or an ImageFolder path; `limit` keeps the first N images."""
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1, got {limit}")
    if dataset.startswith("hf://"):  # pulled and unpacked by stages/pull/dataset.py, which then calls this with the folder
        raise UsageError(f"{dataset} is a Hub dataset", hint="open it with csa_cli.stages.pull.dataset.open_dataset")
    if dataset == "imagenet-val":
        ds = open_imagenet_val(data_root(data_dir))
    elif Path(dataset).expanduser().exists() or "/" in dataset or os.sep in dataset:
        ds = open_imagefolder(dataset)
    else:
        raise UsageError(f"unknown dataset '{dataset}'", hint=f"named datasets: {', '.join(NAMED_DATASETS)}; or give a folder path")
    if not ds.samples:
        raise _no_images_error(Path(ds.info.root), "every class folder is empty")
    if limit is not None and limit < len(ds.samples):
        ds.samples = apply_limit(ds.samples, limit)
        ds.info = ds.info.model_copy(update={"images": len(ds.samples), "limit": limit, "fingerprint": fingerprint(ds.samples)})
    return ds


def class_label(ds_or_names: LabeledDataset | list[str], index: int) -> str:
    names = ds_or_names.class_names if isinstance(ds_or_names, LabeledDataset) else ds_or_names
    return names[index] if 0 <= index < len(names) else f"class {index}"
