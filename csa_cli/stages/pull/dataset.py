"""Datasets where users keep them: a folder, imagenet-val, or a Hugging Face Hub dataset repo.

    --dataset hf://datasets/OWNER/NAME[@REV][:SPLIT]

A Hub dataset is pulled like weights: its revision resolved to a commit and pinned in a lock
(CSA_HOME/locks/datasets/OWNER--NAME.lock.json) with the sha256 and size of every file taken, the
files kept in the Hugging Face cache and verified against the lock on every later use (no network
once pulled). Two layouts are read:

- ImageFolder: `SPLIT/<class>/<image>` (or `<class>/<image>` at the top without a split), as a local folder;
- parquet (the Hub's own format, e.g. ImageNet's gated copy ILSVRC/imagenet-1k): `data/SPLIT-*.parquet`
  (or `SPLIT/*.parquet`) with an `image` column ({bytes, path}) and a `label` column; the class names
  come from the README's `dataset_info` (ImageNet's 1000 names keep the ImageNet-1K indices). Needs
  pyarrow (`pip install 'csa[parquet]'`); the images are written out once per commit, under
  CSA_HOME/datasets, as an ImageFolder.

Eval, calibration (`csa quantize`, `csa run`) and training all open datasets through `open_dataset`.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from csa_cli import events
from csa_cli.errors import CsaError, MissingBackend, UsageError
from csa_cli.paths import atomic_dir, atomic_write_text, csa_home, sha256_stamped
from csa_cli.stages.pull.hub_env import hub_cache_dir, hub_endpoint, is_offline

if TYPE_CHECKING:
    from csa_cli.data.datasets import LabeledDataset

PREFIX = "hf://datasets/"
_SPEC = re.compile(r"^hf://datasets/(?P<repo>[\w.-]+/[\w.-]+)(?:@(?P<rev>[^:]+))?(?::(?P<split>[\w.-]+))?$")
_SPLITS = ("validation", "val", "test", "train")  # the one taken when none is named: eval's first
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".gif")


class HubDatasetSpec(BaseModel):
    """What `hf://datasets/OWNER/NAME[@REV][:SPLIT]` names."""

    model_config = ConfigDict(frozen=True)

    repo: str
    revision: str = "main"
    split: str | None = None

    @property
    def url(self) -> str:
        return f"{PREFIX}{self.repo}" + (f"@{self.revision}" if self.revision != "main" else "") + (f":{self.split}" if self.split else "")


class DatasetFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class DatasetLock(BaseModel):
    """What a Hub dataset split is pinned to: the commit and every file taken from it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_version: int = Field(default=1, alias="schema")
    repo: str
    revision: str
    split: str
    layout: str = Field(pattern="^(imagefolder|parquet)$")
    commit: str = Field(pattern=r"^[0-9a-f]{40}$")
    files: dict[str, DatasetFile]


def parse_spec(text: str) -> HubDatasetSpec:
    match = _SPEC.match(text.strip())
    if match is None:
        raise UsageError(f"not a Hub dataset: {text!r}", hint="write hf://datasets/OWNER/NAME, optionally @REVISION and :SPLIT")
    return HubDatasetSpec(repo=match["repo"], revision=match["rev"] or "main", split=match["split"])


def is_hub_dataset(dataset: str | None) -> bool:
    return bool(dataset) and str(dataset).startswith("hf://")


def _lock_path(spec: HubDatasetSpec) -> Path:
    return csa_home() / "locks" / "datasets" / (spec.repo.replace("/", "--") + ".lock.json")


def _read_locks(path: Path) -> dict[str, DatasetLock]:
    """The pins of a dataset repo, by revision and split ('main:validation')."""
    import json

    try:
        data = json.loads(path.read_text())
        return {key: DatasetLock.model_validate(value) for key, value in data.items()}
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise CsaError(f"the dataset lock {path} is not valid ({str(exc).splitlines()[0]})", hint=f"delete {path} to pin it again") from None


def _write_lock(path: Path, locks: dict[str, DatasetLock]) -> None:
    import json

    atomic_write_text(path, json.dumps({k: v.model_dump(mode="json", by_alias=True) for k, v in sorted(locks.items())}, indent=2) + "\n")


def _storage(repo: str) -> Path:
    return hub_cache_dir() / ("datasets--" + repo.replace("/", "--"))


def _hub_error(exc: BaseException, spec: HubDatasetSpec) -> CsaError:
    """What the Hub said, for a dataset: gated (ImageNet's copy is) and private repos say how to get access."""
    from huggingface_hub import errors as hf

    page = f"{hub_endpoint()}/datasets/{spec.repo}"
    token = "set HF_TOKEN to a token of that account (or run `hf auth login`)"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, hf.GatedRepoError) or status == 403:
        return CsaError(
            f"{spec.url} is gated and this token was not granted access (403)",
            hint=f"accept the dataset's conditions on {page} while logged in, wait for approval if it asks for one, then {token}",
        )
    if status == 401:
        return CsaError(f"the Hub refused {spec.url} without valid credentials (401): it is private or gated", hint=token)
    if isinstance(exc, hf.RevisionNotFoundError):
        return CsaError(f"revision '{spec.revision}' not found in {spec.url} (404)", hint="check the @REVISION part")
    if isinstance(exc, hf.RepositoryNotFoundError) or status == 404:
        return CsaError(f"dataset {spec.repo} not found on {hub_endpoint()} (404)", hint="check OWNER/NAME, and HF_ENDPOINT")
    said = str(exc).splitlines()[0] if str(exc) else "no answer"
    return CsaError(f"pulling {spec.url} failed: {type(exc).__name__}: {said}", hint="check the connection and HF_ENDPOINT, then try again")


