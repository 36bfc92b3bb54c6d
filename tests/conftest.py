"""Session setup shared by every test.

- CSA_HOME and HF_HOME point into a session temp folder: tests never touch a user's caches.
- CSA_MANIFEST merges tests/data/test_manifest.toml (the smallest model of each family);
  XDG_CONFIG_HOME too points into the session folder, so a user's own default manifest never joins in.
- Every module in tests/fixtures/ is loaded as a plugin: one file of fixtures per area.
- `gpu` / `tensorrt` tests skip with the reason where that hardware or library is absent.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
TEST_MANIFEST = TESTS / "data" / "test_manifest.toml"

_session_root = Path(tempfile.mkdtemp(prefix="csa-tests-"))
os.environ["CSA_HOME"] = str(_session_root / "csa-home")
os.environ["HF_HOME"] = str(_session_root / "hf-home")
os.environ.pop("HF_HUB_CACHE", None)
os.environ.pop("HF_HUB_OFFLINE", None)
os.environ["CSA_MANIFEST"] = str(TEST_MANIFEST)
os.environ["XDG_CONFIG_HOME"] = str(_session_root / "config")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

pytest_plugins = sorted(f"tests.fixtures.{p.stem}" for p in (TESTS / "fixtures").glob("*.py") if p.stem != "__init__")


def _has_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    no_gpu = pytest.mark.skip(reason="needs a CUDA GPU: none here (run benchmarks/gpu.sh on a GPU machine)")
    no_trt = pytest.mark.skip(reason="needs TensorRT: not installed here (pip install 'csa[tensorrt]' where NVIDIA's index is reachable)")
    cuda = None
    trt = importlib.util.find_spec("tensorrt") is not None
    for item in items:
        if "gpu" in item.keywords:
            cuda = _has_cuda() if cuda is None else cuda
            if not cuda:
                item.add_marker(no_gpu)
        if "tensorrt" in item.keywords and not trt:
            item.add_marker(no_trt)


@pytest.fixture(scope="session")
def session_root() -> Path:
    return _session_root


@pytest.fixture(scope="session")
def test_manifest_path() -> Path:
    return TEST_MANIFEST
