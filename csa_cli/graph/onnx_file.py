"""Reading ONNX files: one loader, so every stage says the same thing about a file that is not ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from csa_cli.errors import CsaError

if TYPE_CHECKING:
    import onnx


def load_onnx(model: str | Path | onnx.ModelProto, *, load_external_data: bool = True) -> onnx.ModelProto:
    """A ModelProto from a path or a ModelProto; a file that is not ONNX is a one-line CsaError."""
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    path = Path(model)
    if not path.is_file():
        raise CsaError(f"file not found: {path}", hint="check the path")
    hint = "give an .onnx file (e.g. from `csa export`), a zoo MODEL, or a csa record"
    try:
        proto = onnx.load(str(path), load_external_data=load_external_data)
    except Exception as exc:  # protobuf raises DecodeError, RuntimeWarning-ish or OSError: all mean "not ONNX"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CsaError(f"{path} is not an ONNX model ({reason})", hint=hint) from None
    if proto.ir_version == 0 or not proto.graph.node or not proto.opset_import:
        raise CsaError(f"{path} is not an ONNX model (no ONNX graph in it)", hint=hint)
    return proto
