"""The Python API (csa_cli/api/): one option definition with the commands, a light import, typed, errors and events.

docs/python.md's blocks, run against the commands, are tests/test_api_docs.py.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer

import csa_cli
from csa_cli import api
from tests.fixtures.cli import CliResult

ROOT = Path(__file__).resolve().parents[1]
# command -> its function
COMMANDS: dict[str, Callable[..., Any]] = {
    "pull": api.pull,
    "train": api.train,
    "push": api.push,
    "export": api.export,
    "check": api.check,
    "quantize": api.quantize,
    "engine": api.engine,
    "eval": api.evaluate,
    "predict": api.predict,
    "profile": api.profile,
    "run": api.run,
    "compare": api.compare,
}
CLI_ONLY = {"json_output", "debug"}  # @stage_command's --json and --debug: how a command prints
API_ONLY = {"on_event", "on_update", "images", "sources"}  # a callback instead of rendering; predict's images are in `items`


def _command(name: str) -> Any:
    """The click command typer builds (typer may bring its own click: no isinstance checks against ours)."""
    from csa_cli.cli import build_app

    return typer.main.get_command(build_app([name])).commands[name]  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_function_takes_its_commands_options_with_the_same_defaults(name: str) -> None:
    function = COMMANDS[name]
    options = {p.name: p for p in _command(name).params if p.param_type_name == "option" and p.name not in CLI_ONLY}
    params = {n: p for n, p in inspect.signature(function).parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL}
    keywords = {n for n, p in params.items() if p.default is not inspect.Parameter.empty} - API_ONLY
    assert set(options) == keywords, name  # the inputs are the command's arguments and the function's positional parameters
    for option_name, option in options.items():
        default = params[option_name].default
        shown = option.default
        # click keeps a list option's default as given (None) and a flag's as a bool: compare like with like
        assert shown == default or (shown in (None, ()) and default in (None, ())), f"{name} --{option_name}: command {shown!r}, api {default!r}"


def test_a_changed_default_changes_the_command_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands read their defaults from the functions' signatures; a shared option's still needs its reason."""
    import importlib

    import csa_cli.cli.quantize as module

    def registered(**changed: Any) -> dict[str, Any]:
        monkeypatch.setattr(api.quantize, "__kwdefaults__", {**(api.quantize.__kwdefaults__ or {}), **changed})
        app = typer.Typer()
        importlib.reload(module).register(app)
        return {p.name: p.default for p in typer.main.get_command(app).params}

    try:
        assert registered(seed=7)["seed"] == 7
        with pytest.raises(TypeError, match="--calib-images: a command's own default"):  # cli/options.py's rule
            registered(calib_images=123)
    finally:
        monkeypatch.undo()
        importlib.reload(module)


def test_every_public_name_imports_without_torch() -> None:
    code = (
        "import sys, csa_cli\n"
        "names = [n for n in csa_cli.__all__]\n"
        "values = {n: getattr(csa_cli, n) for n in names}\n"
        "from csa_cli import *\n"
        "heavy = sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'timm', 'transformers', 'huggingface_hub', 'numpy') if m in sys.modules)\n"
        "print(len(values), heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    count, heavy = out.stdout.split(" ", 1)
    assert int(count) == len(csa_cli.__all__) > 15 and heavy.strip() == "[]", out.stdout


def test_the_package_lists_what_it_exports() -> None:
    assert csa_cli.__all__ == ["__version__", *csa_cli.PUBLIC]
    assert set(api.__all__) == {n for n, module in csa_cli.PUBLIC.items() if module == "csa_cli.api"}
    assert csa_cli.UsageError is __import__("csa_cli.errors").errors.UsageError
    assert [int(e.exit_code) for e in (csa_cli.CsaError, csa_cli.UsageError, csa_cli.CheckFailed, csa_cli.MissingBackend)] == [1, 2, 3, 4]
    with pytest.raises(AttributeError):
        csa_cli.no_such_name  # noqa: B018
    assert (ROOT / "csa_cli" / "py.typed").is_file()


def test_mypy_is_clean_on_the_api() -> None:
    """The public surface type-checks ([tool.mypy] in pyproject.toml: the stages are followed silently)."""
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "csa_cli/api", "csa_cli/__init__.py", "tests/data/api_typing.py"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success" in proc.stdout


def test_mypy_catches_a_wrong_call(tmp_path: Path) -> None:
    """The check above could fail: a misspelt option and a wrong type are errors."""
    bad = tmp_path / "bad.py"
    bad.write_text('import csa_cli as csa\n\ncsa.export("csa-tiny", batchsize=4)\ncsa.quantize("csa-tiny", calib_images="many")\n')
    proc = subprocess.run([sys.executable, "-m", "mypy", str(bad)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 1
    assert 'Unexpected keyword argument "batchsize"' in proc.stdout and '"calib_images"' in proc.stdout, proc.stdout


def test_errors_are_the_commands_and_nothing_is_printed(
    exported: Callable[..., Path], capfd: pytest.CaptureFixture[str], csa: Callable[..., CliResult]
) -> None:
    onnx = exported("test-convnext")
    with pytest.raises(csa_cli.UsageError) as bad:
        csa_cli.quantize(onnx, calib_dataset="x", method="magic")
    assert bad.value.exit_code == 2 and "unknown calibration method 'magic'" in bad.value.message
    events: list[Any] = []
    with pytest.raises(csa_cli.CheckFailed) as failed:  # ConvNeXt: LayerNorm and GELU are outside restricted mode
        csa_cli.check(onnx, on_event=events.append)
    assert failed.value.exit_code == 3 and failed.value.record is not None
    verdict = failed.value.record.field("check")
    assert verdict["compliant"] is False and verdict["violations"] > 0
    assert capfd.readouterr() == ("", "")  # nothing printed: not the verdict, not a note
    # the command prints the same record (and exits 3)
    shown = csa("check", str(onnx))
    assert shown.exit_code == 3 and shown.record["check"] == json.loads(failed.value.record.to_json())["check"]


def test_a_record_chains_and_events_reach_the_callback(hub_env: Any, capfd: pytest.CaptureFixture[str]) -> None:
    said: list[Any] = []
    checkpoint = csa_cli.pull("test-csa", on_event=said.append)
    onnx = csa_cli.export(checkpoint, on_event=said.append)
    assert (checkpoint.kind, onnx.kind) == ("checkpoint", "onnx")
    assert onnx.model == "test-csa" and onnx.weights == "pretrained" and onnx.field("weights_hash") == checkpoint.field("weights_hash")
    assert any(e.kind == "info" and e.message.startswith("License of test-csa") for e in said)
    assert Path(onnx.path).is_file()
    with pytest.raises(csa_cli.UsageError, match="takes a checkpoint record, got a 'onnx' record"):
        csa_cli.export(onnx)
    assert capfd.readouterr() == ("", "")
