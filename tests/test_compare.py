"""`csa compare`: the seed's study from stored results, its markdown report and plots."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from csa_cli.graph.traffic import traffic
from csa_cli.pipeline.compare import CPU_INT8_LABEL, build_study
from csa_cli.pipeline.report import MISSING, PLOTS, REPORT_FILE, to_markdown, write_report
from csa_cli.store import load_results, store_result
from tests.fixtures.cli import CliResult


def parse_markdown_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """heading ('Table 1', 'Fig. 5', ...) -> rows as {column: cell} from a markdown report."""
    tables: dict[str, list[dict[str, str]]] = {}
    heading = None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            heading = line[3:].split(":")[0]
        elif line.startswith("| ") and heading and heading not in tables:
            cols = [c.strip() for c in line.strip("|").split("|")]
            rows = []
            i += 2  # the separator line
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(dict(zip(cols, [c.strip() for c in lines[i].strip("|").split("|")], strict=True)))
                i += 1
            tables[heading] = rows
            continue
        i += 1
    return tables


def assert_cell(cell: str, value: float | None, digits: int) -> None:
    """A report cell shows the stored value with `digits` decimals, or 'missing' when none was stored."""
    if value is None:
        assert cell.startswith(MISSING), cell
    else:
        assert float(cell.split()[0]) == pytest.approx(value, abs=0.51 * 10**-digits), (cell, value)


def check_png(path: Path) -> None:
    """A real, non-trivial image: a PNG of some size whose pixels are not all the same."""
    from PIL import Image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000
    with Image.open(path) as img:
        pixels = np.asarray(img.convert("L"), dtype=np.float32)
    assert min(pixels.shape) >= 300
    assert pixels.std() > 5.0
    assert len(np.unique(pixels)) > 20


def _table_by_model(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {r["model"]: r for r in rows}


def check_report_against_store(report: str, models: list[str], batches: list[int], baseline: str) -> None:
    """Every number in the report equals the stored result it came from (to its printed precision)."""
    tables = parse_markdown_tables(report)
    assert set(tables) >= {"Table 1", "Fig. 5", "Fig. 6", "Fig. 7"}
    t1, f5, f6, f7 = (_table_by_model(tables[k]) for k in ("Table 1", "Fig. 5", "Fig. 6", "Fig. 7"))
    for m in models:
        cost = (load_results("cost", m) or [None])[-1]
        check = (load_results("check", m) or [None])[-1]
        assert_cell(t1[m]["params (M)"], cost and cost["params"] / 1e6, 3)
        assert_cell(t1[m]["GMACs"], cost and cost["macs"] / 1e9, 3)
        if check is None:
            assert t1[m]["restricted mode"] == MISSING
        else:
            assert t1[m]["restricted mode"].startswith("yes" if check["restricted"]["compliant"] else "no")
            assert t1[m]["DLA"].startswith("yes" if check["dla"]["compliant"] else "no")
        evals = load_results("eval", m)
        for precision, col in (("fp32", "FP32 top-1 (%)"), ("fp16", "FP16 top-1 (%)"), ("mixed", "mixed top-1 (%)")):
            found = [e for e in evals if e.get("precision") == precision and e.get("placement") != "onnxruntime"]
            top1 = found[-1]["top1"] if found else None
            assert_cell(f5[m][col], top1, 2)  # eval records give top-1 in percent
        profiles = load_results("profile", m)
        check_cpu_int8_cells(f5[m], f6[m], evals, profiles, batches[0])
        base_profiles = load_results("profile", baseline)
        for b in batches:
            lat = _latest_latency(profiles, b)
            base = _latest_latency(base_profiles, b)
            assert_cell(f6[m][f"b{b} latency (ms)"], lat, 3)
            assert_cell(f6[m][f"b{b} / {baseline}"], None if lat is None or base is None else lat / base, 3)
            per_frame = (cost or {}).get("traffic_bytes_per_frame", {}).get(str(b))
            assert_cell(f7[m][f"b{b} estimate (MB/frame)"], None if per_frame is None else per_frame / 1e6, 3)
            onnx_path = (cost or {}).get("onnx")
            fused = traffic(onnx_path, "int8").fused_per_frame(b) / 1e6 if onnx_path and Path(onnx_path).is_file() else None
            assert_cell(f7[m][f"b{b} fused estimate @int8 (MB/frame)"], fused, 3)
            if fused is not None and per_frame is not None:
                assert fused < per_frame / 1e6  # fused INT8 moves less than every node unfused in FP32


def check_cpu_int8_cells(f5: dict[str, str], f6: dict[str, str], evals: list[dict[str, Any]], profiles: list[dict[str, Any]], batch: int) -> None:
    """The INT8 (ONNX Runtime CPU) cells: the eval stored with placement onnxruntime, the profile of the graph it evaluated."""
    cpu = [e for e in evals if e.get("placement") == "onnxruntime"]
    fp32 = [e for e in evals if e.get("precision") == "fp32" and e.get("backend") == "onnxruntime"]
    top1 = cpu[-1]["top1"] if cpu else None
    assert_cell(f5[f"{CPU_INT8_LABEL} top-1 (%)"], top1, 2)
    assert_cell(f5[f"{CPU_INT8_LABEL} drop (pp)"], fp32[-1]["top1"] - top1 if top1 is not None and fp32 else None, 2)
    timed = [r for r in profiles if cpu and r.get("path") == cpu[-1]["path"]]
    entry = timed[-1]["results"][0] if timed else None
    assert_cell(f6[f"{CPU_INT8_LABEL} b{batch} (ms)"], entry and entry["median_ms"], 3)
    assert_cell(f6[f"{CPU_INT8_LABEL} / FP32"], entry and entry["ratio"]["ratio"], 3)


def _latest_latency(profiles: list[dict[str, Any]], batch: int) -> float | None:
    value = None
    for record in profiles:
        for entry in record.get("results", []):
            if entry.get("batch") == batch:
                value = entry["median_ms"]
    return value


# ------------------------------------------------------------------ from stored results (no model runs)


@pytest.fixture
def stored_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A fresh CSA_HOME holding stored results with random values; some pieces deliberately absent."""
    monkeypatch.setenv("CSA_HOME", str(tmp_path / "home"))
    return make_stored_study()


