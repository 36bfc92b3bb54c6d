"""`csa engine`: a model, an ONNX file or an upstream record -> TensorRT engines or an Orin bundle.

--target local builds engines here through the TensorRT Python API (needs TensorRT and a GPU:
exit 4 otherwise); --target orin writes a self-contained bundle (tensorrt/bundle.py) that
builds and validates on the device. A restricted or safety build checks the graph first.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from csa_cli import events
from csa_cli.errors import CheckFailed, CsaError, UsageError
from csa_cli.graph.onnx_file import OnnxInfo, inspect_onnx
from csa_cli.paths import atomic_dir
from csa_cli.paths import sha256_file as _sha256
from csa_cli.store import cached_or_built
from csa_cli.tensorrt.bundle import bundle_files, read_bundle_plan, write_bundle, write_bundle_into
from csa_cli.tensorrt.plan import (
    DEFAULT_ORIN_TRT,
    DEFAULT_WORKSPACE_MIB,
    PRECISIONS,
    BuildPlan,
    make_plan,
    plan_json,
)

if TYPE_CHECKING:
    from csa_cli.records import Record


def _onnx_inputs(
    source: Record | str | Path | None,
    *,
    precision: str,
    batches: list[int] | None,
    weights: str,
    img_size: int | tuple[int, int] | None,
    manifest: str | os.PathLike[str] | None,
    calib_cache: str | None,
) -> tuple[str, list[OnnxInfo], dict[str, Any]]:
    """(model name, ONNX files, fields carried from upstream: weights, weights_hash, calib_cache, check).

    Long because it accepts every input `csa engine` takes (record, ONNX path, model name) and says
    in words what each cannot do.
    """
    from csa_cli.records import Record

    carried: dict[str, Any] = {"weights": None, "weights_hash": None, "calib_cache": calib_cache, "check": None, "source_onnx": []}
    record = source if isinstance(source, Record) else None
    path: Path | None = None
    model: str | None = None
    if record is not None:
        model = record.model
        carried.update(weights=record.weights, weights_hash=record.field("weights_hash"), check=record.field("check"))
        if record.kind in ("onnx", "quantized"):
            if not record.path:
                raise CsaError(f"the {record.kind} record has no path")
            path = Path(record.path)
            if record.kind == "quantized" and carried["calib_cache"] is None:
                carried["calib_cache"] = record.field("calib_cache")
        elif record.kind != "checkpoint":
            raise UsageError(f"csa engine takes a model, an ONNX file, or a checkpoint/onnx/quantized record, not a {record.kind!r} record")
    elif isinstance(source, Path) or (isinstance(source, str) and (source.endswith(".onnx") or Path(source).is_file())):
        path = Path(source)
    elif isinstance(source, str):
        model = source
    else:
        raise UsageError("no input: give a MODEL or an ONNX file, or pipe the record of a previous csa stage")

    if path is not None:
        info = inspect_onnx(path)
        name = model or path.stem
        rebatch = record is not None and record.kind == "onnx" and model is not None and not info.dynamic and batches and batches != [info.batch]
        if rebatch:
            path = None  # an FP32 export of a zoo model: export it again, once per asked batch
        elif not info.dynamic and batches and batches != [info.batch]:
            raise UsageError(
                f"{path.name} is a static batch-{info.batch} ONNX, so it builds one engine at batch {info.batch}, not --batch {','.join(map(str, batches))}",
                hint="give the model (or its checkpoint record) to export one static ONNX per batch, or a dynamic-batch ONNX",
            )
        if path is not None:
            carried["source_onnx"] = [str(path)]
            return name, [info], carried

    assert model is not None
    if precision in ("int8", "mixed") and not carried["calib_cache"]:
        raise UsageError(
            f"precision {precision} needs INT8 scales, and a model name gives an FP32 ONNX",
            hint=f"quantize first: `csa quantize {model} ... | csa engine --precision {precision}`, or pass --calib-cache FILE",
        )
    try:
        from csa_cli.stages.export.stage import export_stage
    except ImportError:
        raise CsaError(
            "the export stage (csa_cli.stages.export.stage) is not available in this build", hint="give an ONNX file instead of a model name"
        ) from None
    infos = []
    want = weights if record is None or not record.weights else record.weights
    for b in batches or [1]:
        exported = export_stage(model, weights=want, batch=b, img_size=img_size, dynamic_batch=False, manifest=manifest)
        if not exported.path:
            raise CsaError(f"the export of {model} at batch {b} gave no path")
        infos.append(inspect_onnx(exported.path))
        carried["source_onnx"].append(exported.path)
        carried["weights"] = exported.weights or carried["weights"]
        carried["weights_hash"] = exported.field("weights_hash") or carried["weights_hash"]
    return model, infos, carried


def _gate_on_check(infos: list[OnnxInfo], carried: dict[str, Any], *, force: bool) -> str:
    """Restricted/safety builds: refuse (exit 3) a non-compliant graph unless --force. Returns the summary."""
    from csa_cli.stages.check.checks import check_onnx

    upstream = carried.get("check")
    summaries = []
    for info in infos:
        report = check_onnx(info.path, "restricted")
        summaries.append(f"{Path(info.path).name} (batch {info.batch or 'dynamic'}): {report.summary()}")
        if not report.compliant:
            ops = ", ".join(report.violated_ops)
            message = f"{Path(info.path).name} is not restricted-mode compliant: {len(report.violations)} violation(s) in {ops} ({report.summary()})"
            if not force:
                raise CheckFailed(message, hint="fix the graph (see `csa check --report DIR`), or add --force to bundle it anyway")
            events.warn(message + " (--force: going on)")
    if isinstance(upstream, dict) and upstream.get("compliant") is False and not force:
        raise CheckFailed("the upstream `csa check` found the graph non-compliant", hint="add --force to build anyway")
    return "; ".join(summaries)


def _file_hash(path: str | None) -> str | None:
    return _sha256(Path(path)) if path else None


def _check_options(precision: str, target: str, batch: list[int] | None, workspace_mib: int, dla: int | None, calib_cache: str | None) -> None:
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}", hint="use fp32, fp16, int8 or mixed")
    if target not in ("local", "orin"):
        raise UsageError(f"unknown target {target!r}", hint="use --target local or --target orin")
    if batch is not None and (not batch or min(batch) < 1):
        raise UsageError(f"--batch must be at least 1, got {batch}", hint="e.g. --batch 1,4,8,16")
    if workspace_mib < 1:
        raise UsageError(f"--workspace must be at least 1 MiB, got {workspace_mib}")
    if dla is not None and dla < 0:
        raise UsageError(f"--dla must be a DLA core number (0 or 1 on Orin), got {dla}")
    if calib_cache and not Path(calib_cache).is_file():
        raise CsaError(f"calibration cache not found: {calib_cache}")


def _bundle_folder(
    plan: BuildPlan, key: str, inputs: dict[str, Any], *, output: str | os.PathLike[str] | None, force: bool, seed: int, check_summary: str | None
) -> Path:
    """The Orin bundle: written to --output, or the cached artifact (written first if absent)."""
    if output is not None:
        return Path(write_bundle(output, plan, seed=seed, force=force, check_summary=check_summary).path)
    folder, cached = cached_or_built(
        plan.model, "bundle", key, inputs, lambda tmp: write_bundle_into(tmp, plan, seed=seed, check_summary=check_summary), redo=force
    )
    if cached:
        events.info(f"bundle cached: {folder}")
    return folder


def _engine_folder(plan: BuildPlan, key: str, inputs: dict[str, Any], *, output: str | os.PathLike[str] | None, force: bool) -> Path:
    """Engines built here: into --output, or the cached artifact (built first if absent)."""
    from csa_cli.tensorrt.builder import build_engines

    def build(folder: Path) -> list[Path]:
        (folder / "plan.json").write_text(plan_json(plan), encoding="utf-8")
        with events.status(f"building {len(plan.engines)} TensorRT engine(s) for {plan.model} ({plan.precision})"):
            return build_engines(plan, out_dir=folder)

    if output is not None:
        target_dir = Path(output)
        if target_dir.exists() and not force:
            raise CsaError(f"{target_dir} already exists", hint="choose another --output, or add --force to replace it")
        with atomic_dir(target_dir) as tmp:
            build(tmp)
        return target_dir
    folder, cached = cached_or_built(plan.model, "engine", key, inputs, build, redo=force)
    if cached:
        events.info(f"engine cached: {folder}")
    return folder


def engine_stage(
    source: Record | str | Path | None,
    *,
    precision: str = "fp16",
    target: str = "local",
    batch: list[int] | None = None,
    weights: str = "auto",
    manifest: str | os.PathLike[str] | None = None,
    restricted: bool = False,
    safe: bool = False,
    dla: int | None = None,
    workspace_mib: int = DEFAULT_WORKSPACE_MIB,
    output: str | os.PathLike[str] | None = None,
    force: bool = False,
    trt_version: str | None = None,
    opt_batch: int | None = None,
    calib_cache: str | None = None,
    img_size: int | tuple[int, int] | None = None,
    seed: int = 0,
) -> Record:
    """Build engines (--target local, needs TensorRT and a GPU) or write an Orin bundle; one record.

    Long because it takes every `csa engine` option by name (the command and `csa run` call it
    alike) and names the record's fields in one place; the work is in _onnx_inputs, _gate_on_check,
    make_plan and the _*_folder helpers.
    """
    from csa_cli.records import make_record
    from csa_cli.store import artifact_key

    _check_options(precision, target, batch, workspace_mib, dla, calib_cache)
    device = None
    if target == "local":
        from csa_cli.tensorrt.runtime import require_tensorrt

        trt, device = require_tensorrt()  # exit 4 before any export when TensorRT or the GPU is missing
        trt_version = str(trt.__version__)
    trt_version = trt_version or DEFAULT_ORIN_TRT

    model, infos, carried = _onnx_inputs(
        source, precision=precision, batches=batch, weights=weights, img_size=img_size, manifest=manifest, calib_cache=calib_cache
    )
    check_summary = _gate_on_check(infos, carried, force=force) if (restricted or safe) else None
    plan = make_plan(
        model,
        infos,
        precision=precision,
        target=target,
        trt_version=trt_version,
        batches=batch,
        opt_batch=opt_batch,
        calib_cache=carried["calib_cache"],
        workspace_mib=workspace_mib,
        restricted=restricted,
        safe=safe,
        dla_core=dla,
        engine_dir="engines" if target == "orin" else "",
        weights=carried["weights"],
        weights_hash=carried["weights_hash"],
    )
    inputs = {
        "onnx": [_sha256(Path(i.path)) for i in infos],
        "calib_cache": _file_hash(plan.calib_cache),
        "plan": plan.model_dump(exclude={"engines", "calib_cache"}),
        "profiles": [s.profile.model_dump() if s.profile else None for s in plan.engines],
        "seed": seed,
        "device": device,
    }
    key = artifact_key(**inputs)
    common = {
        "model": model,
        "precision": precision,
        "target": target,
        "trt_version": trt_version,
        "batches": [s.batch for s in plan.engines],
        "restricted": restricted,
        "safe": safe,
        "dla_core": dla,
        "gpu_fallback": plan.gpu_fallback,
        "weights": plan.weights,
        "weights_hash": plan.weights_hash,
        "source_onnx": carried["source_onnx"],
        "check": check_summary,
    }
    if target == "orin":
        folder = _bundle_folder(plan, key, inputs, output=output, force=force, seed=seed, check_summary=check_summary)
        rel = read_bundle_plan(folder)
        return make_record(
            "bundle",
            path=str(folder),
            files=bundle_files(folder),
            engines=[s.engine for s in (rel or plan).engines],
            calib_cache=(rel.calib_cache if rel else None),
            build="build.sh",
            validate="validate.sh",
            **common,
        )
    folder = _engine_folder(plan, key, inputs, output=output, force=force)
    engines = [{"batch": s.batch, "path": str(folder / s.engine)} for s in plan.engines]
    return make_record(
        "engine", path=engines[0]["path"], engines=engines, plan=str(folder / "plan.json"), device=device, calib_cache=plan.calib_cache, **common
    )
