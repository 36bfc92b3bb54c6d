"""The rules every command shares (shared/reference/cli-conventions.md): one error per pipe, the same exit code
for the same mistake, honest messages, names a user already knows, cached stages that stay light."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from csa_cli.errors import CsaError
from tests.fixtures.cli import CliResult

CSA = f"{sys.executable} -m csa_cli"


def test_four_stage_pipe_with_a_failing_first_stage_prints_one_error(tmp_path: Path) -> None:
    pipe = f"{CSA} pull csa-nano | {CSA} export | {CSA} check | {CSA} quantize --calib-dataset {tmp_path}"
    proc = subprocess.run(["bash", "-c", f"set -o pipefail; {pipe}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: csa-nano has no published weights (its manifest entry names no Hub source)"], proc.stderr
    # the record the first stage wrote reached the end of the pipe unchanged
    assert json.loads(proc.stdout.splitlines()[-1]) == {"schema": 1, "kind": "error", "stage": "pull", "message": errors[0].removeprefix("Error: ")}


COMPARE_RECORD = json.dumps({"schema": 1, "kind": "compare", "model": "a,b"}) + "\n"


@pytest.mark.parametrize(
    "args",
    [["export"], ["check"], ["quantize", "--calib-dataset", "x"], ["engine", "--target", "orin"], ["eval", "--dataset", "x"], ["profile"]],
)
def test_a_record_of_the_wrong_kind_is_exit_2_everywhere(csa: Callable[..., CliResult], args: list[str]) -> None:
    result = csa(*args, input=COMPARE_RECORD)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.count("Error:") == 1 and "compare" in result.stderr


@pytest.mark.parametrize(
    "args", [["export"], ["check"], ["quantize", "--calib-dataset", "x"], ["engine", "--target", "orin"], ["eval", "--dataset", "x"], ["profile"]]
)
def test_a_file_of_the_wrong_type_is_exit_2_everywhere(csa: Callable[..., CliResult], args: list[str], tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model\n")
    result = csa(args[0], str(notes), *args[1:])
    assert result.exit_code == 2, result.stderr
    assert result.stderr.count("Error:") == 1 and "notes.txt" in result.stderr


def test_random_weights_say_why_only_truly(csa: Callable[..., CliResult]) -> None:
    result = csa("run", "csa-nano", "--to", "export")
    assert result.exit_code == 0, result.stderr
    assert "RANDOM weights (no weights are published for it)" in result.stderr
    assert "asked for with --weights random" not in result.stderr  # nobody asked


def test_zoo_names_from_the_hub_repo_id_and_the_tagged_timm_name(csa: Callable[..., CliResult]) -> None:
    from csa_cli.manifest import builtin_manifest_path, load_manifest

    zoo = load_manifest(builtin_manifest_path())
    assert zoo.get("timm/convnext_tiny.fb_in1k").name == "convnext-tiny"
    assert zoo.get("convnext_tiny.fb_in1k").name == "convnext-tiny"
    assert zoo.get("microsoft/cvt-13").name == "cvt-13"
    with pytest.raises(CsaError, match="untagged") as untagged:  # other weights in timm: a suggestion, not a match
        zoo.get("convnext_tiny")
    assert untagged.value.hint == "did you mean convnext-tiny (timm/convnext_tiny.fb_in1k, convnext_tiny.fb_in1k)?"
    info = csa("info", "timm/swin_tiny_patch4_window7_224.ms_in1k", "--manifest", str(builtin_manifest_path()))
    assert info.exit_code == 0 and info.record["name"] == "swin-tiny"
    close = csa("info", "convnext_tiny.fb_in22k")
    assert close.exit_code == 1 and "did you mean convnext-tiny?" in close.stderr


def _imports_of(args: list[str]) -> set[str]:
    code = (
        "import sys\nsys.argv = ['csa', " + ", ".join(repr(a) for a in args) + "]\nfrom csa_cli.cli import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print('IMPORTED:', *(m for m in ('torch', 'timm', 'transformers', 'onnxruntime', 'onnx') if m in sys.modules), file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return set(proc.stderr.strip().splitlines()[-1].split()[1:])


def test_cached_export_and_check_import_no_framework(exported: Callable[..., Path]) -> None:
    exported("csa-nano")
    _imports_of(["check", "csa-nano"])  # the first check of it is made (and kept)
    assert _imports_of(["export", "csa-nano"]) == set()
    assert _imports_of(["check", "csa-nano"]) == set()


def test_only_a_models_own_graph_code_invalidates_its_exports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from csa_cli.models import code

    copy = tmp_path / "models"
    shutil.copytree(code.HERE, copy)
    monkeypatch.setattr(code, "HERE", copy)
    before = {b: code.graph_code_hash(b) for b in ("csa", "timm")}
    with (copy / "checkpoint.py").open("a") as fh:  # the checkpoint converter: no graph changes
        fh.write("\n# an edit\n")
    with (copy / "reference.py").open("a") as fh:
        fh.write("\n# an edit\n")
    assert {b: code.graph_code_hash(b) for b in ("csa", "timm")} == before
    with (copy / "csa.py").open("a") as fh:  # CSA's builder: CSA exports change, the baselines' do not
        fh.write("\n# an edit\n")
    assert code.graph_code_hash("csa") != before["csa"] and code.graph_code_hash("timm") == before["timm"]


def test_exit_codes_are_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("## Exit codes", 1)[1].split("##", 1)[0]
    codes = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    assert codes == ["0", "1", "2", "3", "4", "130"]


def test_an_output_is_never_replaced_without_force(csa: Callable[..., CliResult], exported: Callable[..., Path], tmp_path: Path) -> None:
    exported("csa-nano")
    target = tmp_path / "nano.onnx"
    target.write_text("mine")
    result = csa("export", "csa-nano", "--weights", "random", "--output", str(target))
    assert result.exit_code == 1 and "already exists" in result.stderr and target.read_text() == "mine"
    forced = csa("export", "csa-nano", "--weights", "random", "--output", str(target), "--force")
    assert forced.exit_code == 0 and target.read_bytes() == Path(forced.record["artifact"]).read_bytes()  # the artifact's ONNX file


def test_shared_options_read_the_same_in_every_help(csa: Callable[..., CliResult]) -> None:
    from csa_cli.cli import options

    for page, option in (("export", options.WEIGHTS), ("check", options.WEIGHTS), ("engine", options.WEIGHTS), ("run", options.WEIGHTS)):
        text = " ".join(csa(page, "--help", env={"COLUMNS": "200"}).stdout.split())
        assert f"{option.flag} {option.metavar} {option.help}" in text, page
    profile = " ".join(csa("profile", "--help", env={"COLUMNS": "200"}).stdout.split())
    assert "Default: 1,4,8,16 (profile shows how latency and throughput scale with the batch" in profile  # its own default says why
    for page in ("run", "compare", "profile"):
        text = csa(page, "--help").stdout
        assert "--seconds" in text and "--iterations" in text, page
    assert "--calib-dataset" in csa("compare", "--help").stdout
    assert all(o in csa("check", "--help").stdout for o in ("--batch", "--img-size", "--weights"))


def _touch(meta_path: Path, **changes: Any) -> None:
    meta = json.loads(meta_path.read_text())
    meta.update(changes)
    meta_path.write_text(json.dumps(meta))


def test_cache_ls_prune_and_max_size(hub_env: Any, csa: Callable[..., CliResult]) -> None:
    import shutil

    assert csa("pull", "test-convnext").exit_code == 0
    bundle = csa("engine", "csa-nano", "--weights", "random", "--target", "orin")
    assert bundle.exit_code == 0, bundle.stderr
    exported = csa("export", "csa-nano", "--weights", "random")
    # the bundle under CSA_HOME holds the export as a hard link: a whole file, no second copy
    in_bundle = Path(bundle.record["path"]) / "onnx" / "csa-nano_b1.onnx"
    assert in_bundle.stat().st_ino == Path(exported.record["path"]).stat().st_ino
    listed = csa("cache", "ls")
    items = listed.record["items"]
    assert listed.exit_code == 0 and {i["what"] for i in items} >= {"weights", "lock", "onnx artifact", "bundle artifact"}
    assert all(i["created"] and i["provenance"] for i in items)
    onnx_item = next(i for i in items if i["what"] == "onnx artifact" and i["model"] == "csa-nano")
    assert "random weights" in onnx_item["provenance"] and "batch 1" in onnx_item["provenance"]
    assert (
        listed.record["bytes"]
        < sum(Path(p).stat().st_size for p in (in_bundle, exported.record["path"]))
        + sum(i["bytes"] for i in items if i["what"] not in ("onnx artifact", "bundle artifact"))
        + 10_000_000
    )  # the linked ONNX counted once
    # an orphan (its model left the zoo) and a stale key (made by another csa), next to what is in use
    artifacts = hub_env.csa_home / "artifacts"
    export_dir = Path(exported.record["artifact"]).parent
    orphan = artifacts / "gone-model" / export_dir.name
    shutil.copytree(export_dir, orphan)
    _touch(orphan / "artifact.json", model="gone-model")
    stale = export_dir.with_name("onnx-0000000000000000")
    shutil.copytree(export_dir, stale)
    _touch(stale / "artifact.json", csa_version="0.0.1", key="0000000000000000")
    assert any(i["model"] == "gone-model" for i in csa("cache", "ls").record["items"])  # visible, not hidden
    dry = csa("cache", "prune", "--dry-run")
    whats = {Path(i["path"]).name if i["model"] != "gone-model" else "gone": i["what"] for i in dry.record["items"]}
    assert whats["gone"].startswith("orphaned artifact") and whats[stale.name].startswith("stale artifact (made by csa 0.0.1)")
    assert export_dir.name not in whats and orphan.is_dir() and stale.is_dir()
    assert csa("cache", "prune").exit_code == 0
    assert not orphan.exists() and not stale.exists() and export_dir.is_dir()
    # --max-size: the oldest artifacts go first until what stays fits; weights only with --include-hf
    folders = sorted(p.parent for p in artifacts.glob("*/*/artifact.json"))
    for age, folder in enumerate(folders):
        _touch(folder / "artifact.json", created=1_000_000 + age)
    newest = folders[-1]
    keep = sum(f.stat().st_size for f in newest.rglob("*") if f.is_file())
    bounded = csa("cache", "prune", "--max-size", str(keep + 1000))
    assert bounded.exit_code == 0 and newest.is_dir() and not any(f.is_dir() for f in folders[:-1])
    assert all("over --max-size" in i["what"] for i in bounded.record["items"])
    assert hub_env.snapshot_file("test-convnext", "model.safetensors").is_file()  # the HF cache is not counted without --include-hf
    everything = csa("cache", "prune", "--max-size", "0", "--include-hf")
    assert everything.exit_code == 0 and not list(hub_env.hub_cache.glob("models--*/snapshots/*/model.safetensors"))
    assert csa("cache", "prune", "--include-hf").exit_code == 2  # --include-hf only bounds --max-size
    assert csa("cache", "prune", "--max-size", "lots").exit_code == 2