def make_stored_study() -> dict[str, Any]:
    """Stored results with random values under the current CSA_HOME; some pieces deliberately absent."""
    rng = random.Random(7)
    batches = [1, 4, 8]
    models = ["m-csa", "m-base", "m-empty"]
    for m in ("m-csa", "m-base"):
        store_result(
            "cost",
            m,
            "k",
            {
                "model": m,
                "weights": "random",
                "params": rng.randint(10**6, 3 * 10**7),
                "macs": rng.randint(10**8, 5 * 10**9),
                "traffic_bytes_per_frame": {str(b): rng.uniform(1e6, 9e7) for b in batches},
            },
        )
        store_result(
            "check",
            m,
            "k",
            {"model": m, "restricted": {"compliant": m == "m-csa", "violations": 0 if m == "m-csa" else 7}, "dla": {"compliant": False, "violations": 3}},
        )
        store_result("eval", m, "fp32", {"kind": "eval", "model": m, "precision": "fp32", "top1": rng.uniform(50, 90), "images": 16, "backend": "onnxruntime"})
        results = [{"batch": b, "median_ms": rng.uniform(1, 50)} for b in batches]
        store_result("profile", m, "p", {"kind": "profile", "model": m, "backend": "onnxruntime", "results": results, "machine": {"cpu": "test cpu"}})
    # only m-csa was quantized and evaluated; only m-csa and m-base have Orin timings, at batch 1
    store_result(
        "eval",
        "m-csa",
        "mixed",
        {"kind": "eval", "model": "m-csa", "precision": "mixed", "top1": rng.uniform(0.2, 0.9), "images": 12, "backend": "onnxruntime"},
    )
    for m in ("m-csa", "m-base"):
        store_result("timing", m, "orin", {"model": m, "batch": 1, "device": "Orin AGX", "median_ms": rng.uniform(0.5, 5)})
    return {"models": models, "batches": batches, "baseline": "m-base"}


