"""The ImageNet-1K class list: sorted WordNet ids (the index order every pretrained head uses) and names.

The package data in csa_cli/data/ was generated once from timm's timm/data/_info/ files
(imagenet_synsets.txt and imagenet_synset_to_lemma.txt); run this module to regenerate it.
"""

from __future__ import annotations

import functools
from importlib import resources

NUM_CLASSES = 1000
_SYNSETS_FILE = "imagenet_synsets.txt"
_NAMES_FILE = "imagenet_synset_names.txt"


def _read(name: str) -> str:
    return resources.files("csa_cli").joinpath("data", name).read_text(encoding="utf-8")


@functools.cache
def synsets() -> tuple[str, ...]:
    """The 1000 WordNet ids in sorted order: position = class index."""
    ids = tuple(_read(_SYNSETS_FILE).split())
    if len(ids) != NUM_CLASSES or list(ids) != sorted(ids):
        raise RuntimeError("csa_cli/data/imagenet_synsets.txt is damaged: reinstall csa")
    return ids


@functools.cache
def synset_index() -> dict[str, int]:
    """WordNet id -> class index."""
    return {s: i for i, s in enumerate(synsets())}


@functools.cache
def class_names() -> tuple[str, ...]:
    """Human-readable names, by class index (the first lemma only: 'tabby', not 'tabby, tabby cat')."""
    names = dict(line.split("\t", 1) for line in _read(_NAMES_FILE).splitlines() if line.strip())
    return tuple(names[s].split(",")[0].strip() for s in synsets())


@functools.cache
def full_names() -> tuple[str, ...]:
    """Every lemma of each class, by class index."""
    names = dict(line.split("\t", 1) for line in _read(_NAMES_FILE).splitlines() if line.strip())
    return tuple(names[s].strip() for s in synsets())


def is_synset(name: str) -> bool:
    return name in synset_index()


def _regenerate() -> None:  # pragma: no cover - a maintenance script, run once by hand
    from pathlib import Path

    import timm

    info = Path(timm.__file__).parent / "data" / "_info"
    ids = (info / "imagenet_synsets.txt").read_text().split()
    assert len(ids) == NUM_CLASSES and ids == sorted(ids)
    lemma = dict(line.split("\t", 1) for line in (info / "imagenet_synset_to_lemma.txt").read_text().splitlines() if line.strip())
    data = Path(__file__).resolve().parent.parent / "data"
    (data / _SYNSETS_FILE).write_text("\n".join(ids) + "\n")
    (data / _NAMES_FILE).write_text("".join(f"{s}\t{lemma[s].strip()}\n" for s in ids))


if __name__ == "__main__":  # pragma: no cover
    _regenerate()
