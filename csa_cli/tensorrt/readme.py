"""The bundle's README.md: what is built, what validates it, what was checked before, how to run it."""

from __future__ import annotations

from csa_cli.tensorrt.plan import BuildPlan
from csa_cli.tensorrt.validation import BundleIO


def what_is_built(plan: BuildPlan) -> str:
    """One paragraph per capability: what build.sh makes and how validate.sh can run it."""
    if plan.capability == "SAFETY":
        return (
            "**Safety engines** (EngineCapability SAFETY, `trtexec --safe`, plus `--consistency` where this trtexec has it): "
            "built and run by DRIVE OS's safe runtime (validate.sh runs them with `trtexec --safe`), never by the standard runtime."
        )
    if plan.capability == "DLA_STANDALONE":
        return (
            f"**DLA-standalone loadables** (`trtexec --safe --useDLACore={plan.dla_core}`, FP16 I/O in DLA formats): run by cuDLA in "
            "your application; trtexec cannot run a loadable. So build.sh also builds a **validation engine** per loadable: a standard "
            f"engine with the same ONNX, precision, DLA core and I/O formats and **no GPU fallback** (every layer on DLA {plan.dla_core}, "
            "or the build fails), which validate.sh runs. It validates what the DLA computes, not the loadable file itself."
        )
    if plan.dla_core is not None and not plan.gpu_fallback:
        return (
            f"**Standard engines on DLA core {plan.dla_core} without GPU fallback** (I/O in DLA formats, FP16): every layer must run on "
            "the DLA or the build fails; validate.sh runs them with trtexec."
        )
    if plan.dla_core is not None:
        return (
            f"**Standard engines on DLA core {plan.dla_core} with GPU fallback**: layers the DLA cannot run move to the GPU "
            "(build.sh prints them from the build log as `left the DLA`); validate.sh runs them with trtexec."
        )
    return "**Standard GPU engines**; validate.sh runs them with trtexec."


def readme(plan: BuildPlan, io: BundleIO, check_summary: str | None, upstream_check: str | None, commands: list[str]) -> str:
    """README.md of a bundle.

    Long because it is one text template: the sections are fixed, every fact in them comes from the
    plan and io.json.
    """
    rows = "\n".join(
        f"| {s.batch} | `{s.onnx}` | `{s.engine}` | `{s.runnable}` | {e.chunks} | {'yes' if s.has_qdq else 'no'} |"
        for s, e in zip(plan.engines, io.engines, strict=True)
    )
    tol = ", ".join(f"{k} {v:g}" for k, v in io.tolerance.items())
    weights = ""
    if plan.weights:
        weights = f"\nWeights: **{plan.weights}**" + (" (random: outputs mean nothing for accuracy, only for comparison)" if plan.weights == "random" else "")
    checks = []
    if check_summary:
        checks.append(f"- Rules this build demands, run before bundling: {check_summary}")
    if upstream_check:
        checks.append(f"- Upstream `csa check` verdict, carried (this build does not demand compliance): {upstream_check}")
    if plan.dla_core is not None:
        checks.append(
            "- DLA: every zoo model has DLA-rule violations today (`csa check --rules dla`, docs/zoo-table.md); with GPU fallback "
            "those layers run on the GPU, without it the build fails on them."
        )
    calib = f"`{plan.calib_cache}` (build.sh rewrites its header to the device's TensorRT)" if plan.calib_cache else "none (INT8 from the Q/DQ nodes)"
    return f"""# {plan.model}: {plan.precision} TensorRT bundle for Orin

Built by `csa engine --target orin`. Needs only `trtexec` and `python3` on the device (no csa,
numpy or torch). Target TensorRT {plan.trt_version} (build.sh stops if the device's differs);
engines are specific to the GPU/DLA and the TensorRT version they are built with, so they are
built here, on the device.{weights}

{what_is_built(plan)}

| batch | ONNX | built by build.sh | run by validate.sh | image chunks | Q/DQ |
| --- | --- | --- | --- | --- | --- |
{rows}

Settings: precision {plan.precision} (FP16 {"on" if plan.fp16 else "off"}, INT8 {"on" if plan.int8 else "off"}, FP32 allowed),
workspace {plan.workspace_mib} MiB, restricted {"yes" if plan.restricted else "no"}, safe {"yes" if plan.safe else "no"},
DLA core {plan.dla_core if plan.dla_core is not None else "none"}{" with GPU fallback" if plan.gpu_fallback else ""},
calibration cache {calib}. Full plan: `plan.json`.

## Checked before bundling
{chr(10).join(checks) if checks else "- nothing: this build demands no compliance and no upstream verdict came with it"}

## Validation
- Images: {io.inputs_source} ({io.image_shape[0]} images, `data/images.bin`{", labels in data/io.json" if io.labels else ""}).
- Reference: {io.reference_runtime} on this bundle's ONNX, the same images (`data/reference_*.bin`).
- Pass, per engine (precision {plan.precision}): {tol} (max relative error, cosine, top-1 agreement with ONNX
  Runtime, top-1 drop in points against the labels; edit `data/io.json` to change).
- On a failure, validate.sh builds a debug engine (not safe) from `{io.debug.onnx if io.debug else "-"}`, whose weighted
  layers' outputs are marked as outputs, and compares each with ONNX Runtime to show where the loss starts
  (as Polygraphy does; marking outputs changes fusions, so it points where to look).

## Steps
1. Copy this folder to the device.
2. `./build.sh` checks the TensorRT version, builds every engine into `engines/` (timing cache `timing.cache`),
   and keeps each verbose build log and the engine's layers (`results/build_b*.log`, `results/layers_b*.json`:
   which layers run in INT8, FP16 or FP32, and which left the DLA). A failed build prints its errors.
3. Lock clocks and power mode (Jetson/IGX: `sudo nvpmodel -m 0 && sudo jetson_clocks`; DRIVE OS: the
   platform's performance profile), then `./validate.sh`: accuracy on every image chunk, then a timed run
   (spin wait, CUDA graphs where they apply, a separate profiling run; `results/times_b*.json`,
   `results/profile_b*.json`). Exit 0 = every engine passes; it says so when no engine ran.
4. Bring `results/` back and run `csa import-timings results/times_b{plan.engines[0].batch}.json --device "Orin AGX"`
   (model, batch, precision and the layer files beside it are read from this bundle) so `csa compare` shows them.

Set `TRTEXEC=/path/to/trtexec` if it is not on PATH or in /usr/src/tensorrt/bin.

## Build commands (build.sh adds logging and layer export)
```
{chr(10).join(commands)}
```
"""