def test_study_numbers_equal_stored_results_and_missing_stays_missing(stored_study: dict[str, Any]) -> None:
    study = build_study(stored_study["models"], baseline="m-base", batches=stored_study["batches"])
    report = to_markdown(study, PLOTS)
    check_report_against_store(report, stored_study["models"], stored_study["batches"], "m-base")
    rows = _table_by_model(parse_markdown_tables(report)["Fig. 5"])
    fp32 = load_results("eval", "m-csa")[0]["top1"]
    mixed = next(e for e in load_results("eval", "m-csa") if e["precision"] == "mixed")["top1"]
    assert rows["m-csa"]["drop (pp)"].startswith(f"{fp32 - mixed:.2f} (from fp32)")
    assert rows["m-base"]["drop (pp)"] == MISSING  # never quantized: no drop invented
    assert all(v == MISSING for k, v in rows["m-empty"].items() if k not in ("model", "images (fp32/mixed)"))
    # the baseline's own ratio is exactly 1; imported device timings in their own, named columns
    f6 = _table_by_model(parse_markdown_tables(report)["Fig. 6"])
    assert f6["m-base"]["b1 / m-base"] == "1.000"
    orin = {r["model"]: r["median_ms"] for r in load_results("timing")}
    assert_cell(f6["m-csa"]["Orin AGX b1 (ms)"], orin["m-csa"], 3)
    assert_cell(f6["m-csa"]["Orin AGX b1 / m-base"], orin["m-csa"] / orin["m-base"], 3)
    assert f6["m-csa"]["Orin AGX b4 (ms)"] == MISSING
    assert "Random weights" in report and "m-csa" in report.split("Random weights")[1].splitlines()[0]
    assert "estimate (static, from the ONNX graph)" in report


def test_report_files_and_plots(stored_study: dict[str, Any], tmp_path: Path) -> None:
    study = build_study(stored_study["models"], baseline="m-base", batches=stored_study["batches"])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("not ours")
    path = write_report(study, tmp_path / "out")
    assert path == tmp_path / "out" / REPORT_FILE
    assert (tmp_path / "out" / "keep.txt").read_text() == "not ours"  # a report never wipes the folder
    for name in PLOTS.values():
        check_png(tmp_path / "out" / name)
        assert f"]({name})" in path.read_text()


def test_compare_no_run_from_the_store(stored_study: dict[str, Any], csa: Callable[..., CliResult], tmp_path: Path, test_manifest_path: Path) -> None:
    # m-* are not zoo names: a user manifest naming them stands in
    text = test_manifest_path.read_text()
    extra = "".join(
        re.sub(r"models\.test-convnext", f"models.{m}", text[text.index("[models.test-convnext]") : text.index("[models.test-swin]")])
        for m in stored_study["models"]
    )
    manifest = tmp_path / "m.toml"
    manifest.write_text("schema = 1\n" + extra)
    result = csa("compare", *stored_study["models"], "--no-run", "--batch", "1,4,8", "--baseline", "m-base", "--manifest", str(manifest))
    assert result.exit_code == 0, result.stderr
    record = result.record
    assert record["kind"] == "compare" and record["models"] == stored_study["models"]
    stored = {r["model"]: r for r in load_results("profile")}
    assert record["fig6"][0]["latency_ms"]["4"] == stored["m-csa"]["results"][1]["median_ms"]


def test_compare_bad_input(csa: Callable[..., CliResult]) -> None:
    result = csa("compare", "csa-nanoo", "--no-run")
    assert result.exit_code == 1 and "unknown model 'csa-nanoo'" in result.stderr and "csa-nano" in result.stderr
    result = csa("compare", "csa-nano", "--batch", "0", "--no-run")
    assert result.exit_code == 2 and "--batch" in result.stderr
    result = csa("compare", "csa-nano", "--limit", "0", "--no-run")
    assert result.exit_code == 2


# ------------------------------------------------------------------ end to end: the walkthrough's compare line


