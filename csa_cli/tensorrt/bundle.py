"""Self-contained Orin bundles: everything to build and validate engines on the device, no csa there.

Layout (every path relative to the bundle root; scripts `cd` there first):
    README.md             what it is, what is built, what validates it, what was and was not checked
    plan.json             the BuildPlan (pydantic, paths relative to the bundle)
    build.sh              checks the device's TensorRT, fits the calibration cache header to it, runs
                          the trtexec build lines (engines/, timing.cache; logs and layers in results/)
    validate.sh           runs each engine on the validation images and times it (trtexec), compares
                          with ONNX Runtime (compare_outputs.py), locates a loss layer by layer
    compare_outputs.py    python3 + struct + json only (DRIVE OS has no numpy/torch)
    onnx/*.onnx           the ONNX file(s), Q/DQ for int8/mixed; onnx/*_debug_*.onnx for the loss search
    calib/*.cache         the calibration cache (implicit INT8), when the plan uses one
    data/io.json          images, labels, per-engine chunks and references, tolerances (tensorrt/validation.py)
    data/*.bin            raw little-endian float32: validation images, ONNX Runtime reference outputs
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

from pydantic import BaseModel, ConfigDict

from csa_cli.errors import CsaError
from csa_cli.paths import atomic_dir, csa_home, link_or_copy
from csa_cli.paths import sha256_file as _sha256
from csa_cli.tensorrt.capability import parse_version
from csa_cli.tensorrt.plan import (
    CHUNK,
    BuildPlan,
    EngineSpec,
    plan_json,
    to_trtexec,
    trtexec_accuracy_args,
    trtexec_build_args,
    trtexec_timing_args,
    validate_plan,
)
from csa_cli.tensorrt.readme import readme
from csa_cli.tensorrt.validation import (
    TOLERANCES,
    BundleIO,
    DebugIO,
    EngineIO,
    OutputRef,
    ValidationSet,
    pad_chunk,
    random_validation_set,
    reference_outputs,
    write_debug_graph,
)

TIMING_CACHE = "timing.cache"
SCRIPTS = ("build.sh", "validate.sh", "compare_outputs.py")
MARKER_BEGIN = "# >>> engines: written by csa from plan.json"
MARKER_END = "# <<< engines"


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


def device_script(name: str) -> str:
    """A script of csa_cli/tensorrt/device/, as shipped (real files, checked by bash -n and shellcheck)."""
    from importlib import resources

    return resources.files("csa_cli.tensorrt").joinpath("device", name).read_text(encoding="utf-8")


def fill_script(template: str, lines: list[str], block: str = "engines") -> str:
    """The template with `lines` between its `block` markers (the markers stay, so a reader sees where)."""
    begin, end = f"# >>> {block}: written by csa from plan.json\n", f"# <<< {block}\n"
    head, sep, rest = template.partition(begin)
    body, sep_end, tail = rest.partition(end)
    indent = head[len(head.rstrip(" ")) :]  # the markers' own indentation (inside a function)
    if not sep or not sep_end or body.strip():
        raise CsaError("a device script template lost its markers (csa_cli/tensorrt/device/)")
    return head + begin + "".join(indent + line + "\n" for line in lines) + indent + end + tail


def _cmd(argv: list[str]) -> str:
    """A trtexec argv as a shell line, the executable taken from $TRTEXEC."""
    return '"$TRTEXEC" ' + shlex.join(argv[1:])


def _build_log(spec: EngineSpec, validation: bool = False) -> str:
    return f"results/build_b{spec.batch}{'_validate' if validation else ''}.log"


def build_script(plan: BuildPlan) -> str:
    major, minor = parse_version(plan.trt_version)
    lines = [
        f"# {plan.model} {plan.precision} ({plan.capability}) for TensorRT {plan.trt_version}",
        f"check_version {major} {minor if '.' in plan.trt_version else 'any'}",
    ]
    if plan.calib_cache and not all(s.has_qdq for s in plan.engines):
        lines.append(f"calib_header {shlex.quote(plan.calib_cache)}")
    for spec in plan.engines:
        mode = "safe" if plan.safe else "std"
        lines.append(f"build {_build_log(spec)} {mode} {_cmd(trtexec_build_args(plan, spec, layer_info=_layers(spec)))}")
        if spec.validate_engine:
            argv = trtexec_build_args(plan, spec, validation=True, layer_info=_layers(spec))
            lines.append(f"build {_build_log(spec, True)} std {_cmd(argv)}")
    return fill_script(device_script("build.sh"), lines)


def _layers(spec: EngineSpec) -> str:
    return f"results/layers_b{spec.batch}.json"


def validate_script(plan: BuildPlan, io: BundleIO) -> str:
    lines = []
    for spec, eio in zip(plan.engines, io.engines, strict=True):
        lines.append(f"engine {spec.batch} {shlex.quote(spec.runnable)}")
        lines.append(f"accuracy {spec.batch} {eio.chunks} {_cmd(trtexec_accuracy_args(plan, spec, inputs=eio.inputs, outputs=eio.results))}")
        lines.append(f"timing {spec.batch} {_cmd(trtexec_timing_args(plan, spec, times=eio.times, profile=eio.profile))}")
        lines.append(f"compare {spec.batch}")
    return fill_script(fill_script(device_script("validate.sh"), lines), debug_lines(plan, io), block="debug")


def debug_spec(plan: BuildPlan, io: BundleIO) -> tuple[BuildPlan, EngineSpec] | None:
    """The plan and spec of the debug engine: the smallest batch's settings, not safe, DLA layers free to fall back."""
    if io.debug is None:
        return None
    spec = next(s for s in plan.engines if s.batch == io.debug.batch)
    debug_plan = plan.model_copy(update={"safe": False, "gpu_fallback": plan.dla_core is not None, "timing_cache": None})
    # the same input format (validate.sh's chunk files are in it); the marked outputs in TensorRT's default layout
    debug = spec.model_copy(update={"onnx": io.debug.onnx, "engine": io.debug.engine, "validate_engine": None, "output_formats": None})
    return debug_plan, debug


