"""Make csa_reference.npz: a fixed input and what the CSA oracle computes for it, for the tests to pin.

The numbers come from `reference_forward` / `reference_block` in tests/test_oracles_csa.py, the CSA
network written out from shared/reference/csa-architecture.md with plain functional ops over a
reference-layout (DL4AGX) state dict; they never run csa_cli/models/csa.py's forward. Weights and
inputs are drawn from numpy's RandomState(20) / RandomState(21) (`seeded_state_dict`, `inputs`), so
the file does not depend on torch's random generator. csa_cli's model only supplies the parameter
names and shapes (csa-nano; a CSABlock of dim 8, 2 heads, reduced side 3).

    PYTHONPATH=. python tests/data/oracles/make_csa_reference.py

Rerun only when the architecture itself changes (shared/reference/csa-architecture.md), never to
make a failing test pass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from csa_cli.models.reference import to_reference_state_dict
from tests.test_oracles_csa import BLOCK, block, block_reference_sd, inputs, nano, reference_block, reference_forward

OUT = Path(__file__).with_name("csa_reference.npz")


def main() -> None:
    image, feature = inputs()
    with torch.no_grad():
        logits, feats = reference_forward(image, to_reference_state_dict(nano()))
        block_out = reference_block(feature, block_reference_sd(block()), "stages.0.0", BLOCK["heads"], BLOCK["reduced"])
    arrays = {
        "image": image.numpy(),
        "logits": logits.numpy(),
        "block_input": feature.numpy(),
        "block_output": block_out.numpy(),
        **{f"stage{i}_mean": f.mean(dim=(2, 3)).numpy() for i, f in enumerate(feats)},
    }
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))
    print(f"top class {int(logits.argmax())}, logits in [{float(logits.min()):.3f}, {float(logits.max()):.3f}]")


if __name__ == "__main__":
    main()
