"""The resume state of a run: written atomically at every epoch end and on a scheduler's signal.

checkpoint/state.pt holds the tensors (model, EMA, optimizer, grad scaler, scheduler, torch RNG)
and is read back with torch.load(weights_only=True): nothing pickled is ever executed.
checkpoint/state.json (ResumeState) says where the run stands; it is renamed into place after
state.pt, so a state.json always describes a complete state.pt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from csa_cli.errors import CsaError, UsageError
from csa_cli.paths import atomic_path
from csa_cli.stages.train.records import STATE_DIR, STATE_JSON, STATE_TENSORS, ResumeState

if TYPE_CHECKING:
    from csa_cli.stages.train.recipe import Recipe


def state_paths(output: Path) -> tuple[Path, Path]:
    folder = output / STATE_DIR
    return folder / STATE_JSON, folder / STATE_TENSORS


def save_state(output: Path, state: ResumeState, tensors: dict[str, Any]) -> None:
    import torch

    json_path, pt_path = state_paths(output)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(pt_path) as tmp:
        torch.save(tensors, tmp)
    with atomic_path(json_path) as tmp:
        Path(tmp).write_text(state.model_dump_json(indent=2), encoding="utf-8")


def read_state(output: Path) -> ResumeState | None:
    """The saved state of a run in `output`, or None when it holds none."""
    json_path, pt_path = state_paths(output)
    if not json_path.is_file():
        return None
    try:
        state = ResumeState.model_validate(json.loads(json_path.read_text(encoding="utf-8")))
    except (ValidationError, json.JSONDecodeError) as exc:
        raise UsageError(
            f"{json_path} is not a csa training state ({str(exc).splitlines()[0]})", hint="give --output the folder of a `csa train` run"
        ) from None
    if not pt_path.is_file():
        raise CsaError(f"{pt_path} is missing: the run's state is incomplete", hint="start again without --resume, into a new --output")
    return state


def check_resumable(state: ResumeState, *, model: str, recipe: Recipe, world_size: int, fingerprint: str, output: Path) -> None:
    """A resume folder must come from the same model, recipe, data and number of processes."""
    from csa_cli.stages.train.recipe import same_run

    if state.model != model:
        raise UsageError(f"{output} holds a {state.model} run, not {model}", hint=f"resume with csa train {state.model}, or give a new --output")
    differ = same_run(state.recipe, recipe)
    if differ:
        shown = ", ".join(f"{k} {state.recipe.get(k)!r} -> {recipe.model_dump(mode='json').get(k)!r}" for k in differ[:3])
        raise UsageError(f"{output} was trained with another recipe ({shown})", hint="resume with the same --recipe and options, or give a new --output")
    if state.dataset_fingerprint != fingerprint:
        raise UsageError(f"{output} was trained on other data (fingerprint {state.dataset_fingerprint})", hint="resume with the same --dataset")
    if state.world_size != world_size:
        raise UsageError(f"{output} ran on {state.world_size} process(es), not {world_size}", hint=f"resume with --nproc-per-node {state.world_size}")


def load_tensors(output: Path) -> dict[str, Any]:
    import torch

    _, pt_path = state_paths(output)
    return torch.load(pt_path, map_location="cpu", weights_only=True)  # type: ignore[no-any-return]
