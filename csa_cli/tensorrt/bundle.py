"""Self-contained Orin bundles: everything to build and validate engines on the device, no csa there.

Layout (every path relative to the bundle root; scripts `cd` there first):
    README.md             what it is, how to run it, what was and was not checked
    plan.json             the BuildPlan (pydantic, paths relative to the bundle)
    build.sh              trtexec command lines equivalent to the plan (engines/ + timing.cache)
    validate.sh           times each engine (trtexec --exportTimes) and compares its outputs
    compare_outputs.py    the comparison: python3 + struct + json only (DRIVE OS has no numpy/torch)
    onnx/*.onnx           the ONNX file(s), QDQ for int8/mixed
    calib/*.cache         the calibration cache (implicit INT8 on TensorRT 8.6), when given
    data/io.json          per engine: input/reference files, shapes, tolerances
    data/*.bin            raw little-endian float32: saved inputs and ONNX Runtime reference outputs
trtexec reads raw inputs with --loadInputs and writes outputs as JSON with --exportOutput,
so the device needs neither numpy nor csa.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from csa_cli.errors import CsaError
from csa_cli.paths import atomic_dir, csa_home, link_or_copy
from csa_cli.paths import sha256_file as _sha256
from csa_cli.tensorrt.plan import (
    BuildPlan,
    EngineSpec,
    plan_json,
    to_trtexec,
    trtexec_run_args,
    validate_plan,
)

# Default pass criteria per precision. FP32 engines run TF32 by default on Ampere+ (Orin too),
# so even fp32 is not bit-exact. Editable per bundle in data/io.json.
TOLERANCES: dict[str, dict[str, float]] = {
    "fp32": {"max_rel_err": 1e-2, "min_cosine": 0.9999},
    "fp16": {"max_rel_err": 5e-2, "min_cosine": 0.999},
    "int8": {"max_rel_err": 0.25, "min_cosine": 0.98},
    "mixed": {"max_rel_err": 0.25, "min_cosine": 0.98},
}
TIMING_CACHE = "timing.cache"
SCRIPTS = ("build.sh", "validate.sh", "compare_outputs.py")


class OutputRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    reference: str
    shape: list[int]


class EngineIO(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch: int
    engine: str
    input_name: str
    input: str
    input_shape: list[int]
    outputs: list[OutputRef]
    results: str
    times: str


class BundleIO(BaseModel):
    """data/io.json: what validate.sh feeds each engine and what it compares against."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = Field(default=1, alias="schema")
    model: str
    precision: str
    tolerance: dict[str, float]
    seed: int
    reference_runtime: str
    engines: list[EngineIO]


class BundleResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    plan: BuildPlan
    files: list[str]


def _inside_home(*paths: Path) -> bool:
    home = csa_home().resolve()
    return all(p.resolve().is_relative_to(home) for p in paths)


def _place(src: Path, dst: Path) -> None:
    """A file into the bundle: a hard link when both sit under CSA_HOME (a bundle kept there costs no second
    100 MB, and is still whole files when copied to the device), a copy into a user's --output folder."""
    if _inside_home(src, dst.parent):
        link_or_copy(src, dst)
    else:
        shutil.copyfile(src, dst)


