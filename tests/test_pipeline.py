"""The pipeline: records between stages, the run-step cache, --redo, resume after a kill, `csa run`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from csa_cli.errors import CsaError
from csa_cli.pipeline import options as run_options
from csa_cli.pipeline import steps
from csa_cli.pipeline.options import STAGES, RunOptions
from csa_cli.pipeline.run import run_pipeline
from csa_cli.pipeline.steps import Skip
from csa_cli.records import Record, make_record
from csa_cli.store import ArtifactMeta, artifact_dir, build_artifact, list_artifacts
from tests.fixtures.cli import CliResult
from tests.fixtures.engine import assert_same_calibration

# ------------------------------------------------------------------ the framework, with stand-in stage bodies


@pytest.fixture
def fake_stages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Stand-in bodies for every stage but fetch: each builds a real artifact and counts its calls."""
    monkeypatch.setenv("CSA_HOME", str(tmp_path / "home"))
    state: dict[str, Any] = {"calls": {s: 0 for s in STAGES}, "fail": None, "skip": {}}

    def body(name: str) -> Callable[[steps.Context], Record]:
        def run(ctx: steps.Context) -> Record:
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
            monkeypatch.setitem(steps.STAGE_BODIES, name, body(name))
    return state


def _statuses(summary: run_options.RunSummary) -> dict[str, str]:
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
    # --redo quantize: the stages before it stay cached, it and everything after it run again
    third = run_pipeline(options.model_copy(update={"redo": "quantize"}))
    assert all(_statuses(third)[s] == "cached" for s in ("evaluate", "export", "check"))
    assert all(_statuses(third)[s] == "done" for s in STAGES[STAGES.index("quantize") :])
    assert fake_stages["calls"]["export"] == 1 and fake_stages["calls"]["quantize"] == 2
    assert third.stage("quantize").path != first.stage("quantize").path
    assert not Path(first.stage("quantize").path).exists()  # the redone stage's old artifact is gone, not shadowed
    assert Path(first.stage("export").path).exists() and Path(first.stage("check").path).exists()


def test_changed_option_reruns_only_the_stages_it_feeds(fake_stages: dict[str, Any]) -> None:
    run_pipeline(RunOptions(model="csa-nano", to="check", limit=8))
    again = run_pipeline(RunOptions(model="csa-nano", to="check", limit=16))
    assert _statuses(again) == {"fetch": "skipped", "evaluate": "done", "export": "cached", "check": "cached"}


def test_weights_file_is_part_of_every_key(fake_stages: dict[str, Any], tmp_path: Path) -> None:
    weights = tmp_path / "mine.safetensors"
    weights.write_bytes(b"first")
    options = RunOptions(model="csa-nano", to="export", weights=str(weights))
    first = run_pipeline(options)
    assert first.stage("fetch").status == "skipped" and first.stage("fetch").reason == "weights from mine.safetensors"
    assert first.weights == str(weights.resolve()) and first.stage("export").record["weights"] == str(weights.resolve())
    assert _statuses(run_pipeline(options))["export"] == "cached"
    weights.write_bytes(b"second")  # another checkpoint at the same path: nothing downstream is cached
    assert _statuses(run_pipeline(options))["export"] == "done"


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
    assert run_options.format_stage_line(summary.stage("evaluate")).startswith("[evaluate] skipped (")


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


# ------------------------------------------------------------------ the real stages, end to end

DOCS = Path(__file__).resolve().parents[1] / "docs" / "pipeline.md"
CSA_EXE = str(Path(sys.executable).with_name("csa")) if Path(sys.executable).with_name("csa").exists() else f"{sys.executable} -m csa_cli"
# Small settings appended to the walkthrough's commands so that they run in seconds here.
SMALL = {
    "quantize": "--calib-images 8",
    "run": "--limit 8 --calib-images 8 --iterations 2 --batch 1,8",
    "compare": "--limit 16 --calib-images 8 --batch 1 --iterations 3",
}


def walkthrough() -> list[str]:
    """The command lines of docs/pipeline.md's walkthrough block."""
    block = DOCS.read_text(encoding="utf-8").split("<!-- walkthrough -->", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.strip().splitlines() if line.strip()]


def walkthrough_line(prefix: str) -> str:
    return next(line for line in walkthrough() if line.startswith(prefix))


def substitute(segment: str, model: str, data: Path) -> str:
    """One `csa ...` command of the walkthrough with the test's model, data and small settings."""
    words = segment.split()
    assert words[0] == "csa"
    extra = SMALL.get(words[1], "")
    return " ".join([CSA_EXE, *words[1:], extra]).replace("MODEL", model).replace("DATA", str(data)).strip()


