"""Every example at the end of every command's --help runs, in-process, with the walkthrough's substitutions.

The zoo models become their test-size stand-ins (tests/data/test_manifest.toml, weights on the
loopback Hub), ~/imagenet/val the generated photos, hf://datasets/OWNER/... a dataset repo on the
loopback Hub, my-org/ the test's namespace on it (with a write token for `csa push`), and the
files an example names (model.onnx, cat.jpg, csa_tiny.pth, ...) are made in the folder it runs
in. Small settings are appended (as the walkthrough test does) so that each runs in seconds. An
example that needs TensorRT or a GPU must exit 4 where they are absent.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from csa_cli.cli import COMMANDS
from tests.fixtures.cli import CliResult
from tests.fixtures.hub import HubEnv
from tests.hubserver import DATASETS

HELP_PAGES = [c for c in dict.fromkeys(COMMANDS) if c != "cache"] + ["cache ls", "cache rm", "cache prune"]

# Appended to each command of an example (the last value of an option wins), so that it runs in seconds here.
SMALL = {
    "eval": "--limit 8 --workers 0",
    "quantize": "--calib-images 4",
    "run": "--limit 4 --calib-images 4 --iterations 1",
    "compare": "--limit 4 --calib-images 4 --iterations 1 --batch 1 --no-cpu-int8",  # the CPU INT8 row: tests/test_compare.py
    "profile": "--iterations 1 --warmup 0 --batch 1",
    "train": "--epochs 1 --max-steps 1 --batch-size 4 --img-size 64 --workers 0",
}


def _has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


NEEDS_TENSORRT = importlib.util.find_spec("tensorrt") is None
# What an example ends with when it is not 0, and why.
EXPECTED = {
    "csa check model.onnx --rules all --report check-report": (3, "csa-nano is restricted-mode compliant, not DLA compliant: the check fails"),
    "csa export convnext-tiny --weights pretrained | csa eval --dataset ~/imagenet/val --min-top1 80": (3, "the test model's weights are random"),
    "csa export convnext-tiny --weights pretrained | csa check": (3, "ConvNeXt's LayerNorm and GELU are outside restricted mode"),
    "csa engine convnext-tiny --precision fp16 --batch 1,8": (4 if NEEDS_TENSORRT else 0, "TensorRT"),
    "csa profile csa-tiny --device cuda --precision fp16 --batch 1,8": (0 if _has_cuda() else 4, "a GPU"),
}


def help_examples(csa: Callable[..., CliResult], page: str) -> list[str]:
    """The command lines under "Examples:" in `csa PAGE --help`, as a reader sees them."""
    result = csa(*page.split(), "--help")
    assert result.exit_code == 0, result.stderr
    assert "Examples:" in result.stdout, f"csa {page} --help shows no examples"
    lines = [line.strip() for line in result.stdout.split("Examples:", 1)[1].splitlines()]
    return [line for line in lines if line.startswith("csa ")]


def test_every_help_page_ends_with_two_or_three_examples(csa: Callable[..., CliResult]) -> None:
    for page in HELP_PAGES:
        found = help_examples(csa, page)
        assert 2 <= len(found) <= 3, (page, found)
        assert all(line.split()[1 : 1 + len(page.split())] == page.split() or "|" in line for line in found), (page, found)
    every = {line for page in HELP_PAGES for line in help_examples(csa, page)}
    assert set(EXPECTED) <= every, f"EXPECTED names examples no help shows any more: {set(EXPECTED) - every}"


def test_root_help_shows_whole_one_line_summaries(csa: Callable[..., CliResult]) -> None:
    result = csa("--help", env={"COLUMNS": "80"})
    listing = result.stdout.split("Commands:", 1)[1].splitlines()
    rows = [line for line in listing if line.strip()]
    assert len(rows) == len(dict.fromkeys(COMMANDS)), rows  # one line each: nothing wrapped onto a second line
    for line in rows:
        assert len(line) <= 80 and line.rstrip().endswith(".") and "..." not in line, line


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CSA_HOME for the examples of every page: an export one page made is cached for the next."""
    return tmp_path_factory.mktemp("examples-home")


