"""`csa engine`: a model, an ONNX file or an upstream record -> TensorRT engines or an Orin bundle.

--target local builds standard engines here through the TensorRT Python API (needs TensorRT and a
GPU: exit 4 otherwise); --target orin writes a self-contained bundle (tensorrt/bundle.py) that
builds, validates and times on the device. What is built from is inputs.py; which checks a build
runs itself is gate.py; the images a bundle validates on are validation_set.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from csa_cli import events
from csa_cli.errors import CsaError, UsageError
from csa_cli.paths import atomic_dir
from csa_cli.paths import sha256_file as _sha256
from csa_cli.stages.engine.gate import gate
from csa_cli.stages.engine.inputs import Ask, BuildInputs, resolve_inputs
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
from csa_cli.tensorrt.validation import DEFAULT_IMAGES, ValidationSet

if TYPE_CHECKING:
    from csa_cli.records import Record


def _file_hash(path: str | None) -> str | None:
    return _sha256(Path(path)) if path else None


def _check_options(precision: str, target: str, batch: list[int] | None, workspace_mib: int, dla: int | None, calib_cache: str | None, safe: bool) -> None:
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}", hint="use fp32, fp16, int8 or mixed")
    if target not in ("local", "orin"):
        raise UsageError(f"unknown target {target!r}", hint="use --target local or --target orin")
    if safe and target == "local":
        raise UsageError(
            "--safe builds an engine for DRIVE OS's safe runtime, which only an Orin bundle builds",
            hint="use --target orin (--restricted checks the safety scope on a local build)",
        )
    if batch is not None and (not batch or min(batch) < 1):
        raise UsageError(f"--batch must be at least 1, got {batch}", hint="e.g. --batch 1,4,8,16")
    if workspace_mib < 1:
        raise UsageError(f"--workspace must be at least 1 MiB, got {workspace_mib}")
    if dla is not None and dla < 0:
        raise UsageError(f"--dla must be a DLA core number (0 or 1 on Orin), got {dla}")
    if dla is not None and precision == "fp32":
        raise UsageError("DLA has no FP32 kernels (it runs FP16 and INT8 only)", hint="use --precision fp16, int8 or mixed with --dla")
    if calib_cache and not Path(calib_cache).is_file():
        raise CsaError(f"calibration cache not found: {calib_cache}")


def check_engine_options(*, precision: str, target: str, workspace: int, trt_version: str | None, safe: bool, dla: int | None, no_gpu_fallback: bool) -> None:
    """The option checks `csa engine` (and csa_cli.api.engine) run before reading any input, in the command's words."""
    if precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if target not in ("local", "orin"):
        raise UsageError(f"--target must be local or orin, got {target!r}")
    if workspace < 1:
        raise UsageError(f"--workspace must be at least 1 MiB, got {workspace}")
    if target == "local" and trt_version is not None:
        raise UsageError("--trt-version is for --target orin; a local build uses the installed TensorRT")
    if safe and target == "local":
        raise UsageError(
            "--safe builds an engine for DRIVE OS's safe runtime, which only an Orin bundle builds",
            hint="use --target orin (--restricted checks the safety scope on a local build)",
        )
    if dla is not None and precision == "fp32":
        raise UsageError("DLA has no FP32 kernels (it runs FP16 and INT8 only)", hint="use --precision fp16, int8 or mixed with --dla")
    if no_gpu_fallback and dla is None:
        raise UsageError("--no-gpu-fallback applies to a DLA build", hint="add --dla N")


def _validation(
    built: BuildInputs, plan: BuildPlan, *, dataset: str | None, data_dir: str | os.PathLike[str] | None, count: int, seed: int, manifest: Any
) -> ValidationSet | None:
    """The bundle's validation images: held-out images of the dataset; INT8 refuses to go without them."""
    from csa_cli.stages.engine.validation_set import held_out_set
    from csa_cli.stages.evaluate.targets import calibration_files

    record = built.record
    dataset = dataset or (record.field("calib_dataset") if record is not None else None)
    if not dataset:
        if plan.int8:
            raise UsageError(
                f"an INT8 ({plan.precision}) bundle validates on real images, where a broken calibration shows, and no dataset was named",
                hint="give --dataset DATA (the held-out images of the calibration set), or pipe the record `csa quantize` wrote",
            )
        events.warn("no --dataset: the bundle validates on random inputs (agreement with ONNX Runtime only, no accuracy)")
        return None
    exclude = calibration_files(record, Path(record.path) if record is not None and record.path else None) if record is not None else []
    return held_out_set(
        built.model, built.infos[0], dataset=dataset, data_dir=data_dir, exclude=exclude, count=count, seed=seed, manifest=manifest, weights=built.weights
    )


