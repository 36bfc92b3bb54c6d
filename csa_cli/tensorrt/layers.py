"""What an engine is made of, read back from TensorRT's own reports (pure parsing, no TensorRT).

- Layer information: the engine inspector's JSON (IEngineInspector.get_engine_information(JSON),
  which trtexec writes with --exportLayerInfo): {"Layers": [...], "Bindings": [...]}. With
  ProfilingVerbosity DETAILED each layer is an object with "Name", "LayerType" and its "Inputs" /
  "Outputs", each holding a "Format/Datatype" text ("Row major linear FP32", "Thirty-two wide
  channel vectorized row major Int8 format", ...); with LAYER_NAMES_ONLY a layer is a bare name.
  Samples of both: NVIDIA/TensorRT tools/experimental/trt-engine-explorer/examples (*.graph.json).
- Per-layer times: trtexec --exportProfile, [{"count": N}, {"name", "timeMs", "averageMs",
  "medianMs", "percentage"}, ...] (the same examples, *.profile.json).
- Which layers left the DLA: the inspector has no device field. A DLA subgraph is one layer named
  {ForeignNode[first...last]} (NVIDIA/TensorRT issue #3143), which on a GPU-only engine names a
  Myelin subgraph instead, so the device is read from the name only for a DLA build; the build
  log names each layer switched to the GPU ("Layer 'x' (SHUFFLE): Unsupported on DLA. Switching
  this layer's device type to GPU.", and TensorRT 8.x's "Default DLA is enabled but layer x is not
  supported on DLA, falling back to GPU.").
"""

from __future__ import annotations

import json
import re
from collections import Counter

from pydantic import BaseModel, ConfigDict, Field

from csa_cli.errors import CsaError


class LayerInfo(BaseModel):
    """One engine layer: its name, kind, output precision and device."""

    model_config = ConfigDict(extra="forbid")

    name: str
    type: str | None = None
    precision: str | None = Field(default=None, description="FP32 | FP16 | INT8 | INT32 | BOOL, from its first output's format")
    device: str = "GPU"
    time_ms: float | None = Field(default=None, description="median time per run (trtexec --exportProfile)")


class LayerSummary(BaseModel):
    """Counts an engine record and `csa import-timings` keep: how many layers run in which precision, where."""

    model_config = ConfigDict(extra="forbid")

    layers: int
    by_precision: dict[str, int]
    by_device: dict[str, int]
    left_dla: list[str] = Field(default_factory=list, description="layers the build switched from the DLA to the GPU")
    slowest: list[LayerInfo] = Field(default_factory=list, description="the layers that take longest (when a profile was given)")


def precision_of(format_text: str) -> str | None:
    """The data type in an inspector "Format/Datatype" text (the same order of tests as trex's activations.py)."""
    for needle, precision in (("Int8", "INT8"), ("FP32", "FP32"), ("FP16", "FP16"), ("Half", "FP16"), ("Float", "FP32"), ("INT32", "INT32"), ("Bool", "BOOL")):
        if needle in format_text:
            return precision
    return None


def parse_layer_info(text: str, *, dla: bool = False) -> list[LayerInfo]:
    """Layers from an inspector / --exportLayerInfo JSON document."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CsaError(f"not TensorRT layer information (not JSON: {exc.msg})", hint="give the file trtexec --exportLayerInfo wrote") from None
    raw = data.get("Layers") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        raise CsaError('not TensorRT layer information (no "Layers" list)', hint="give the file trtexec --exportLayerInfo wrote")
    layers = []
    for item in raw:
        if isinstance(item, str):  # ProfilingVerbosity LAYER_NAMES_ONLY
            layers.append(LayerInfo(name=item, device=_device(item, dla)))
            continue
        if not isinstance(item, dict) or not isinstance(item.get("Name"), str):
            continue
        outputs = item.get("Outputs") or []
        fmt = outputs[0].get("Format/Datatype", "") if outputs and isinstance(outputs[0], dict) else ""
        layers.append(LayerInfo(name=item["Name"], type=item.get("LayerType"), precision=precision_of(str(fmt)), device=_device(item["Name"], dla)))
    return layers


def _device(name: str, dla: bool) -> str:
    return "DLA" if dla and name.startswith("{ForeignNode[") else "GPU"


def parse_profile(text: str) -> dict[str, float]:
    """Median milliseconds per layer name from trtexec --exportProfile (the leading {"count": N} is skipped)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CsaError(f"not a trtexec --exportProfile file (not JSON: {exc.msg})") from None
    if not isinstance(data, list):
        raise CsaError("not a trtexec --exportProfile file (expected a JSON list)")
    times: dict[str, float] = {}
    for entry in data:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            value = entry.get("medianMs", entry.get("averageMs"))
            if isinstance(value, int | float):
                times[entry["name"]] = float(value)
    return times


_SWITCHED = (
    re.compile(r"Layer '(?P<name>.+?)' \([A-Z_]+\): Unsupported on DLA\. Switching this layer's device type to GPU"),
    re.compile(r"Default DLA is enabled but layer (?P<name>.+?) is not (?:supported|running) on DLA, falling back to GPU"),
)


def layers_left_dla(build_log: str) -> list[str]:
    """The layers a DLA build log says were switched to the GPU, in order, each once."""
    seen: dict[str, None] = {}
    for line in build_log.splitlines():
        for pattern in _SWITCHED:
            match = pattern.search(line)
            if match:
                seen.setdefault(match["name"], None)
    return list(seen)


def summarize_layers(layers: list[LayerInfo], *, times: dict[str, float] | None = None, left_dla: list[str] | None = None, top: int = 5) -> LayerSummary:
    """Counts by precision and device, and the `top` slowest layers when times are given."""
    if times:
        layers = [layer.model_copy(update={"time_ms": times.get(layer.name)}) for layer in layers]
    timed = sorted((layer for layer in layers if layer.time_ms is not None), key=lambda layer: -(layer.time_ms or 0.0))
    return LayerSummary(
        layers=len(layers),
        by_precision=dict(Counter(layer.precision or "unknown" for layer in layers)),
        by_device=dict(Counter(layer.device for layer in layers)),
        left_dla=list(left_dla or []),
        slowest=timed[:top],
    )
