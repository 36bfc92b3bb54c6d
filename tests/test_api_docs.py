"""docs/python.md's code blocks, run, and each call replayed as its command: the same record either way.

The blocks run as written with the test's stand-ins (the zoo names below, a loopback Hub, generated
photos) and small calibration and timing settings, as tests/test_pipeline.py runs the shell
walkthrough. Every call goes through a recorder; afterwards each is replayed on the command line
(a record argument becomes the .json file the command reads) and the two records must agree: the
same kind, the same fields, the same paths.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import csa_cli
from csa_cli.records import Record
from tests.fixtures.cli import CliResult

DOCS = Path(__file__).resolve().parents[1] / "docs" / "python.md"
STAND_INS = {'"convnext-tiny"': '"test-convnext"', '"csa-tiny"': '"csa-nano"'}
WALKTHROUGH_MODEL = "test-csa"  # csa-nano, published on the loopback Hub (the shell walkthrough's too)
# Small settings over the calls' own, so that the blocks run in seconds (the shell test appends the same flags).
SMALL: dict[str, dict[str, Any]] = {
    "quantize": {"calib_images": 8},
    "evaluate": {"limit": 8},
    "run": {"limit": 8, "calib_images": 8, "iterations": 2},
    "compare": {"limit": 8, "calib_images": 8, "iterations": 2, "batch": "1", "cpu_int8": False},  # that row: test_compare.py
}
COMMAND = {"evaluate": "eval"}


def python_blocks() -> list[str]:
    parts = DOCS.read_text(encoding="utf-8").split("```python")[1:]
    return [part.split("```", 1)[0] for part in parts]


class Recorder:
    """csa_cli with the small settings; each call is replayed as its command at once (the same caches and
    pulls), and its record compared with the command's. `kinds`: what each call returned."""

    def __init__(self, csa: Callable[..., CliResult], folder: Path) -> None:
        self.csa, self.folder = csa, folder
        self.calls: list[str] = []
        self.kinds: list[str] = []

    def __getattr__(self, name: str) -> Any:
        value = getattr(csa_cli, name)
        if name not in csa_cli.api.__all__ or not callable(value):
            return value

        @functools.wraps(value)
        def call(*args: Any, **kwargs: Any) -> Any:
            kwargs = {**kwargs, **SMALL.get(name, {})}
            self.calls.append(name)
            try:
                result = value(*args, **kwargs)
            except csa_cli.CsaError as exc:
                self.kinds.append(_replay(name, args, kwargs, exc, self.csa, self.folder))
                raise
            self.kinds.append(_replay(name, args, kwargs, result, self.csa, self.folder))
            return result

        return call


def _command_line(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], folder: Path) -> list[str]:
    """The command a call is: each record argument as the .json file a command reads, each option as its flag."""
    words = [COMMAND.get(name, name)]
    for arg in args:
        if isinstance(arg, Record):
            path = folder / f"record{len(list(folder.iterdir()))}.json"
            path.write_text(arg.to_json() + "\n")
            words.append(str(path))
        else:
            words.append(os.fspath(arg))
    defaults = {n: p.default for n, p in inspect.signature(getattr(csa_cli, name)).parameters.items()}
    for key, value in kwargs.items():
        if key in ("on_event", "on_update") or value == defaults[key]:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, list | tuple):
            for item in value:
                words += [flag, str(item)]
        else:
            words += [flag, str(value)]
    return words


def _same(api: Any, cli: Any, where: str) -> None:
    """Same fields (recursively) and, wherever a value is a path, the same path."""
    if isinstance(api, dict):
        assert isinstance(cli, dict) and set(api) == set(cli), f"{where}: fields {sorted(set(api) ^ set(cli))} differ"
        for key in api:
            _same(api[key], cli[key], f"{where}.{key}")
    elif isinstance(api, list) and isinstance(cli, list) and len(api) == len(cli):
        for i, (a, c) in enumerate(zip(api, cli, strict=True)):
            _same(a, c, f"{where}[{i}]")
    elif isinstance(api, str) and os.path.isabs(api) and Path(api).exists():
        assert api == cli, f"{where}: {api} vs {cli}"


def _replay(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], outcome: Any, csa: Callable[..., CliResult], folder: Path) -> str:
    words = _command_line(name, args, kwargs, folder)
    shown = csa(*words)
    if isinstance(outcome, csa_cli.CsaError):
        assert shown.exit_code == int(outcome.exit_code), (words, shown.stderr)
        expected = [outcome.record] if outcome.record is not None else []
        printed = [r for r in shown.records if r["kind"] != "error"]
    else:
        assert shown.exit_code == 0, (words, shown.stderr)
        expected = outcome if isinstance(outcome, list) else [outcome]
        printed = shown.records
    assert [r.kind for r in expected] == [r["kind"] for r in printed], words
    for record, line in zip(expected, printed, strict=True):
        _same(json.loads(record.to_json()), line, " ".join(words))
    return expected[0].kind if expected else "error"


def test_python_docs_blocks_return_what_the_commands_print(hub_env: Any, imagenet_photos: Any, tmp_path: Path, csa: Callable[..., CliResult]) -> None:
    blocks = python_blocks()
    assert len(blocks) == 3 and "checkpoint = csa.pull(MODEL)" in blocks[0]
    (tmp_path / "records").mkdir()
    recorder = Recorder(csa, tmp_path / "records")
    for i, block in enumerate(blocks):
        code = block.replace('MODEL, DATA = "convnext-tiny"', f'MODEL, DATA = "{WALKTHROUGH_MODEL}"')
        for name, stand_in in STAND_INS.items():
            code = code.replace(name, stand_in)
        code = code.replace('"~/imagenet/val"', repr(str(imagenet_photos.val_dir))).replace("import csa_cli as csa\n", "")
        exec(compile(code, f"docs/python.md block {i + 1}", "exec"), {"csa": recorder})
    assert recorder.calls[:6] == ["pull", "export", "check", "quantize", "engine", "run"], recorder.calls
    assert recorder.kinds[:6] == ["checkpoint", "onnx", "onnx", "quantized", "bundle", "run"]
    # block 2: a failed check and an eval under --min-top1 give their records on the exception, as the commands print them
    assert {"evaluate", "compare"} <= set(recorder.calls) and {"eval", "compare"} <= set(recorder.kinds)