def _choose(spec: HubDatasetSpec, names: list[str]) -> tuple[str, str, list[str]]:
    """(split, layout, files of that split) among a repo's files."""
    parquet = [n for n in names if n.endswith(".parquet")]
    images = [n for n in names if n.lower().endswith(_IMAGE_SUFFIXES)]

    def parquet_of(split: str) -> list[str]:
        return sorted(n for n in parquet if re.search(rf"(^|/){re.escape(split)}([-_.][^/]*\.parquet$|/)", n))

    def images_of(split: str) -> list[str]:
        return sorted(n for n in images if n.startswith(f"{split}/"))

    for layout, of in (("parquet", parquet_of), ("imagefolder", images_of)):
        pool = parquet if layout == "parquet" else images
        if not pool:
            continue
        for split in [spec.split] if spec.split else list(_SPLITS):
            if of(split):
                return split, layout, of(split)
        if spec.split is None and layout == "imagefolder" and all(len(PurePosixPath(n).parts) == 2 for n in pool):
            return "all", layout, sorted(pool)  # class folders at the top: one split
    have = sorted({PurePosixPath(n).parts[0] for n in parquet + images})
    if not parquet and not images:
        raise CsaError(
            f"{spec.url} holds neither parquet files nor images", hint="csa reads ImageFolder (SPLIT/CLASS/IMAGE) or parquet (data/SPLIT-*.parquet) repos"
        )
    wanted = spec.split or " / ".join(_SPLITS)
    raise UsageError(f"{spec.url} has no split {wanted}", hint=f"name one after a colon: {', '.join(have[:6])}")


def _files_metadata(spec: HubDatasetSpec, revision: str) -> tuple[str, list[str]]:
    """(commit, file names) of the repo at `revision`."""
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=hub_endpoint()).dataset_info(spec.repo, revision=revision, files_metadata=True)
    except Exception as exc:
        raise _hub_error(exc, spec) from None
    return str(info.sha), [s.rfilename for s in info.siblings or []]


def _download(spec: HubDatasetSpec, commit: str, names: list[str]) -> None:
    from huggingface_hub import hf_hub_download

    with events.progress(f"{spec.url}: pulling", total=len(names), unit="files") as bar:
        for name in names:
            try:
                hf_hub_download(spec.repo, name, repo_type="dataset", revision=commit, cache_dir=hub_cache_dir(), endpoint=hub_endpoint())
            except Exception as exc:
                raise _hub_error(exc, spec) from None
            bar.advance()


def _verify(spec: HubDatasetSpec, lock: DatasetLock) -> Path:
    """The snapshot folder, every locked file present and matching its pin; a mismatch fails, naming the file."""
    folder = _storage(spec.repo) / "snapshots" / lock.commit
    for name, pinned in lock.files.items():
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(name)
        actual = sha256_stamped(path)
        if actual != pinned.sha256 or path.stat().st_size != pinned.size:
            raise CsaError(
                f"{name} of {spec.url} (commit {lock.commit[:12]}) does not match its lock: sha256 {actual[:16]}…, locked {pinned.sha256[:16]}…",
                hint=f"delete {_lock_path(spec)} and the dataset's folder in the HF cache, then pull it again",
            )
    return folder


def pull_dataset(spec: HubDatasetSpec) -> tuple[DatasetLock, Path]:
    """The split's files, pinned and verified: from the cache with no network once pulled, else downloaded and pinned.

    Long because it decides between the pinned cache, offline and a fresh pin in one place.
    """
    path = _lock_path(spec)
    locks = _read_locks(path)
    key = f"{spec.revision}:{spec.split or ''}"
    pinned = locks.get(key)
    if pinned is not None:
        try:
            folder = _verify(spec, pinned)
            events.info(f"{spec.url}: {len(pinned.files)} file(s) at commit {pinned.commit[:12]}, verified (no download)")
            return pinned, folder
        except FileNotFoundError:
            pass  # pinned, but not (or no longer) in the cache: fetch that commit again
    if is_offline():
        raise CsaError(f"offline and {spec.url} is not in the Hugging Face cache at {hub_cache_dir()}", hint="pull it once with network access (same HF_HOME)")
    commit, names = _files_metadata(spec, pinned.commit if pinned is not None else spec.revision)
    split, layout, files = _choose(spec, names)
    readme = ["README.md"] if "README.md" in names and layout == "parquet" else []
    _download(spec, commit, files + readme)
    folder = _storage(spec.repo) / "snapshots" / commit
    lock = DatasetLock(
        repo=spec.repo,
        revision=spec.revision,
        split=split,
        layout=layout,
        commit=commit,
        files={n: DatasetFile(sha256=sha256_stamped(folder / n), size=(folder / n).stat().st_size) for n in files + readme},
    )
    if pinned is not None and pinned.files != lock.files:
        raise CsaError(
            f"{spec.url} at the pinned commit {commit[:12]} now serves other files than its lock says",
            hint=f"delete {path} to pin what the Hub serves now",
        )
    locks[key] = lock
    _write_lock(path, locks)
    events.info(f"{spec.url}: pinned {split} ({layout}, {len(files)} file(s)) at commit {commit[:12]} in {path}")
    return lock, folder


