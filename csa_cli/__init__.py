"""csa: a model-zoo manager for Convolutional Self-Attention backbones and their baselines.

The Python API (csa_cli/api/) is re-exported here, loaded on first use so that `import csa_cli`
(and `csa --help`) imports no torch, onnx or pydantic:

    import csa_cli as csa
    record = csa.export("csa-tiny", weights="random")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # what a type checker and an editor see; at run time __getattr__ loads them
    from csa_cli.api import Interrupted, OnEvent, check, compare, engine, evaluate, export, predict, profile, pull, push, quantize, run, train
    from csa_cli.errors import CheckFailed, CsaError, ExitCode, MissingBackend, UpstreamError, UsageError
    from csa_cli.records import Record

# name -> the module that defines it
PUBLIC = {
    **dict.fromkeys(
        ("pull", "train", "push", "export", "check", "quantize", "engine", "evaluate", "predict", "profile", "run", "compare", "OnEvent", "Interrupted"),
        "csa_cli.api",
    ),
    **dict.fromkeys(("CsaError", "UsageError", "CheckFailed", "MissingBackend", "UpstreamError", "ExitCode"), "csa_cli.errors"),
    "Record": "csa_cli.records",
}
__all__ = [  # noqa: RUF022  (in PUBLIC's order: the stages, the errors, the record)
    "__version__",
    "pull",
    "train",
    "push",
    "export",
    "check",
    "quantize",
    "engine",
    "evaluate",
    "predict",
    "profile",
    "run",
    "compare",
    "OnEvent",
    "Interrupted",
    "CsaError",
    "UsageError",
    "CheckFailed",
    "MissingBackend",
    "UpstreamError",
    "ExitCode",
    "Record",
]


def __getattr__(name: str) -> Any:
    # importlib, not an import statement: the package's face sits above every tier (tests/test_layout.py)
    if name in PUBLIC:
        return getattr(importlib.import_module(PUBLIC[name]), name)
    raise AttributeError(f"module 'csa_cli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *PUBLIC])
