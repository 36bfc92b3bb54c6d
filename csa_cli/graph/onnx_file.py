"""Reading ONNX files: one loader, so every stage says the same thing about a file that is not
ONNX, and one description of a graph's interface (OnnxInfo) that every stage reads."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from csa_cli.errors import CsaError, UsageError

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
    # A file of another type is a usage error (exit 2) in every command; an .onnx file that does not
    # load is a broken file (exit 1).
    fail = CsaError if path.suffix.lower() == ".onnx" else UsageError
    try:
        proto = onnx.load(str(path), load_external_data=load_external_data)
    except Exception as exc:  # protobuf raises DecodeError, RuntimeWarning-ish or OSError: all mean "not ONNX"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise fail(f"{path} is not an ONNX model ({reason})", hint=hint) from None
    if proto.ir_version == 0 or not proto.graph.node or not proto.opset_import:
        raise fail(f"{path} is not an ONNX model (no ONNX graph in it)", hint=hint)
    return proto


class OnnxInfo(BaseModel):
    """A graph's interface, read without its weights: what every stage asks of an ONNX file."""

    model_config = ConfigDict(extra="forbid")

    path: str
    input_name: str
    input_shape: list[int | str] = Field(description="NCHW for an image model; a str is a symbolic (dynamic) dimension")
    output_names: list[str]
    output_shape: list[int | str] = Field(default_factory=list, description="the first output's shape")
    has_qdq: bool = Field(description="holds Q/DQ (or QOperator) nodes")
    metadata: dict[str, str] = Field(default_factory=dict)

    @property
    def dynamic(self) -> bool:
        return any(not isinstance(d, int) or d < 1 for d in self.input_shape)

    @property
    def batch(self) -> int | None:
        """The static batch, or None for a dynamic batch axis."""
        first = self.input_shape[0] if self.input_shape else None
        return first if isinstance(first, int) and first >= 1 else None

    @property
    def input_hw(self) -> tuple[int, int] | None:
        if len(self.input_shape) == 4 and all(isinstance(d, int) for d in self.input_shape[2:]):
            return int(self.input_shape[2]), int(self.input_shape[3])
        return None

    @property
    def num_classes(self) -> int | None:
        """The logits' width, when the first output is a static N x classes tensor."""
        if len(self.output_shape) == 2 and isinstance(self.output_shape[1], int):
            return self.output_shape[1]
        return None

    def require_nchw(self) -> OnnxInfo:
        """This info when the input is NCHW with static C, H and W; else a one-line CsaError."""
        if len(self.input_shape) != 4:
            raise CsaError(f"{self.path}: input '{self.input_name}' has rank {len(self.input_shape)}, expected NCHW (rank 4)")
        if any(not isinstance(d, int) for d in self.input_shape[1:]):
            raise CsaError(f"{self.path}: only the batch axis may be dynamic, input shape is {self.input_shape}", hint="export with a fixed --img-size")
        return self


def _dims(value: Any) -> list[int | str]:
    return [int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?") for d in value.type.tensor_type.shape.dim]


def onnx_info(model: onnx.ModelProto, path: str | Path = "") -> OnnxInfo:
    """The interface of a loaded graph: its one image input, its outputs, Q/DQ, metadata."""
    from csa_cli.graph.qdq import is_quantized

    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    where = str(path) or "the graph"
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise CsaError(
            f"{where} has {len(inputs)} graph inputs{f' ({names})' if names else ''}; csa takes one image input",
            hint="export the classifier with a single NCHW input",
        )
    outputs = list(model.graph.output)
    return OnnxInfo(
        path=str(path),
        input_name=inputs[0].name,
        input_shape=_dims(inputs[0]),
        output_names=[o.name for o in outputs],
        output_shape=_dims(outputs[0]) if outputs else [],
        has_qdq=is_quantized(model),
        metadata={p.key: p.value for p in model.metadata_props},
    )


@functools.lru_cache(maxsize=64)
def _read_info(path: str, mtime_ns: int, size: int) -> OnnxInfo:
    return onnx_info(load_onnx(path, load_external_data=False), path)


def read_onnx_info(path: str | Path) -> OnnxInfo:
    """`onnx_info` of a file, parsed once per file version (weights are not loaded)."""
    if not Path(path).is_file():
        raise CsaError(f"file not found: {path}", hint="check the path")
    stat = Path(path).stat()
    return _read_info(str(path), stat.st_mtime_ns, stat.st_size).model_copy()


def inspect_onnx(path: str | Path) -> OnnxInfo:
    """What a build plan needs: one NCHW input whose only dynamic axis may be the batch."""
    return read_onnx_info(path).require_nchw()