def shell_pipeline(segments: list[str], workdir: Path) -> tuple[int, list[dict[str, Any] | None], list[str]]:
    """Run `a | b | c` in bash with each stage's record (tee) and stderr kept apart; (rc, records, stderrs)."""
    parts = [f"{seg} 2>{workdir}/err{i}.txt | tee {workdir}/rec{i}.json" for i, seg in enumerate(segments)]
    proc = subprocess.run(["bash", "-c", "set -o pipefail; " + " | ".join(parts) + " >/dev/null"], capture_output=True, text=True, timeout=600)
    records: list[dict[str, Any] | None] = []
    errors = []
    for i in range(len(segments)):
        lines = (workdir / f"rec{i}.json").read_text().splitlines()
        records.append(json.loads(lines[-1]) if lines else None)
        errors.append((workdir / f"err{i}.txt").read_text())
    return proc.returncode, records, errors


def test_walkthrough_is_the_pipeline() -> None:
    lines = walkthrough()
    assert lines[0].split(" | ")[0] == "csa pull MODEL"
    assert [seg.split()[1] for seg in lines[0].split(" | ")] == ["pull", "export", "check", "quantize", "engine"]
    assert {line.split()[1] for line in lines} == {"pull", "run", "compare", "train"}  # train | push, then pull: tests/test_push.py


def test_walkthrough_shell_pipeline_then_run_twice(hub_env: Any, imagenet_photos: Any, tmp_path: Path, csa: Callable[..., CliResult]) -> None:
    # one loopback Hub and CSA_HOME for both halves: the run reuses what the stages made, as a user's would
    segments = [substitute(seg, "test-csa", imagenet_photos.val_dir) for seg in walkthrough_line("csa pull").split(" | ")]
    rc, records, errors = shell_pipeline(segments, tmp_path)
    assert rc == 0, "\n".join(errors)
    pulled, exported, checked, quantized, bundle = records
    assert [r["kind"] for r in records] == ["checkpoint", "onnx", "onnx", "quantized", "bundle"]  # type: ignore[index]
    assert quantized["precision"] == "mixed" and bundle["precision"] == "mixed"  # type: ignore[index]  # mixed: the default of every command that quantizes
    assert all(r["model"] == "test-csa" and r["weights"] == "pretrained" for r in records)  # type: ignore[index]
    # each stage consumed the record before it
    assert exported["weights_hash"] == pulled["weights_hash"]  # type: ignore[index]
    assert checked["path"] == exported["path"] and checked["check"]["compliant"] is True  # type: ignore[index]
    assert quantized["source_onnx"] == checked["path"]  # type: ignore[index]
    assert Path(bundle["path"]).is_dir() and (Path(bundle["path"]) / "build.sh").is_file()  # type: ignore[index]
    _run_twice_then_redo(imagenet_photos, csa)


def _run_twice_then_redo(imagenet_photos: Any, csa: Callable[..., CliResult]) -> None:
    """`csa run` twice (the second all cached, a fraction of the time), then --redo quantize."""
    import shlex

    line = substitute(walkthrough_line("csa run MODEL --dataset DATA --target orin"), "test-csa", imagenet_photos.val_dir)
    args = shlex.split(line.removeprefix(CSA_EXE))
    first = csa(*args)
    assert first.exit_code == 0, first.stderr
    # fetch finds what `csa pull` fetched above (verified, nothing downloaded); every other stage runs
    # cpu-int8 (the study's second quantization) is `csa compare`'s; `csa run` leaves it out unless --cpu-int8
    assert _statuses_of(first.record) == {"fetch": "cached", **{s: "done" for s in STAGES[1:]}, "cpu-int8": "skipped"}, first.stderr
    assert "[quantize] done" in first.stderr  # plain lines on a non-terminal stderr
    second = csa(*args)
    assert second.exit_code == 0, second.stderr
    assert _statuses_of(second.record) == {**{s: "cached" for s in STAGES}, "cpu-int8": "skipped"}
    assert second.record["records"] == first.record["records"]  # the same artifacts and results, found again
    assert second.record["seconds"] < 0.25 * first.record["seconds"], (first.record["seconds"], second.record["seconds"])
    # `csa run MODEL --batch 1,8 --precision mixed --target orin`: one calibrated graph. Every graph in the bundle
    # holds the Q/DQ scales and weights of the graph eval-mixed evaluated, tensor by tensor (issue 15, item 5)
    records = first.record["records"]
    bundle = Path(records["engine"]["path"])
    graphs = sorted((bundle / "onnx").glob("test-csa_b*.onnx"))
    assert [p.name for p in graphs] == ["test-csa_b1_qdq.onnx", "test-csa_b8_qdq.onnx"] and not (bundle / "calib").exists()
    evaluated = Path(records["eval-mixed"]["path"])
    assert evaluated == Path(records["quantize"]["path"]) and records["eval-mixed"]["precision"] == "mixed"
    for graph in graphs:
        assert_same_calibration(evaluated, graph)
    assert records["engine"]["precision"] == "mixed" and records["engine"]["int8_source"] == "qdq"
    assert "held-out images" in records["engine"]["validation"]
    assert [r["batch"] for r in records["profile"]["results"]] == [1, 8]
    evals = [r for k, r in first.record["records"].items() if k in ("evaluate", "eval-mixed")]
    assert [e["precision"] for e in evals] == ["fp32", "mixed"] and all(e["images"] > 0 for e in evals)
    # --redo quantize: the stages before it stay cached, it and the later ones run again
    redo_line = substitute(walkthrough_line("csa run MODEL --dataset DATA --target orin --redo"), "test-csa", imagenet_photos.val_dir)
    third = csa(*shlex.split(redo_line.removeprefix(CSA_EXE)))
    assert third.exit_code == 0, third.stderr
    statuses = _statuses_of(third.record)
    assert all(statuses[s] == "cached" for s in ("fetch", "evaluate", "export", "check"))
    assert all(statuses[s] == "done" for s in ("quantize", "eval-mixed", "engine", "profile"))