def _copy_onnx(src: Path, dst: Path) -> None:
    """Place an ONNX file; one with external data is re-saved as a single file (the bundle must hold it all)."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    head = onnx.load(str(src), load_external_data=False)
    if any(uses_external_data(t) for t in head.graph.initializer):
        onnx.save(onnx.load(str(src)), str(dst))
    else:
        _place(src, dst)


def _reference(onnx_path: Path, spec: EngineSpec, seed: int) -> tuple[Any, list[tuple[str, Any]]]:
    """A seeded input at the engine's batch and ONNX Runtime's outputs for it (float32)."""
    import numpy as np
    import onnxruntime as ort

    rng = np.random.default_rng(seed + spec.batch)
    x = rng.standard_normal((spec.batch, *spec.chw), dtype=np.float32)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = min(4, os.cpu_count() or 1)
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, {spec.input_name: x})
    return x, [(n, np.asarray(v, dtype=np.float32)) for n, v in zip(names, values, strict=True)]


MARKER_BEGIN = "# >>> engines: written by csa from plan.json"
MARKER_END = "# <<< engines"


def device_script(name: str) -> str:
    """A script of csa_cli/tensorrt/device/, as shipped (real files, checked by bash -n and shellcheck)."""
    from importlib import resources

    return resources.files("csa_cli.tensorrt").joinpath("device", name).read_text(encoding="utf-8")


def fill_script(template: str, lines: list[str]) -> str:
    """The template with `lines` between its engine markers (the markers stay, so a reader sees where)."""
    head, sep, rest = template.partition(MARKER_BEGIN + "\n")
    block, sep_end, tail = rest.partition(MARKER_END + "\n")
    if not sep or not sep_end or block.strip():
        raise CsaError("a device script template lost its engine markers (csa_cli/tensorrt/device/)")
    return head + MARKER_BEGIN + "\n" + "".join(line + "\n" for line in lines) + MARKER_END + "\n" + tail


def _cmd(argv: list[str]) -> str:
    """A trtexec argv as a shell line, the executable taken from $TRTEXEC."""
    return '"$TRTEXEC" ' + shlex.join(argv[1:])


def build_script(plan: BuildPlan) -> str:
    lines = [f"# {plan.model} {plan.precision} for TensorRT {plan.trt_version}"]
    for spec, argv in zip(plan.engines, to_trtexec(plan), strict=True):
        lines += [f'echo "building {spec.engine}" >&2', _cmd(argv)]
    return fill_script(device_script("build.sh"), lines)


def validate_script(plan: BuildPlan, io: BundleIO) -> str:
    lines = []
    for spec, eio in zip(plan.engines, io.engines, strict=True):
        argv = trtexec_run_args(plan, spec, inputs=eio.input, outputs=eio.results, times=eio.times)
        log = f"results/trtexec_b{spec.batch}.log"
        lines.append(f"validate --batch {spec.batch} {shlex.quote(spec.engine)} {shlex.quote(log)} {_cmd(argv)}")
    return fill_script(device_script("validate.sh"), lines)


def readme(plan: BuildPlan, io: BundleIO, check_summary: str | None) -> str:
    rows = "\n".join(f"| {s.batch} | `{s.onnx}` | `{s.engine}` | {'yes' if s.has_qdq else 'no'} |" for s in plan.engines)
    cmds = "\n".join(shlex.join(a) for a in to_trtexec(plan))
    tol = ", ".join(f"{k} {v}" for k, v in io.tolerance.items())
    weights = ""
    if plan.weights:
        weights = f"\nWeights: **{plan.weights}**" + (" (random: outputs mean nothing for accuracy, only for comparison)" if plan.weights == "random" else "")
    return f"""# {plan.model}: {plan.precision} TensorRT bundle for Orin

Built by `csa engine --target orin`. Needs only `trtexec` and `python3` on the device (no csa,
numpy or torch). Target TensorRT {plan.trt_version}; engines are specific to the GPU/DLA and the
TensorRT version they are built with, so they are built here, on the device.{weights}

| batch | ONNX | engine (built by build.sh) | Q/DQ |
| --- | --- | --- | --- |
{rows}

Settings: precision {plan.precision} (FP16 {"on" if plan.fp16 else "off"}, INT8 {"on" if plan.int8 else "off"}, FP32 allowed),
workspace {plan.workspace_mib} MiB, restricted {"yes" if plan.restricted else "no"}, safe {"yes" if plan.safe else "no"},
DLA core {plan.dla_core if plan.dla_core is not None else "none"}{" with GPU fallback" if plan.gpu_fallback else ""},
calibration cache {f"`{plan.calib_cache}`" if plan.calib_cache else "none"}. Full plan: `plan.json`.
{f"Restricted-mode check before bundling: {check_summary}" if check_summary else ""}

## Steps
1. Copy this folder to the device.
2. `./build.sh` builds every engine into `engines/` (timing cache `{TIMING_CACHE}` reused on rebuilds).
3. `./validate.sh` runs each engine on the saved inputs (`data/input_b*.bin`), times it with
   `trtexec --exportTimes`, and compares its outputs with the ONNX Runtime outputs saved in
   `data/reference_*.bin` (pass: {tol}; edit `data/io.json` to change). Exit 0 = all pass.
