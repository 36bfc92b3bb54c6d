"""PyTorch -> ONNX for every zoo model, and the torch-vs-ONNX Runtime parity check.

Exporter: the TorchScript-based `torch.onnx.export(dynamo=False)` at opset 17, followed by a
small clean-up pass (Constant nodes and Identity aliases of initializers folded away). Why this
one and not dynamo: see docs/models.md ("Choosing the exporter").

Input is named "input", output "logits" (features_only models: "features.<stage>"). Only the
batch axis may be dynamic; H and W are always static, which is what swin needs and what lets
every CSA resize be a constant-scale Resize.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from csa_cli.errors import CsaError, UsageError
from csa_cli.graph.onnx_file import read_onnx_info
from csa_cli.paths import atomic_path

if TYPE_CHECKING:
    import onnx
    from torch import nn

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 17

# Ops that compute shapes at run time: none may remain in a CSA graph at a fixed input size.
SHAPE_OPS = frozenset({"Shape", "Gather", "Slice", "Concat", "ConstantOfShape", "Cast", "Unsqueeze", "Squeeze", "Range", "Expand", "Where"})
# The op set a CSA export is made of (restricted-mode friendly).
CSA_ALLOWED_OPS = frozenset({"Conv", "BatchNormalization", "Sigmoid", "Mul", "Add", "Reshape", "Transpose", "Resize", "AveragePool", "Flatten"})


def _output_names(module: nn.Module, probe_outputs: Any) -> list[str]:
    if isinstance(probe_outputs, (list, tuple)):
        indices = getattr(module, "out_indices", range(len(probe_outputs)))
        return [f"features.{i}" for i in indices]
    return [OUTPUT_NAME]


def _on_gpu_or_half(module: nn.Module) -> bool:
    import torch

    return any(p.device.type != "cpu" or p.dtype != torch.float32 for p in module.parameters())


def export_onnx(
    module: nn.Module,
    path: str | Path,
    *,
    batch: int = 1,
    img_size: tuple[int, int] = (224, 224),
    dynamic_batch: bool = False,
    opset: int = DEFAULT_OPSET,
    in_chans: int = 3,
) -> Path:
    """Export `module` (CSA: its inference form; others: eval mode) to `path`, atomically.

    The written graph passes onnx.checker, and shape inference gives every tensor static dims
    except the batch axis when dynamic_batch is set.

    Long because the TorchScript exporter's settings and the graph clean-up each need a comment on
    why.
    """
    import torch

    from csa_cli.models import inference_form, is_csa

    if batch < 1:
        raise UsageError(f"batch must be at least 1, got {batch}")
    h, w = int(img_size[0]), int(img_size[1])
    if h < 1 or w < 1:
        raise UsageError(f"image size must be positive, got {h}x{w}")
    if is_csa(module):
        from csa_cli.models.csa import check_input_size

        check_input_size((h, w))
    if opset < 13:
        raise UsageError(f"opset {opset} is too old", hint="use opset 17 (the default); Resize with scales needs opset >= 13")

    # export from a CPU float32 copy: the graph is the same, and a GPU/half module would bake its device/dtype in
    form = inference_form(copy.deepcopy(module).cpu().float()) if _on_gpu_or_half(module) else inference_form(module)
    dummy = torch.randn(batch, in_chans, h, w, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        try:
            probe = form(dummy)
        except Exception as exc:
            raise CsaError(
                f"the model does not run at input {batch}x{in_chans}x{h}x{w}: {type(exc).__name__}: {exc}", hint="check --img-size for this model"
            ) from None
    outputs = _output_names(form, probe)
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in outputs}}

    target = Path(path)
    with atomic_path(target) as tmp, warnings.catch_warnings():
        # int(x.shape[...]) in forward() is deliberate: it makes sizes and scales constants
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                form,
                (dummy,),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=outputs,
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
        except Exception as exc:
            raise CsaError(
                f"ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", hint="rerun with --debug for the traceback"
            ) from exc
        import onnx

        graph = onnx.load(str(tmp))
        graph = clean_graph(graph)
        graph = onnx.shape_inference.infer_shapes(graph, strict_mode=True)
        if dynamic_batch and is_csa(module):
            name_batch_axis(graph)
        onnx.checker.check_model(graph, full_check=True)
        onnx.save(graph, str(tmp))
    return target


def clean_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold Constant nodes into initializers and drop Identity nodes that alias an initializer.

    The TorchScript exporter deduplicates equal parameters (zero biases of a fresh model) into
    Identity nodes and emits Reshape targets / Resize scales as Constant nodes: neither is an op
    a restricted-mode graph should carry.
    """
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    keep = []
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            tensor = copy.deepcopy(node.attribute[0].t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
            inits[tensor.name] = tensor
            continue
        if node.op_type == "Identity" and node.input[0] in inits and node.output[0] not in {o.name for o in graph.output}:
            array = numpy_helper.to_array(inits[node.input[0]])
            tensor = numpy_helper.from_array(array, node.output[0])
            graph.initializer.append(tensor)
            inits[tensor.name] = tensor
            continue
        keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    unused = [t for t in graph.initializer if t.name not in used]
    for t in unused:
        graph.initializer.remove(t)
    # initializers must not double as graph inputs (opset >= 9 does not need it; TensorRT dislikes it)
    names = {t.name for t in graph.initializer}
    for value in [i for i in graph.input if i.name in names]:
        graph.input.remove(value)
    return model


def name_batch_axis(model: onnx.ModelProto, name: str = "batch") -> None:
    """Call every unnamed leading dim "batch" (shape inference loses the name through Resize's scale).

    Only for CSA graphs: every tensor there is N x C x H x W or N x classes, so axis 0 is the batch.
    """
    for value in list(model.graph.value_info) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_param") and dims[0].dim_param.startswith("unk__"):
            dims[0].dim_param = name


def onnx_parity(
    module: nn.Module,
    onnx_path: str | Path,
    *,
    batch_sizes: Sequence[int] = (1,),
    img_size: tuple[int, int] = (224, 224),
    seed: int = 0,
    threads: int | None = None,
) -> float:
    """max|ort - torch| / max|torch| over seeded random batches (ONNX Runtime CPU vs the module in eval mode).

    For a static-batch ONNX every batch size must equal its batch. `threads`: ONNX Runtime intra-op threads (default: its own).
    """
    import numpy as np
    import onnxruntime as ort
    import torch

    path = Path(onnx_path)
    if not path.is_file():
        raise CsaError(f"ONNX file not found: {path}")
    info = read_onnx_info(path)
    static_batch = info.batch
    if static_batch is not None and any(b != static_batch for b in batch_sizes):
        raise UsageError(
            f"{path.name} has a static batch of {static_batch}; parity asked for batch {list(batch_sizes)}",
            hint="export with dynamic_batch=True or match the batch",
        )
    hw = info.input_hw
    if hw is not None and hw != tuple(img_size):
        raise UsageError(f"{path.name} takes {hw[0]}x{hw[1]} inputs, parity asked for {img_size[0]}x{img_size[1]}")
    reference = copy.deepcopy(module).cpu().float().eval()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    in_name = session.get_inputs()[0].name
    generator = torch.Generator().manual_seed(seed)
    max_diff, max_ref = 0.0, 0.0
    for b in batch_sizes:
        x = torch.randn(b, 3, img_size[0], img_size[1], generator=generator)
        with torch.no_grad():
            ref = reference(x)
        refs = [r.numpy() for r in ref] if isinstance(ref, (list, tuple)) else [ref.numpy()]
        got = session.run(None, {in_name: x.numpy()})
        for r, g in zip(refs, got, strict=True):
            if r.shape != g.shape:
                raise CsaError(f"ONNX output shape {g.shape} differs from torch's {r.shape}")
            max_diff = max(max_diff, float(np.abs(r - g).max()))
            max_ref = max(max_ref, float(np.abs(r).max()))
    return max_diff / max_ref if max_ref > 0 else max_diff


def op_types(onnx_path: str | Path) -> set[str]:
    """The op types a graph uses (top level)."""
    import onnx

    return {n.op_type for n in onnx.load(str(onnx_path), load_external_data=False).graph.node}