def debug_lines(plan: BuildPlan, io: BundleIO) -> list[str]:
    found = debug_spec(plan, io)
    if found is None or io.debug is None:
        return ['echo "this bundle has no debug graph" >&2']
    debug_plan, spec = found
    build = _cmd(trtexec_build_args(debug_plan, spec))
    run = _cmd(trtexec_accuracy_args(debug_plan, spec, inputs=f"results/in_b{spec.batch}_0.bin", outputs=io.debug.outputs))
    return [
        f'{build} >results/debug_build.log 2>&1 || {{ echo "debug engine: build failed (results/debug_build.log)" >&2; return 1; }}',
        f'"$PYTHON" compare_outputs.py slice --io data/io.json --batch {spec.batch} --chunk 0 || return 1',
        f'{run} >results/debug_run.log 2>&1 || {{ echo "debug engine: run failed (results/debug_run.log)" >&2; return 1; }}',
        '"$PYTHON" compare_outputs.py debug --io data/io.json',
    ]


def _write_f32(path: Path, array: Any) -> None:
    import numpy as np

    path.write_bytes(np.ascontiguousarray(array, dtype="<f4").tobytes())


def _executable(path: Path) -> None:
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _copy_sources(root: Path, plan: BuildPlan) -> tuple[list[dict[str, Any]], str | None]:
    """ONNX files and the calibration cache copied in; (engine specs with bundle paths, cache path)."""
    specs: list[dict[str, Any]] = []
    for spec in plan.engines:
        src = Path(spec.onnx)
        if not src.is_file():
            raise CsaError(f"ONNX file not found: {src}")
        rel_onnx = f"onnx/{plan.model}_b{spec.batch}{'_dyn' if spec.dynamic else ''}{'_qdq' if spec.has_qdq else ''}.onnx"
        _copy_onnx(src, root / rel_onnx)
        engines = {"engine": f"engines/{Path(spec.engine).name}"}
        if spec.validate_engine:
            engines["validate_engine"] = f"engines/{Path(spec.validate_engine).name}"
        specs.append({**spec.model_dump(), "onnx": rel_onnx, **engines})
    calib = None
    if plan.calib_cache and not all(s.has_qdq for s in plan.engines):
        src_cache = Path(plan.calib_cache)
        if not src_cache.is_file():
            raise CsaError(f"calibration cache not found: {src_cache}")
        (root / "calib").mkdir(exist_ok=True)
        calib = f"calib/{plan.model}.cache"
        _place(src_cache, root / calib)
    return specs, calib


