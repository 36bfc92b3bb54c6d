"""The skeleton: manifest schema and merging, output modes, records, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from csa_cli.errors import CsaError, UpstreamError
from csa_cli.manifest import load_manifest
from csa_cli.records import ErrorRecord, make_record, parse_record, raise_if_error

ZOO = {"csa-tiny", "convnext-tiny", "swin-tiny", "cvt-13"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "user.toml"
    path.write_text(text)
    return path


def test_builtin_manifest_has_the_zoo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CSA_MANIFEST")
    zoo = load_manifest()
    assert ZOO <= set(zoo.models)
    assert zoo.get("convnext-tiny").source.repo == "timm/convnext_tiny.fb_in1k"
    assert zoo.get("swin-tiny").preprocessing.crop_pct == 0.9
    assert zoo.get("csa-tiny").source is None
    assert zoo.get("cvt-13").architecture.builder == "transformers"


def test_unknown_model_suggests_closest() -> None:
    with pytest.raises(CsaError) as info:
        load_manifest().get("convnxt-tiny")
    assert "unknown model 'convnxt-tiny'" in info.value.message
    assert "convnext-tiny" in (info.value.hint or "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[models.csa-tiny.preprocessing]\ncrop_pct = 'big'\n", "models.csa-tiny.preprocessing.crop_pct"),
        ("[models.csa-tiny.preprocessing]\ncrop_pct = 1.5\n", "models.csa-tiny.preprocessing.crop_pct"),
        ("[models.csa-tiny]\nfamily = 'other'\n", "models.csa-tiny.family"),
        ("[models.new-one]\nfamily = 'csa'\n", "models.new-one.architecture"),
        ("[models.csa-tiny]\nbogus = 1\n", "models.csa-tiny.bogus"),
        ("[models.csa-tiny.source]\nrepo = 'x/y'\nfiles = []\nformat = 'csa'\n", "models.csa-tiny.source.files"),
        ("[models.csa-tiny.preprocessing]\nstd = [0.2, 0.0, 0.2]\n", "models.csa-tiny.preprocessing.std"),
        ("schema = 2\n", "schema"),
        ("this is = not toml [", "not valid TOML"),
    ],
)
def test_invalid_user_manifest_names_file_entry_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(CsaError) as info:
        load_manifest(path)
    assert str(path) in info.value.message
    assert expected in info.value.message


def test_user_manifest_merges_over_builtin(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[models.convnext-tiny.source]\nrevision = 'abc123'\n"
        "[models.my-net]\nfamily = 'baseline'\nlicense = 'MIT'\n"
        "[models.my-net.architecture]\nbuilder = 'timm'\nname = 'resnet18'\n"
        "[models.my-net.preprocessing]\ncrop_pct = 0.95\ninterpolation = 'bilinear'\nmean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n",
    )
    zoo = load_manifest(path)
    merged = zoo.get("convnext-tiny")
    assert merged.source.revision == "abc123"
    assert merged.source.repo == "timm/convnext_tiny.fb_in1k"  # untouched fields survive the merge
    assert zoo.get("my-net").preprocessing.input_size == (224, 224)
    assert ZOO <= set(zoo.models)


def test_missing_user_manifest(tmp_path: Path) -> None:
    with pytest.raises(CsaError, match="manifest not found"):
        load_manifest(tmp_path / "nope.toml")


def test_record_round_trip_and_extras() -> None:
    rec = make_record("onnx", model="csa-nano", path="/x.onnx", batch=4, parity=1e-6)
    back = parse_record(rec.to_json())
    assert back.kind == "onnx" and back.model == "csa-nano"
    assert back.field("batch") == 4 and back.field("parity") == pytest.approx(1e-6)
    assert json.loads(rec.to_json())["schema"] == 1
    checked = back.with_fields(check={"compliant": True})
    assert checked.field("check") == {"compliant": True} and checked.field("batch") == 4


def test_error_records_raise_upstream() -> None:
    err = parse_record(ErrorRecord(stage="export", message="boom").to_json())
    assert isinstance(err, ErrorRecord)
    with pytest.raises(UpstreamError, match="upstream stage 'export' failed: boom"):
        raise_if_error(err)


@pytest.mark.parametrize(
    ("line", "problem"),
    [("not json", "invalid JSON"), ('{"a": 1}', "no 'kind'"), ('{"schema": 9, "kind": "onnx"}', "schema 9"), ('{"kind": "nope"}', "kind")],
)
def test_bad_records(line: str, problem: str) -> None:
    with pytest.raises(CsaError, match=problem):
        parse_record(line)


def test_list_on_a_pipe_is_one_json_record(csa) -> None:
    result = csa("list")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert ZOO <= {m["name"] for m in data["models"]}
    assert result.stderr == ""


def test_info_and_unknown_model(csa) -> None:
    info = csa("info", "cvt-13")
    assert info.exit_code == 0
    data = json.loads(info.stdout)
    assert data["source"]["repo"] == "microsoft/cvt-13"
    assert data["license"] == "Apache-2.0"
    assert data["preprocessing"]["crop_pct"] == 0.875
    bad = csa("info", "convnxt-tiny")
    assert bad.exit_code == 1
    assert bad.stderr.startswith("Error: unknown model 'convnxt-tiny'")
    assert "convnext-tiny" in bad.stderr
    assert bad.record == {"schema": 1, "kind": "error", "stage": "info", "message": "unknown model 'convnxt-tiny'"}


def test_invalid_manifest_is_one_error_line(csa, tmp_path: Path) -> None:
    path = write(tmp_path, "[models.csa-tiny.preprocessing]\ncrop_pct = 2\n")
    result = csa("list", "--manifest", str(path))
    assert result.exit_code == 1
    first = result.stderr.splitlines()[0]
    assert first.startswith("Error: invalid manifest") and "crop_pct" in first
    assert "Traceback" not in result.stderr


def test_terminal_gets_a_table(tmp_path: Path) -> None:
    """Under a pseudo-terminal stdout, `csa list` renders a table, not JSON."""
    import os
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # child: run the CLI with the pty as its terminal
        os.environ["COLUMNS"] = "200"
        os.execv(sys.executable, [sys.executable, "-m", "csa_cli", "list"])
    chunks = []
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.waitpid(pid, 0)
    text = b"".join(chunks).decode(errors="replace")
    assert "csa zoo" in text and "convnext-tiny" in text
    assert not text.lstrip().startswith("{")


def test_doctor_reports_components(csa) -> None:
    result = csa("doctor", "--json")
    assert result.exit_code == 0
    comps = {c["component"]: c for c in json.loads(result.stdout)["checks"]}
    assert comps["torch"]["present"] and comps["onnxruntime"]["present"]
    assert comps["tensorrt"]["present"] is False or comps["tensorrt"]["detail"]


@pytest.mark.parametrize(("version", "too_old"), [("1.19.2", True), ("1.26.0", True), ("1.27.0", False), ("1.32.0", False)])
def test_doctor_says_when_onnxruntime_is_older_than_quantize_needs(csa, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, version: str, too_old: bool) -> None:
    """The installed version is faked where csa looks it up (the distribution metadata), on both sides of the floor."""
    import csa_cli.measure.machine as machine

    real = machine._version
    monkeypatch.setattr(machine, "_version", lambda dist: version if dist == "onnxruntime" else real(dist))
    result = csa("doctor", "--json")
    assert result.exit_code == 0
    ort = {c["component"]: c for c in json.loads(result.stdout)["checks"]}["onnxruntime"]
    assert ort["present"] and ort["detail"].startswith(version)
    if too_old:
        assert f"onnxruntime {version} is older than 1.27.0" in ort["problem"] and "calibration_cache_path" in ort["problem"]
        assert "pip install 'onnxruntime>=1.27.0'" in ort["problem"]
    else:
        assert ort["problem"] is None
    (tmp_path / "model.onnx").write_bytes(b"not read")
    quantize = csa("quantize", str(tmp_path / "model.onnx"), "--calib-dataset", str(tmp_path / "images"))  # refused before either is read
    if too_old:
        assert quantize.exit_code == 4 and "older than 1.27.0" in quantize.stderr and "Hint: pip install 'onnxruntime>=1.27.0'" in quantize.stderr
    else:
        assert quantize.exit_code != 4 and "older than" not in quantize.stderr


def test_pyproject_onnxruntime_floor_is_what_quantize_needs() -> None:
    import re
    import tomllib

    from csa_cli.measure.machine import ONNXRUNTIME_QUANTIZE_FLOOR

    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (spec,) = [d for d in project["dependencies"] if re.match(r"onnxruntime\b", d)]
    floor = re.search(r">=\s*([\d.]+)", spec)
    assert floor is not None
    assert tuple(int(p) for p in floor.group(1).split(".")) + (0,) * (3 - len(floor.group(1).split("."))) == ONNXRUNTIME_QUANTIZE_FLOOR


def test_version_and_help_do_not_import_torch() -> None:
    code = "import sys; sys.argv=['csa','--help']\ntry:\n from csa_cli.cli import main; main()\nexcept SystemExit: pass\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("False")
    ver = subprocess.run([sys.executable, "-m", "csa_cli", "--version"], capture_output=True, text=True, check=True)
    assert ver.stdout.startswith("csa ")


def test_readme_walkthrough_is_the_tested_one() -> None:
    """The README's walkthrough is the block that tests/test_pipeline.py runs (from docs/pipeline.md)."""
    root = Path(__file__).parent.parent

    def block(path: Path) -> list[str]:
        text = path.read_text(encoding="utf-8").split("<!-- walkthrough -->", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
        return [line.strip() for line in text.strip().splitlines() if line.strip()]

    readme = block(root / "README.md")
    assert readme == block(root / "docs" / "pipeline.md")
    assert readme[0].startswith("csa pull MODEL | csa export | csa check | csa quantize")


def test_readme_first_screen_has_the_two_commands() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    first_block = readme.split("```bash", 1)[1].split("```", 1)[0]
    assert "./scripts/setup && .venv/bin/csa list" in first_block
    assert ".venv/bin/python -m pytest -q --durations=15" in first_block
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert ".venv/bin/python -m pytest -q --durations=15" in ci