def test_broken_stage_fails_the_shell_pipeline_with_its_message(hub_env: Any, imagenet_photos: Any, tmp_path: Path) -> None:
    segments = [substitute(seg, "test-csa", imagenet_photos.val_dir) for seg in walkthrough_line("csa pull").split(" | ")]
    segments[1] += " --batch 0"  # export breaks in the middle
    rc, records, errors = shell_pipeline(segments, tmp_path)
    assert rc == 1
    message = next(line for line in errors[1].splitlines() if line.startswith("Error: ")).removeprefix("Error: ")
    assert records[1] == {"schema": 1, "kind": "error", "stage": "export", "message": message}
    for later in (2, 3, 4):  # every later stage exits at once, silently, passing the record on
        assert "Error:" not in errors[later], errors[later]
        assert records[later] == records[1]  # the upstream record, repeated unchanged (no nesting)
    assert sum(e.count("Error:") for e in errors) == 1


def _statuses_of(record: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in record["stages"]}


def _all_artifacts_sound(home: Path) -> int:
    """Every non-hidden artifact folder is complete: artifact.json, its files, ONNX files that load and check."""
    import onnx

    root = home / "artifacts"
    count = 0
    for folder in sorted(p for p in root.glob("*/*") if p.is_dir() and not p.name.startswith(".")):
        meta = ArtifactMeta.model_validate_json((folder / "artifact.json").read_text())
        for name in meta.files:
            assert (folder / name).is_file(), folder / name
            if name.endswith(".onnx"):
                onnx.checker.check_model(str(folder / name))
        count += 1
    return count


def test_run_killed_mid_stage_resumes(tmp_path: Path, csa_proc: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**os.environ, "CSA_HOME": str(tmp_path / "home")}
    args = [sys.executable, "-m", "csa_cli", "run", "csa-nano", "--to", "check", "--weights", "random"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    seen = []
    for line in _lines(proc.stderr):
        seen.append(line)
        if line.startswith("[export] running"):
            time.sleep(0.3)  # inside the export: model built, ONNX being written or verified
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, seen
    rest = proc.stderr.read()
    assert "[export] done" not in rest  # it really died mid-stage
    _all_artifacts_sound(tmp_path / "home")  # nothing half-written looks complete
    rerun = csa_proc("run", "csa-nano", "--to", "check", "--weights", "random", env={"CSA_HOME": str(tmp_path / "home")})
    assert rerun.exit_code == 0, rerun.stderr
    assert _statuses_of(rerun.record) == {"fetch": "skipped", "evaluate": "skipped", "export": "done", "check": "done"}
    assert _all_artifacts_sound(tmp_path / "home") >= 2  # the export and the run steps
    monkeypatch.setenv("CSA_HOME", str(tmp_path / "home"))
    exported = Path(rerun.record["records"]["export"]["path"])
    assert any(folder == exported.parent for folder, _ in list_artifacts("csa-nano"))


def _lines(stream: Any) -> Iterator[str]:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            return
        yield line


def test_live_table_shows_each_stage(fake_stages: dict[str, Any]) -> None:
    from rich.console import Console

    from csa_cli.cli.run import stages_table

    fake_stages["skip"] = {"engine": "TensorRT not installed here"}
    summary = run_pipeline(RunOptions(model="csa-nano", to="profile"))
    console = Console(record=True, width=200)
    console.print(stages_table(summary))
    text = console.export_text()
    for s in summary.stages:
        line = next(row for row in text.splitlines() if f" {s.name} " in row)
        assert s.status in line
    assert "TensorRT not installed here" in text and "csa run csa-nano (weights: random)" in text


def test_changed_dataset_is_not_cached(fake_stages: dict[str, Any], imagenet_photos: Any, tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(imagenet_photos.val_dir, data)
    options = RunOptions(model="csa-nano", to="evaluate", dataset=str(data))
    assert _statuses(run_pipeline(options))["evaluate"] == "done"
    assert _statuses(run_pipeline(options))["evaluate"] == "cached"
    next(p for p in sorted(data.rglob("*.JPEG"))).unlink()  # same folder, other images
    assert _statuses(run_pipeline(options))["evaluate"] == "done"
