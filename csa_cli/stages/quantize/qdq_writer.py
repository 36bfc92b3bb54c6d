"""Writing the QDQ ONNX: onnxruntime.quantization with our ranges, in one of two placements.

tensorrt (default): symmetric INT8 everywhere (zero points 0), per-channel weights, Q/DQ on the
inputs of weighted ops only and not on their outputs, bias left in float: what TensorRT's
explicit-quantization guide asks for (it fuses the DQ into the next layer and picks its own
output precision).

onnxruntime: Q/DQ around the inputs AND outputs of every op ONNX Runtime quantizes (its default
registry: Conv, MatMul, Gemm, Add, Mul, pooling, Sigmoid, ...), so that its QDQ transformer
(onnxruntime/core/optimizer/qdq_transformer, "QDQ propagation / selectors") turns DQ -> Conv -> Q
into QLinearConv and the graph runs in integer arithmetic between quantized tensors. Activations
are UINT8 with a zero point (U8S8: ONNX Runtime's quantization guide recommends it on x86; a
tensor that is never negative gets the whole range), weights per-channel symmetric INT8 in 7 bits, bias
INT32: the operator-level format its CPU kernels take.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from csa_cli import events
from csa_cli.graph.qdq import WEIGHTED_OPS

if TYPE_CHECKING:
    import onnx


@contextlib.contextmanager
def quiet_ort() -> Iterator[None]:
    """onnxruntime.quantization prints progress to stdout and warns on the root logger: stdout is for
    records, and a stage speaks through events, so what it prints is passed on as notes."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            yield
    finally:
        root.setLevel(level)
        for line in printed.getvalue().splitlines():
            if line.strip():
                events.info(f"onnxruntime: {line.strip()}")


Placement = Literal["tensorrt", "onnxruntime"]
PLACEMENTS: tuple[str, ...] = ("tensorrt", "onnxruntime")
# part of an onnxruntime-placement artifact's key: raised when what that placement writes changes, so a
# cached graph of an older revision is rebuilt (2: 7-bit weights and the onnxruntime mixed rules)
ORT_PLACEMENT_REVISION = 2


def write_qdq(
    model: onnx.ModelProto,
    amax: dict[str, float],
    excluded: list[str],
    out_path: Path,
    workdir: Path,
    *,
    placement: Placement = "tensorrt",
    nonnegative: set[str] | None = None,
) -> None:
    """The QDQ ONNX in `placement`; `nonnegative` names tensors never below 0 in calibration (onnxruntime: [0, amax])."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    src = workdir / "fp32.onnx"
    onnx.save(model, str(src))
    if placement == "onnxruntime":
        write_ort_qdq(src, amax, excluded, out_path, workdir, nonnegative or set())
        return
    ranges = TensorsData(CalibrationMethod.MinMax, {name: (np.float32(-value), np.float32(value)) for name, value in amax.items()})
    cache = workdir / "ranges.json"
    save_tensors_data(ranges, cache)
    with quiet_ort():
        quantize_static(
            str(src),
            str(out_path),
            calibration_data_reader=None,
            calibration_cache_path=str(cache),  # our ranges: quantize_static does no calibration of its own
            calibrate_method=CalibrationMethod.MinMax,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(WEIGHTED_OPS),
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            extra_options={
                "ActivationSymmetric": True,
                "WeightSymmetric": True,
                "QuantizeBias": False,  # TensorRT takes float bias
                "AddQDQPairToWeight": True,  # float weight -> Q -> DQ: what TensorRT 8.6 and 10 both parse
                "OpTypesToExcludeOutputQuantization": list(WEIGHTED_OPS),
                "DedicatedQDQPair": False,
            },
        )


def write_ort_qdq(src: Path, amax: dict[str, float], excluded: list[str], out_path: Path, workdir: Path, nonnegative: set[str]) -> None:
    """ONNX Runtime's placement (see the module docstring): every quantizable op, inputs and outputs."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    ranges = {name: (np.float32(0.0 if name in nonnegative else -value), np.float32(value)) for name, value in amax.items()}
    cache = workdir / "ranges.json"
    save_tensors_data(TensorsData(CalibrationMethod.MinMax, ranges), cache)
    with quiet_ort():
        quantize_static(
            str(src),
            str(out_path),
            calibration_data_reader=None,
            calibration_cache_path=str(cache),
            calibrate_method=CalibrationMethod.MinMax,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=None,  # onnxruntime's registry: every op it has an integer path for
            per_channel=True,
            # 7-bit weights: x86 CPUs without VNNI (AVX2, AVX-512F) multiply U8 x S8 with VPMADDUBSW, whose
            # 16-bit pair sums saturate for full-range weights (quantize_static's docstring; OpenVINO's
            # "Saturation (overflow) issue workaround"). On this AVX2 VM it decides the digits agreement:
            # --precision int8 agrees with FP32 on 96.7% with 8-bit weights, 99.2% with 7-bit.
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True, "DedicatedQDQPair": False},
        )
