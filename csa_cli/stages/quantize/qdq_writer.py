"""Writing the QDQ ONNX: onnxruntime.quantization with our ranges, in TensorRT's placement.

Symmetric INT8 everywhere (zero points 0), per-channel weights, Q/DQ on the inputs of weighted
ops only and not on their outputs, bias left in float.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

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


def write_qdq(model: onnx.ModelProto, amax: dict[str, float], excluded: list[str], out_path: Path, workdir: Path) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    src = workdir / "fp32.onnx"
    onnx.save(model, str(src))
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