def _bundle_folder(
    plan: BuildPlan,
    key: str,
    inputs: dict[str, Any],
    *,
    output: str | os.PathLike[str] | None,
    force: bool,
    seed: int,
    summaries: tuple[str | None, str | None],
    validation: ValidationSet | None,
) -> Path:
    """The Orin bundle: written to --output, or the cached artifact (written first if absent)."""
    own, upstream = summaries
    if output is not None:
        return Path(write_bundle(output, plan, seed=seed, force=force, check_summary=own, validation=validation, upstream_check=upstream).path)
    folder, cached = cached_or_built(
        plan.model,
        "bundle",
        key,
        inputs,
        lambda tmp: write_bundle_into(tmp, plan, seed=seed, check_summary=own, validation=validation, upstream_check=upstream),
        redo=force,
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


def _engine_entries(folder: Path, plan: BuildPlan) -> list[dict[str, Any]]:
    """Per engine: batch, path, and what its build recorded (size, device memory, layers by precision and device)."""
    from csa_cli.tensorrt.builder import read_engine_meta

    entries = []
    for spec in plan.engines:
        path = folder / spec.engine
        entry: dict[str, Any] = {"batch": spec.batch, "path": str(path)}
        meta = read_engine_meta(path)
        if meta is not None:
            entry.update(engine_bytes=meta.engine_bytes, device_memory_bytes=meta.device_memory_bytes)
            if meta.layers is not None:
                entry["layers"] = meta.layers.model_dump(exclude={"slowest"})
        entries.append(entry)
    return entries


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
    gpu_fallback: bool = True,
    workspace_mib: int = DEFAULT_WORKSPACE_MIB,
    output: str | os.PathLike[str] | None = None,
    force: bool = False,
    trt_version: str | None = None,
    opt_batch: int | None = None,
    calib_cache: str | None = None,
    img_size: int | tuple[int, int] | None = None,
    dataset: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    val_images: int = DEFAULT_IMAGES,
    seed: int = 0,
) -> Record:
    """Build engines (--target local, needs TensorRT and a GPU) or write an Orin bundle; one record.

    Long because it takes every `csa engine` option by name (the command and `csa run` call it
    alike) and names the record's fields in one place; the work is in resolve_inputs, gate,
    make_plan and the _*_folder helpers.
    """
    from csa_cli.records import make_record
    from csa_cli.store import artifact_key

    _check_options(precision, target, batch, workspace_mib, dla, calib_cache, safe)
    device = None
    if target == "local":
        from csa_cli.tensorrt.runtime import require_tensorrt

        trt, device = require_tensorrt()  # exit 4 before any export when TensorRT or the GPU is missing
        trt_version = str(trt.__version__)
    trt_version = trt_version or DEFAULT_ORIN_TRT
    fallback = dla is not None and not safe and gpu_fallback
    ask = Ask(precision, batch, weights, img_size, manifest, calib_cache, dla, trt_version)
    built = resolve_inputs(source, ask)
    verdicts = gate(built.infos, restricted=restricted, safe=safe, dla_core=dla, gpu_fallback=fallback, force=force, upstream=built.check)
    plan = make_plan(
        built.model,
        built.infos,
        precision=precision,
        target=target,
        trt_version=trt_version,
        batches=batch,
        opt_batch=opt_batch,
        calib_cache=built.calib_cache,
        workspace_mib=workspace_mib,
        restricted=restricted,
        safe=safe,
        dla_core=dla,
        gpu_fallback=fallback if dla is not None else None,
        engine_dir="engines" if target == "orin" else "",
        weights=built.weights,
        weights_hash=built.weights_hash,
    )
    validation = _validation(built, plan, dataset=dataset, data_dir=data_dir, count=val_images, seed=seed, manifest=manifest) if target == "orin" else None
    inputs = {
        "onnx": [_sha256(Path(i.path)) for i in built.infos],
        "calib_cache": _file_hash(plan.calib_cache),
        "plan": plan.model_dump(exclude={"engines", "calib_cache"}),
        "profiles": [s.profile.model_dump() if s.profile else None for s in plan.engines],
        "validation": sorted(validation.files) if validation is not None else None,
        "seed": seed,
        "device": device,
    }
    key = artifact_key(**inputs)
    record = built.record
    common = {
        "model": built.model,
        "precision": precision,
        "target": target,
        "trt_version": trt_version,
        "capability": plan.capability,
        "batches": [s.batch for s in plan.engines],
        "restricted": restricted,
        "safe": safe,
        "dla_core": dla,
        "gpu_fallback": plan.gpu_fallback,
        "weights": plan.weights,
        "weights_hash": plan.weights_hash,
        "source_onnx": built.source_onnx,
        "int8_source": built.int8_source,
        "check": verdicts.own,
        "upstream_check": verdicts.upstream,
        "dla_violations": verdicts.dla_violations,
        "calib_files_list": record.field("calib_files_list") if record is not None else None,
        "calib_dataset": record.field("calib_dataset") if record is not None else None,
    }
    if target == "orin":
        folder = _bundle_folder(plan, key, inputs, output=output, force=force, seed=seed, summaries=(verdicts.own, verdicts.upstream), validation=validation)
        rel = read_bundle_plan(folder)
        return make_record(
            "bundle",
            path=str(folder),
            files=bundle_files(folder),
            engines=[s.engine for s in (rel or plan).engines],
            calib_cache=(rel.calib_cache if rel else None),
            validation=validation.source if validation is not None else "random inputs",
            build="build.sh",
            validate="validate.sh",
            **common,
        )
    folder = _engine_folder(plan, key, inputs, output=output, force=force)
    engines = _engine_entries(folder, plan)
    return make_record(
        "engine", path=engines[0]["path"], engines=engines, plan=str(folder / "plan.json"), device=device, calib_cache=plan.calib_cache, **common
    )
