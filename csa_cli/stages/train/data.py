"""Training data: the ImageFolder, its train/eval transforms, and a sampler that can resume mid-epoch.

Every sample is augmented under its own seed, derived from (run seed, epoch, index): the same image
gets the same crop, flip and RandAugment ops whichever process or DataLoader worker loads it and
whether or not the run was interrupted, which is what makes a resumed epoch bit-exact.
"""

from __future__ import annotations

import hashlib
import random
from typing import TYPE_CHECKING, Any

from csa_cli.errors import CsaError

if TYPE_CHECKING:
    import torch

    from csa_cli.data.datasets import LabeledDataset
    from csa_cli.manifest import Preprocessing
    from csa_cli.stages.train.recipe import Recipe


def derived_seed(*parts: int) -> int:
    """A 32-bit seed from integers (stable across processes and Python runs, unlike hash())."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def seed_everything(seed: int) -> None:
    """Python, numpy and torch RNGs (timm's RandAugment draws from numpy, Mixup from numpy, drop path from torch)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_classes(train: LabeledDataset, val: LabeledDataset | None) -> None:
    """One class cannot be learned; a validation set must name the training set's classes, in its order."""
    if train.info.num_classes < 2 or train.info.classes_present < 2:
        raise CsaError(f"{train.info.root} holds one class ({train.class_names[0]}): nothing to tell apart", hint="give a folder with a sub-folder per class")
    if val is not None and val.class_names != train.class_names:
        extra = sorted(set(val.class_names) - set(train.class_names))[:3]
        missing = sorted(set(train.class_names) - set(val.class_names))[:3]
        raise CsaError(
            f"the validation classes differ from the training classes (only in val: {extra or 'none'}; only in train: {missing or 'none'})",
            hint="give --val-dataset the same class folders as --dataset",
        )


def train_transform(recipe: Recipe, pre: Preprocessing) -> Any:
    """timm's training transform (RandomResizedCrop, flip, RandAugment, random erasing), or for `small` a light affine."""
    if recipe.affine:
        from torchvision import transforms as T

        from csa_cli.data.preprocess import EvalTransform

        # the eval transform after a small rotation/shift/scale of the image, so train and eval see the same framing
        return T.Compose([T.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1)), EvalTransform(pre)])
    from timm.data import create_transform

    return create_transform(
        pre.input_size,
        is_training=True,
        hflip=recipe.hflip,
        auto_augment=recipe.auto_augment,
        interpolation=pre.interpolation,
        mean=pre.mean,
        std=pre.std,
        re_prob=recipe.reprob,
        re_mode="pixel",
    )


class SeededImages:
    """(image, label) pairs of a LabeledDataset, each augmented under derived_seed(seed, epoch, index)."""

    def __init__(self, samples: list[tuple[str, int]], transform: Any, seed: int) -> None:
        self.samples, self.transform, self.seed = samples, transform, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from csa_cli.data.preprocess import open_image

        path, label = self.samples[index]
        seed_everything(derived_seed(self.seed, self.epoch, index))
        return self.transform(open_image(path)), label


class ResumableSampler:
    """Shuffled indices for one process: a seeded permutation per epoch, cut to whole global batches, strided by rank.

    Global batch b holds permutation[b*G:(b+1)*G] (G = batch x processes) whatever the number of
    processes, so one process with batch 16 and two with 8 see the same images in each step.
    `start(epoch, batches_done)` skips the batches a resumed epoch has already trained on.
    """

    def __init__(self, size: int, *, batch_size: int, rank: int, world_size: int, seed: int) -> None:
        self.size, self.batch_size, self.rank, self.world_size, self.seed = size, batch_size, rank, world_size, seed
        self.epoch, self.skip = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return self.size // (self.batch_size * self.world_size)

    def start(self, epoch: int, batches_done: int = 0) -> None:
        self.epoch, self.skip = epoch, batches_done

    def __iter__(self) -> Any:
        import torch

        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(derived_seed(self.seed, self.epoch))).tolist()
        used = order[: self.batches_per_epoch * self.batch_size * self.world_size]
        mine = used[self.rank :: self.world_size]
        return iter(mine[self.skip * self.batch_size :])

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.skip) * self.batch_size


def train_loader(ds: SeededImages, sampler: ResumableSampler, batch_size: int, workers: int) -> Any:
    from torch.utils.data import DataLoader

    return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=True, persistent_workers=False)  # type: ignore[arg-type]


def eval_loader(samples: list[tuple[str, int]], pre: Preprocessing, batch_size: int, workers: int) -> Any:
    """The validation images through csa eval's own transform, so the run's top-1 is the one `csa eval` measures."""
    from torch.utils.data import DataLoader

    from csa_cli.data.preprocess import EvalTransform

    return DataLoader(SeededImages(samples, EvalTransform(pre), 0), batch_size=batch_size, shuffle=False, num_workers=workers)  # type: ignore[arg-type]