def _class_names(readme: Path) -> list[str] | None:
    """The label names of the README's dataset_info (the Hub's ClassLabel), if it has them."""
    import yaml

    try:
        text = readme.read_text(encoding="utf-8")
        header = yaml.safe_load(text.split("---", 2)[1]) if text.startswith("---") else None
    except (OSError, IndexError, yaml.YAMLError):
        return None
    info = (header or {}).get("dataset_info") or {}
    for config in info if isinstance(info, list) else [info]:
        for feature in config.get("features") or []:
            names = ((feature.get("dtype") or {}).get("class_label") or {}).get("names") if isinstance(feature.get("dtype"), dict) else None
            if feature.get("name") == "label" and isinstance(names, dict):
                return [names[k] for k in sorted(names, key=int)]
    return None


def _class_folders(names: list[str] | None, labels: set[int]) -> dict[int, str]:
    """Label -> folder name: ImageNet's 1000 names become its WordNet ids (so the ImageNet-1K indices hold), else zero-padded indices."""
    from csa_cli.data import imagenet

    if names is not None and len(names) == imagenet.NUM_CLASSES and list(names) in (list(imagenet.class_names()), list(imagenet.full_names())):
        synsets = imagenet.synsets()
        return {label: synsets[label] for label in labels}
    return {label: f"{label:05d}" for label in labels}


def _materialize(spec: HubDatasetSpec, lock: DatasetLock, snapshot: Path) -> Path:
    """A parquet split written out as an ImageFolder under CSA_HOME/datasets, once per commit and split."""
    target = csa_home() / "datasets" / spec.repo.replace("/", "--") / lock.commit / lock.split
    if (target / ".complete").is_file():
        return target
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingBackend(f"{spec.url} is parquet, which needs pyarrow", hint="pip install 'csa[parquet]'") from None
    parquet = sorted(n for n in lock.files if n.endswith(".parquet"))
    names = _class_names(snapshot / "README.md") if "README.md" in lock.files else None
    with atomic_dir(target) as tmp, events.progress(f"{spec.url}: unpacking {lock.split}", total=len(parquet), unit="files") as bar:
        count = 0
        for name in parquet:
            table = pq.read_table(snapshot / name, columns=["image", "label"])
            folders = _class_folders(names, set(table.column("label").to_pylist()))
            for image, label in zip(table.column("image").to_pylist(), table.column("label").to_pylist(), strict=True):
                data, original = _image_bytes(image)
                suffix = Path(original).suffix if original and Path(original).suffix.lower() in _IMAGE_SUFFIXES else ".jpg"
                out = tmp / folders[label] / f"{count:08d}{suffix}"
                out.parent.mkdir(exist_ok=True)
                out.write_bytes(data)
                count += 1
            bar.advance()
        (tmp / ".complete").write_text(f"{count}\n")
    return target


def _image_bytes(image: Any) -> tuple[bytes, str | None]:
    """The Hub's Image feature is stored as {bytes, path}; plain bytes are accepted too."""
    if isinstance(image, dict):
        return bytes(image["bytes"]), image.get("path")
    if isinstance(image, bytes | bytearray):
        return bytes(image), None
    raise CsaError(f"unexpected image cell of type {type(image).__name__}", hint="the parquet's image column must hold image bytes")


def open_dataset(dataset: str, data_dir: str | Path | None = None, *, limit: int | None = None) -> LabeledDataset:
    """Any dataset csa reads (`imagenet-val`, a folder, `hf://datasets/...`), labelled and ordered as data/datasets lays out."""
    from csa_cli.data.datasets import resolve_dataset

    if not is_hub_dataset(dataset):
        return resolve_dataset(dataset, data_dir, limit=limit)
    spec = parse_spec(dataset)
    lock, snapshot = pull_dataset(spec)
    root = _materialize(spec, lock, snapshot) if lock.layout == "parquet" else (snapshot if lock.split == "all" else snapshot / lock.split)
    ds = resolve_dataset(str(root), limit=limit)
    ds.info = ds.info.model_copy(update={"name": f"{PREFIX}{spec.repo}@{lock.commit[:12]}:{lock.split}"})
    return ds