@pytest.fixture
def example_env(
    hub_env: HubEnv, imagenet_photos: Any, exported: Callable[..., Path], shared_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: Any
) -> dict[str, str]:
    """The folder the examples run in, with the files they name; returns the substitutions.

    `csa cache` pages keep hub_env's own CSA_HOME: what they remove is theirs alone.
    """
    if not request.node.callspec.params["page"].startswith("cache"):
        monkeypatch.setenv("CSA_HOME", str(shared_home))
    import torch

    from csa_cli.models import create_model
    from csa_cli.models.reference import to_reference_state_dict
    from tests.test_engine import _times
    from tests.test_hub_datasets import _parquet, _readme

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    photos = sorted(imagenet_photos.val_dir.rglob("*.JPEG"))
    shutil.copyfile(photos[0], work / "cat.jpg")
    shutil.copyfile(photos[-1], work / "dog.jpg")
    shutil.copyfile(exported("csa-nano"), work / "model.onnx")
    shutil.copyfile(hub_env.manifest, work / "my-zoo.toml")
    ref = to_reference_state_dict(create_model("csa-nano").eval())
    torch.save({"model": ref, "model_ema": ref, "epoch": 1}, work / "csa_tiny.pth")
    (work / "times.json").write_text(json.dumps(_times(20)))
    from csa_cli.data import imagenet

    index = imagenet.synset_index()
    repo = f"{hub_env.namespace}/imagenet-mini"
    hub_env.server.add_dataset(
        repo,
        {"data/validation-00000-of-00001.parquet": _parquet(photos, [index[p.parent.name] for p in photos]), "README.md": _readme(imagenet.full_names())},
    )
    if request.node.callspec.params["page"] == "push":
        _push_setup(hub_env, work, monkeypatch)
    yield {
        "my-org/": f"{hub_env.namespace}/",
        "timm/convnext_tiny.fb_in1k": hub_env.repo("test-convnext"),
        "convnext-tiny": "test-convnext",
        "csa-tiny": "csa-nano",
        "~/imagenet/val": str(imagenet_photos.val_dir),
        "hf://datasets/OWNER/": f"hf://datasets/{hub_env.namespace}/",
    }
    hub_env.server.remove_repo(DATASETS + repo)


def _push_setup(hub_env: HubEnv, work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """runs/digits/model.safetensors (a csa-nano checkpoint, as `csa train` leaves one) and a write token the Hub takes."""
    from csa_cli.models import create_model
    from csa_cli.models.checkpoint import save_checkpoint
    from tests.fixtures.hub import TEST_TOKEN

    save_checkpoint(create_model("csa-nano", num_classes=10).eval(), work / "runs" / "digits" / "model.safetensors", "csa-nano")
    hub_env.server.write_tokens.add(TEST_TOKEN)
    monkeypatch.setenv("HF_TOKEN", TEST_TOKEN)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")


def _bundle_with_times(work: Path) -> None:
    """bundle/results/times_b1.json, as a bundle's validate.sh leaves it on the device."""
    from csa_cli.stages.engine.stage import engine_stage
    from tests.test_engine import _times

    record = engine_stage("csa-nano", precision="fp16", target="orin", weights="random")
    shutil.copytree(str(record.path), work / "bundle")
    (work / "bundle" / "results").mkdir(exist_ok=True)
    (work / "bundle" / "results" / "times_b1.json").write_text(json.dumps(_times(20, seed=2)))


def run_example(csa: Callable[..., CliResult], line: str, subs: dict[str, str]) -> list[CliResult]:
    """An example's pipe, stage by stage in-process, each stage's stdout the next one's stdin."""
    results: list[CliResult] = []
    stdin = None
    for segment in line.split(" | "):
        for old, new in subs.items():
            segment = segment.replace(old, new)
        words = shlex.split(segment)
        assert words[0] == "csa"
        words += SMALL.get(words[1], "").split()
        result = csa(*words[1:], input=stdin)
        results.append(result)
        stdin = result.stdout
    return results


@pytest.mark.parametrize("page", HELP_PAGES)
def test_every_example_runs(page: str, csa: Callable[..., CliResult], example_env: dict[str, str]) -> None:
    if page == "import-timings":
        _bundle_with_times(Path.cwd())
    for line in help_examples(csa, page):
        results = run_example(csa, line, example_env)
        codes = [r.exit_code for r in results]
        want, why = EXPECTED.get(line, (0, ""))
        failed = next((c for c in codes if c != 0), 0)
        assert failed == want, f"{line!r} exited {codes} ({why or 'expected 0'}):\n" + "\n".join(r.stderr for r in results)
        if want == 4:  # what is missing, named
            assert "TensorRT" in results[-1].stderr or "GPU" in results[-1].stderr or "CUDA" in results[-1].stderr, results[-1].stderr
        if want == 0 and results[-1].stdout.strip():
            assert results[-1].records[-1]["kind"] != "error"
