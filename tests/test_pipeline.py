"""The pipeline: records between stages, the run-step cache, --redo, resume after a kill, `csa run`."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from csa_cli.core import pipeline
from csa_cli.core.artifacts import artifact_dir, build_artifact
from csa_cli.core.pipeline import STAGES, RunOptions, Skip, run_pipeline
from csa_cli.errors import CsaError
from csa_cli.records import Record, make_record
from tests.fixtures.cli import CliResult

# ------------------------------------------------------------------ the framework, with stand-in stage bodies


@pytest.fixture
def fake_stages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Stand-in bodies for every stage but fetch: each builds a real artifact and counts its calls."""
    monkeypatch.setenv("CSA_HOME", str(tmp_path / "home"))
    state: dict[str, Any] = {"calls": {s: 0 for s in STAGES}, "fail": None, "skip": {}}

    def body(name: str) -> Callable[[pipeline.Context], Record]:
        def run(ctx: pipeline.Context) -> Record:
            state["calls"][name] += 1
            if state["fail"] == name:
                raise CsaError(f"{name} broke on purpose", hint="fix it")
            if name in state["skip"]:
                raise Skip(state["skip"][name])
            key = f"k{state['calls'][name]}"
            with build_artifact(ctx.model, name, key, {"stage": name}) as tmp:
                (tmp / "out.bin").write_bytes(os.urandom(64))
            path = artifact_dir(ctx.model, name, key) / "out.bin"
            upstream = sorted(ctx.records)
            return make_record("onnx", model=ctx.model, path=str(path), weights=ctx.weights, upstream=upstream)

        return run

    for name in STAGES:
        if name != "fetch":
            monkeypatch.setitem(pipeline.STAGE_BODIES, name, body(name))
    return state


def _statuses(summary: pipeline.RunSummary) -> dict[str, str]:
    return {s.name: s.status for s in summary.stages}


def test_second_run_is_cached_and_redo_redoes_from_a_stage(fake_stages: dict[str, Any]) -> None:
    options = RunOptions(model="csa-nano", to="profile", target="orin")
    first = run_pipeline(options)
    assert first.ok and first.weights == "random"
    assert _statuses(first) == {"fetch": "skipped", **{s: "done" for s in STAGES[1:]}}
    assert first.stage("fetch").reason == "no weights published: random weights"
    # every record downstream of random weights says so, and each stage saw the records before it
    assert all(s.record["weights"] == "random" for s in first.stages if s.record)
    assert first.stage("profile").record["upstream"] == sorted(STAGES[1:-1])
    second = run_pipeline(options)
    assert _statuses(second) == {"fetch": "skipped", **{s: "cached" for s in STAGES[1:]}}
    assert all(n == 1 for s, n in fake_stages["calls"].items() if s != "fetch")
    assert [s.path for s in second.stages] == [s.path for s in first.stages]
    # --redo check: export stays cached, check and everything after it runs again (new artifacts)
    third = run_pipeline(options.model_copy(update={"redo": "check"}))
    assert _statuses(third)["export"] == "cached"
    assert all(_statuses(third)[s] == "done" for s in STAGES[STAGES.index("check") :])
    assert fake_stages["calls"]["export"] == 1 and fake_stages["calls"]["check"] == 2
    assert third.stage("check").path != first.stage("check").path
    assert not Path(first.stage("check").path).exists()  # the redone stage's old artifact is gone, not shadowed


def test_changed_option_reruns_only_the_stages_it_feeds(fake_stages: dict[str, Any]) -> None:
    run_pipeline(RunOptions(model="csa-nano", to="check", limit=8))
    again = run_pipeline(RunOptions(model="csa-nano", to="check", limit=16))
    assert _statuses(again) == {"fetch": "skipped", "evaluate": "done", "export": "cached", "check": "cached"}


def test_failing_stage_stops_the_run_with_its_message(fake_stages: dict[str, Any]) -> None:
    fake_stages["fail"] = "quantize"
    summary = run_pipeline(RunOptions(model="csa-nano", to="profile"))
    assert not summary.ok and summary.failed_stage == "quantize"
    assert summary.message == "quantize broke on purpose (fix it)"
    assert _statuses(summary)["quantize"] == "failed" and _statuses(summary)["profile"] == "pending"
    assert fake_stages["calls"]["profile"] == 0
    # fixed: the rerun resumes at quantize, the stages before it are cached
    fake_stages["fail"] = None
    resumed = run_pipeline(RunOptions(model="csa-nano", to="profile"))
    assert resumed.ok and _statuses(resumed)["export"] == "cached" and _statuses(resumed)["quantize"] == "done"


def test_skipped_stage_is_shown_with_its_reason(fake_stages: dict[str, Any]) -> None:
    fake_stages["skip"] = {"evaluate": "no dataset (give --dataset to evaluate)"}
    summary = run_pipeline(RunOptions(model="csa-nano", to="export"))
    assert summary.ok and summary.stage("evaluate").status == "skipped"
    assert summary.stage("evaluate").reason == "no dataset (give --dataset to evaluate)"
    assert pipeline.format_stage_line(summary.stage("evaluate")).startswith("[evaluate] skipped (")


def test_removed_artifact_is_rebuilt(fake_stages: dict[str, Any]) -> None:
    first = run_pipeline(RunOptions(model="csa-nano", to="check"))
    Path(first.stage("export").path).unlink()  # e.g. `csa cache rm`
    second = run_pipeline(RunOptions(model="csa-nano", to="check"))
    assert _statuses(second)["export"] == "done" and Path(second.stage("export").path).is_file()


def test_run_usage_errors(csa: Callable[..., CliResult]) -> None:
    for args, needle in (
        (["--to", "deploy"], "unknown stage 'deploy'"),
        (["--batch", "0"], "--batch"),
        (["--limit", "0"], "--limit"),
        (["--to", "export", "--redo", "profile"], "--redo profile"),
        (["--precision", "int4"], "--precision"),
    ):
        result = csa("run", "csa-nano", *args)
        assert result.exit_code == 2, (args, result.stderr)
        assert needle in result.stderr
    result = csa("run", "csa-nanoo")
    assert result.exit_code == 1 and "did you mean csa-nano" in result.stderr


def test_run_fails_with_the_stage_message(csa: Callable[..., CliResult]) -> None:
    result = csa("run", "csa-nano", "--weights", "pretrained", "--to", "export")
    assert result.exit_code == 1
    assert "stage 'fetch' failed: csa-nano has no published weights" in result.stderr
    assert result.record["kind"] == "error" and result.record["stage"] == "run"