4. Bring `results/times_b*.json` back and run `csa import-timings results/times_b{plan.engines[0].batch}.json --device "Orin AGX"`
   (model, batch and precision are read from this bundle's plan.json) so `csa compare` shows them.

Set `TRTEXEC=/path/to/trtexec` if it is not on PATH or in /usr/src/tensorrt/bin.

## Build commands
```
{cmds}
```
"""


def _write_f32(path: Path, array: Any) -> None:
    import numpy as np

    path.write_bytes(np.ascontiguousarray(array, dtype="<f4").tobytes())


def _executable(path: Path) -> None:
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def write_bundle_into(root: Path, plan: BuildPlan, *, seed: int = 0, check_summary: str | None = None) -> BuildPlan:
    """Fill `root` (an empty, usually temporary, folder) with the bundle for `plan`.

    `plan` names the source files (ONNX, calibration cache) where they are now; the bundle's
    plan.json names the copies, relative to the bundle root. Returns that relative plan.

    Long because it lays out every file of a bundle in one place, so that the layout in this
    module's docstring can be read against it.
    """
    for sub in ("onnx", "data"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    specs: list[dict[str, Any]] = []
    engine_io: list[EngineIO] = []
    sources: list[Path] = []
    for spec in plan.engines:
        src = Path(spec.onnx)
        if not src.is_file():
            raise CsaError(f"ONNX file not found: {src}")
        suffix = "_qdq" if spec.has_qdq else ""
        rel_onnx = f"onnx/{plan.model}_b{spec.batch}{'_dyn' if spec.dynamic else ''}{suffix}.onnx"
        _copy_onnx(src, root / rel_onnx)
        sources.append(root / rel_onnx)
        specs.append({**spec.model_dump(), "onnx": rel_onnx, "engine": f"engines/{Path(spec.engine).name}"})
    calib = None
    if plan.calib_cache:
        src_cache = Path(plan.calib_cache)
        if not src_cache.is_file():
            raise CsaError(f"calibration cache not found: {src_cache}")
        (root / "calib").mkdir(exist_ok=True)
        calib = f"calib/{plan.model}.cache"
        _place(src_cache, root / calib)
    rel_plan = validate_plan({**plan.model_dump(by_alias=True), "engines": specs, "calib_cache": calib, "timing_cache": TIMING_CACHE})
    for spec, onnx_copy in zip(rel_plan.engines, sources, strict=True):
        x, outputs = _reference(onnx_copy, spec, seed)
        rel_input = f"data/input_b{spec.batch}.bin"
        _write_f32(root / rel_input, x)
        refs = []
        for name, value in outputs:
            safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
            rel_ref = f"data/reference_b{spec.batch}_{safe}.bin"
            _write_f32(root / rel_ref, value)
            refs.append(OutputRef(name=name, reference=rel_ref, shape=list(value.shape)))
        engine_io.append(
            EngineIO(
                batch=spec.batch,
                engine=spec.engine,
                input_name=spec.input_name,
                input=rel_input,
                input_shape=list(x.shape),
                outputs=refs,
                results=f"results/output_b{spec.batch}.json",
                times=f"results/times_b{spec.batch}.json",
            )
        )
    import onnxruntime

    io = BundleIO(
        model=plan.model,
        precision=plan.precision,
        tolerance=dict(TOLERANCES[plan.precision]),
        seed=seed,
        reference_runtime=f"onnxruntime {onnxruntime.__version__} CPU",
        engines=engine_io,
    )
    (root / "data" / "io.json").write_text(io.model_dump_json(by_alias=True, indent=2) + "\n", encoding="utf-8")
    (root / "plan.json").write_text(plan_json(rel_plan), encoding="utf-8")
    (root / "build.sh").write_text(build_script(rel_plan), encoding="utf-8")
    (root / "validate.sh").write_text(validate_script(rel_plan, io), encoding="utf-8")
    (root / "compare_outputs.py").write_text(device_script("compare_outputs.py"), encoding="utf-8")
    for script in SCRIPTS:
        _executable(root / script)
    (root / "README.md").write_text(readme(rel_plan, io, check_summary), encoding="utf-8")
    return rel_plan


def bundle_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def write_bundle(output: str | os.PathLike[str], plan: BuildPlan, *, seed: int = 0, force: bool = False, check_summary: str | None = None) -> BundleResult:
    """Write the bundle to `output` atomically (a temporary folder renamed into place)."""
    target = Path(output)
    if target.exists() and not force:
        raise CsaError(f"{target} already exists", hint="choose another --output, or add --force to replace it")
    if target.exists() and not target.is_dir():
        raise CsaError(f"{target} exists and is not a folder", hint="choose another --output")
    with atomic_dir(target) as tmp:
        rel_plan = write_bundle_into(tmp, plan, seed=seed, check_summary=check_summary)
    return BundleResult(path=str(target), plan=rel_plan, files=bundle_files(target))


def bundle_digest(root: Path) -> dict[str, str]:
    """sha256 of every file in a bundle (for the record and for tests)."""
    return {name: _sha256(root / name) for name in bundle_files(root)}


def read_bundle_plan(root: Path) -> BuildPlan | None:
    """The plan.json of a bundle folder, or None when `root` is not one."""
    path = root / "plan.json"
    if not path.is_file():
        return None
    try:
        return validate_plan(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, CsaError):
        return None


# ---------------------------------------------------------------------------------------------
# The engine stage: model | checkpoint/onnx/quantized record | ONNX path -> engine(s) or bundle


# ---------------------------------------------------------------------------------------------
# trtexec --exportTimes -> the results store (`csa import-timings`)