def test_compare_runs_the_pipeline_and_writes_the_report(
    csa: Callable[..., CliResult], imagenet_photos: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shlex

    from tests.test_pipeline import CSA_EXE, substitute, walkthrough_line

    monkeypatch.setenv("CSA_HOME", str(tmp_path / "home"))  # only this run's results in the store
    line = substitute(walkthrough_line("csa compare"), "test-convnext", imagenet_photos.val_dir)
    line = line.replace("--report study", f"--report {tmp_path / 'study'}") + " --baseline test-convnext"
    result = csa(*shlex.split(line.removeprefix(CSA_EXE)))
    assert result.exit_code == 0, result.stderr
    models, batches = ["csa-nano", "test-convnext"], [1]
    assert result.record["kind"] == "compare" and result.record["models"] == models
    report = (tmp_path / "study" / REPORT_FILE).read_text()
    check_report_against_store(report, models, batches, "test-convnext")
    tables = {k: _table_by_model(v) for k, v in parse_markdown_tables(report).items()}
    # what this machine can measure is there; nothing is missing but FP16 and the measured traffic
    assert tables["Table 1"]["csa-nano"]["restricted mode"] == "yes"
    assert tables["Table 1"]["test-convnext"]["restricted mode"].startswith("no (")
    for m in models:
        assert tables["Fig. 5"][m]["FP32 top-1 (%)"] != MISSING and tables["Fig. 5"][m]["mixed top-1 (%)"] != MISSING
        assert tables["Fig. 5"][m]["FP16 top-1 (%)"] == MISSING
        assert all(tables["Fig. 6"][m][f"b{b} latency (ms)"] != MISSING for b in batches)
        assert all(tables["Fig. 7"][m][f"b{b} measured (MB/frame)"] == MISSING for b in batches)
        evals = load_results("eval", m)
        assert {e["precision"] for e in evals} == {"fp32", "mixed"} and all(e["limit"] == 16 for e in evals)
        # the CPU INT8 row: a second quantization (ONNX Runtime's placement) stored beside the TensorRT one, not over it
        mixed = {e.get("placement"): e for e in evals if e["precision"] == "mixed"}
        assert set(mixed) == {"tensorrt", "onnxruntime"} and mixed["tensorrt"]["path"] != mixed["onnxruntime"]["path"]
        assert json.loads((Path(mixed["onnxruntime"]["path"]).parent / "summary.json").read_text())["placement"] == "onnxruntime"
        assert tables["Fig. 5"][m]["mixed top-1 (%)"] == f"{mixed['tensorrt']['top1']:.2f}"
        assert tables["Fig. 5"][m][f"{CPU_INT8_LABEL} top-1 (%)"] == f"{mixed['onnxruntime']['top1']:.2f}"
        assert tables["Fig. 6"][m][f"{CPU_INT8_LABEL} b1 (ms)"] != MISSING and tables["Fig. 6"][m][f"{CPU_INT8_LABEL} / FP32"] != MISSING
    assert tables["Fig. 6"]["test-convnext"]["b1 / test-convnext"] == "1.000"
    assert "Random weights" in report and "csa-nano, test-convnext" in report
    for name in PLOTS.values():
        check_png(tmp_path / "study" / name)
    # a second compare finds everything done: nothing runs again, the same numbers come out
    again = csa(*shlex.split(line.removeprefix(CSA_EXE)))
    assert again.exit_code == 0, again.stderr
    for model in models:
        assert " done" not in again.record["runs"][model] and "profile cached" in again.record["runs"][model]
    assert {k: again.record[k] for k in ("table1", "fig5", "fig6", "fig7")} == {k: result.record[k] for k in ("table1", "fig5", "fig6", "fig7")}


def test_imported_device_timings_get_their_own_columns(
    csa: Callable[..., CliResult], stored_study: dict[str, Any], tmp_path: Path, test_manifest_path: Path
) -> None:
    """`csa import-timings` (trtexec --exportTimes) -> stored "timing" result -> its own, named columns in compare."""
    rng = np.random.default_rng(3)
    text = test_manifest_path.read_text()
    block = text[text.index("[models.test-convnext]") : text.index("[models.test-swin]")]
    manifest = tmp_path / "m.toml"
    manifest.write_text("schema = 1\n" + "".join(block.replace("models.test-convnext", f"models.{m}") for m in stored_study["models"]))
    for model in ("m-csa", "m-base"):
        start, entries = 0.0, []
        for latency in rng.uniform(1.0, 3.0, size=20):
            entries.append({"startEnqMs": start, "endEnqMs": start + 0.1, "startComputeMs": start, "endComputeMs": start + latency, "latencyMs": latency})
            start += latency + 0.05
        times = tmp_path / f"times_{model}.json"
        times.write_text(json.dumps(entries))
        args = ["import-timings", str(times), "--model", model, "--batch", "4", "--precision", "mixed", "--device", "Orin AGX"]
        imported = csa(*args, env={"CSA_MANIFEST": str(manifest)})
        assert imported.exit_code == 0, imported.stderr
    study = build_study(stored_study["models"], baseline="m-base", batches=stored_study["batches"])
    assert study.devices == ["Orin AGX", "Orin AGX (mixed)"]  # the fixture's timings name no precision
    f6 = _table_by_model(parse_markdown_tables(to_markdown(study))["Fig. 6"])
    stored = {r["model"]: r["median_ms"] for r in load_results("timing") if r.get("precision") == "mixed"}
    assert_cell(f6["m-csa"]["Orin AGX (mixed) b4 (ms)"], stored["m-csa"], 3)
    assert_cell(f6["m-csa"]["Orin AGX (mixed) b4 / m-base"], stored["m-csa"] / stored["m-base"], 3)
    assert f6["m-empty"]["Orin AGX (mixed) b4 (ms)"] == MISSING
    assert f6["m-csa"]["b4 latency (ms)"] != f6["m-csa"]["Orin AGX (mixed) b4 (ms)"]  # the CPU columns are not overwritten


def test_latency_is_the_fp32_profile_on_the_chosen_backend(stored_study: dict[str, Any]) -> None:
    before = build_study(["m-csa"], baseline="m-base", batches=[1]).fig6[0].latency_ms[1]
    # later profiles of a QDQ ONNX and on torch are other measurements: they must not replace it
    store_result("profile", "m-csa", "q", {"model": "m-csa", "backend": "onnxruntime", "precision": "mixed", "results": [{"batch": 1, "median_ms": 0.5}]})
    store_result("profile", "m-csa", "t", {"model": "m-csa", "backend": "torch", "precision": "fp32", "results": [{"batch": 1, "median_ms": 0.25}]})
    assert build_study(["m-csa"], baseline="m-base", batches=[1]).fig6[0].latency_ms[1] == before
    assert build_study(["m-csa"], baseline="m-base", batches=[1], backend="torch").fig6[0].latency_ms[1] == 0.25


def test_drop_compares_one_runtime_with_itself(stored_study: dict[str, Any]) -> None:
    fp32_ort = next(e for e in load_results("eval", "m-csa") if e["precision"] == "fp32")["top1"]
    # a later FP32 result on torch does not become the reference of the ONNX Runtime mixed result
    store_result("eval", "m-csa", "torch", {"model": "m-csa", "precision": "fp32", "top1": 12.3, "images": 16, "backend": "torch"})
    row = build_study(["m-csa"], baseline="m-base", batches=[1]).fig5[0]
    assert row.fp32 == pytest.approx(fp32_ort) and row.backend["fp32"] == "onnxruntime"
    assert row.drop == pytest.approx(row.fp32 - row.mixed)  # type: ignore[operator]


def test_fig6_carries_the_interleaved_ratio_interval_and_its_verdict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A profile timed side by side with the baseline (ratio_to, ratio) shows its 95% interval in Fig. 6,
    and the verdict where that interval is wider than ±10%; a ratio without an interval stays bare."""
    from csa_cli.measure.stats import ratio_spread

    monkeypatch.setenv("CSA_HOME", str(tmp_path / "home"))
    rng = random.Random(1)
    base = [10 * rng.uniform(0.97, 1.03) for _ in range(30)]
    tight = ratio_spread([0.9 * b * rng.uniform(0.98, 1.02) for b in base], base)
    wide = ratio_spread([0.9 * b * rng.uniform(0.3, 1.7) for b in base[:8]], base[:8])
    assert tight.claimable and not wide.claimable
    rows = {
        "m-base": [{"batch": 1, "median_ms": 10.0}, {"batch": 4, "median_ms": 40.0}],
        "m-csa": [
            {"batch": 1, "median_ms": 10.0 * tight.ratio, "ratio_to": "m-base", "ratio": tight.model_dump()},
            {"batch": 4, "median_ms": 40.0 * wide.ratio, "ratio_to": "m-base", "ratio": wide.model_dump()},
        ],
    }
    for m, results in rows.items():
        store_result("profile", m, "p", {"kind": "profile", "model": m, "backend": "onnxruntime", "precision": "fp32", "results": results})
    study = build_study(["m-csa", "m-base"], baseline="m-base", batches=[1, 4])
    f6 = _table_by_model(parse_markdown_tables(to_markdown(study))["Fig. 6"])
    assert f6["m-csa"]["b1 / m-base"] == f"{tight.ratio:.3f} [{tight.low:.3f}, {tight.high:.3f}]"
    assert f6["m-csa"]["b4 / m-base"].startswith(f"{wide.ratio:.3f} [") and "spread too wide for the claim" in f6["m-csa"]["b4 / m-base"]
    assert f6["m-base"]["b1 / m-base"] == "1.000"


def test_cpu_int8_has_its_own_columns_and_leaves_the_mixed_one_alone(stored_study: dict[str, Any]) -> None:
    """A later eval of the ONNX Runtime-placement graph fills the INT8 (ONNX Runtime CPU) columns, not the mixed one;
    its latency is the profile of the very graph that eval names, and its ratio is to the model's FP32 graph."""
    from csa_cli.measure.stats import ratio_spread

    before = build_study(["m-csa"], baseline="m-base", batches=[1])
    assert before.fig5[0].cpu_int8 is None and before.fig6[0].cpu_int8_ms is None  # nothing stored: missing, not filled in
    rng = random.Random(3)
    fp32 = [10 * rng.uniform(0.97, 1.03) for _ in range(30)]
    spread = ratio_spread([0.6 * t * rng.uniform(0.98, 1.02) for t in fp32], fp32)
    cpu = {"kind": "eval", "model": "m-csa", "precision": "mixed", "placement": "onnxruntime", "top1": 41.5, "images": 12, "backend": "onnxruntime"}
    store_result("eval", "m-csa", "cpu", {**cpu, "path": "/x/quantize-b/model.qdq.onnx"})
    # an INT8 profile of another graph (not the one evaluated) does not count
    other = {"kind": "profile", "model": "m-csa", "backend": "onnxruntime", "precision": "int8", "path": "/x/other.onnx"}
    store_result("profile", "m-csa", "other", {**other, "results": [{"batch": 1, "median_ms": 99.0}]})
    timed = {**other, "path": "/x/quantize-b/model.qdq.onnx", "results": [{"batch": 1, "median_ms": 6.0, "ratio_to": "fp32", "ratio": spread.model_dump()}]}
    store_result("profile", "m-csa", "cpu", timed)
    study = build_study(["m-csa"], baseline="m-base", batches=[1])
    row5, row6 = study.fig5[0], study.fig6[0]
    assert row5.mixed == before.fig5[0].mixed and row5.drop == before.fig5[0].drop
    assert row5.cpu_int8 == 41.5 and row5.cpu_int8_drop == pytest.approx(row5.fp32 - 41.5)  # type: ignore[operator]
    assert row6.latency_ms == before.fig6[0].latency_ms  # the FP32 latency column stays the FP32 profile
    assert (row6.cpu_int8_batch, row6.cpu_int8_ms, row6.cpu_int8_ratio) == (1, 6.0, pytest.approx(spread.ratio))
    assert row6.cpu_int8_interval == (pytest.approx(spread.low), pytest.approx(spread.high)) and not row6.cpu_int8_wide
    tables = {k: _table_by_model(v) for k, v in parse_markdown_tables(to_markdown(study)).items()}
    assert tables["Fig. 5"]["m-csa"][f"{CPU_INT8_LABEL} top-1 (%)"] == "41.50"
    assert tables["Fig. 6"]["m-csa"][f"{CPU_INT8_LABEL} / FP32"].startswith(f"{spread.ratio:.3f} [")
    assert any(CPU_INT8_LABEL in note for note in study.notes)