def _engine_io(root: Path, plan: BuildPlan, spec: EngineSpec, images: Any) -> EngineIO:
    """ONNX Runtime's outputs of the bundle's ONNX for every validation image, and where validate.sh puts its files."""
    refs = []
    for name, value in reference_outputs(root / spec.onnx, spec.input_name, spec.batch, images):
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        rel_ref = f"data/reference_b{spec.batch}_{safe}.bin"
        _write_f32(root / rel_ref, value)
        refs.append(OutputRef(name=name, reference=rel_ref, shape=list(value.shape)))
    b = spec.batch
    return EngineIO(
        batch=b,
        engine=spec.runnable,
        input_name=spec.input_name,
        chunks=-(-images.shape[0] // b),
        outputs=refs,
        inputs=f"results/in_b{b}_{CHUNK}.bin",
        results=f"results/out_b{b}_{CHUNK}.json",
        times=f"results/times_b{b}.json",
        profile=None if plan.capability == "SAFETY" else f"results/profile_b{b}.json",  # the safe runtime has no layer profiler
        layers=_layers(spec),
        build_log=_build_log(spec),
    )


def write_bundle_into(
    root: Path, plan: BuildPlan, *, seed: int = 0, check_summary: str | None = None, validation: ValidationSet | None = None, upstream_check: str | None = None
) -> BuildPlan:
    """Fill `root` (an empty, usually temporary, folder) with the bundle for `plan`.

    `plan` names the source files (ONNX, calibration cache) where they are now; the bundle's
    plan.json names the copies, relative to the bundle root. Returns that relative plan.
    `validation` holds the images validate.sh runs (default: seeded random inputs, said so).
    """
    import onnxruntime

    for sub in ("onnx", "data", "results"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    specs, calib = _copy_sources(root, plan)
    rel_plan = validate_plan({**plan.model_dump(by_alias=True), "engines": specs, "calib_cache": calib, "timing_cache": TIMING_CACHE})
    vset = validation or random_validation_set(rel_plan.engines[0].chw, 8, seed)
    _write_f32(root / "data" / "images.bin", vset.images)
    engine_io = [_engine_io(root, rel_plan, spec, vset.images) for spec in rel_plan.engines]
    first = min(rel_plan.engines, key=lambda s: s.batch)
    debug_onnx = f"onnx/{plan.model}_debug_b{first.batch}.onnx"
    tensors = write_debug_graph(
        root / first.onnx, root / debug_onnx, first.input_name, pad_chunk(vset.images, 0, first.batch, first.batch), root / "data" / "debug_reference.bin"
    )
    io = BundleIO(
        model=plan.model,
        precision=plan.precision,
        tolerance=dict(TOLERANCES[plan.precision]),
        seed=seed,
        reference_runtime=f"onnxruntime {onnxruntime.__version__} CPU",
        images="data/images.bin",
        image_shape=list(vset.images.shape),
        input_format=first.input_format,
        inputs_source=vset.source,
        labels=list(vset.labels),
        image_files=[Path(f).name for f in vset.files],
        engines=engine_io,
        debug=DebugIO(
            batch=first.batch,
            onnx=debug_onnx,
            engine=f"engines/{plan.model}_debug_b{first.batch}.engine",
            reference="data/debug_reference.bin",
            outputs="results/debug_outputs.json",
            tensors=tensors,
        ),
    )
    (root / "data" / "io.json").write_text(io.model_dump_json(by_alias=True, indent=2) + "\n", encoding="utf-8")
    (root / "plan.json").write_text(plan_json(rel_plan), encoding="utf-8")
    (root / "build.sh").write_text(build_script(rel_plan), encoding="utf-8")
    (root / "validate.sh").write_text(validate_script(rel_plan, io), encoding="utf-8")
    (root / "compare_outputs.py").write_text(device_script("compare_outputs.py"), encoding="utf-8")
    for script in SCRIPTS:
        _executable(root / script)
    (root / "README.md").write_text(readme(rel_plan, io, check_summary, upstream_check, [shlex.join(a) for a in to_trtexec(rel_plan)]), encoding="utf-8")
    return rel_plan


def bundle_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def write_bundle(
    output: str | os.PathLike[str],
    plan: BuildPlan,
    *,
    seed: int = 0,
    force: bool = False,
    check_summary: str | None = None,
    validation: ValidationSet | None = None,
    upstream_check: str | None = None,
) -> BundleResult:
    """Write the bundle to `output` atomically (a temporary folder renamed into place)."""
    target = Path(output)
    if target.exists() and not force:
        raise CsaError(f"{target} already exists", hint="choose another --output, or add --force to replace it")
    if target.exists() and not target.is_dir():
        raise CsaError(f"{target} exists and is not a folder", hint="choose another --output")
    with atomic_dir(target) as tmp:
        rel_plan = write_bundle_into(tmp, plan, seed=seed, check_summary=check_summary, validation=validation, upstream_check=upstream_check)
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
