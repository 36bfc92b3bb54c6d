"""The export stage: a zoo model (with its weights) to a verified ONNX graph under CSA_HOME.

    record = export_stage("csa-tiny", weights="random", batch=1)   # kind "onnx"

The graph is exported once per (model, weights hash, batch, input size, dynamic batch, opset,
torch/onnx versions, the exporter's and model builders' code): the same export is found in the
artifact store and not redone. After an export: onnx.checker, shape inference (every input dim
static but an optional dynamic batch) and a parity check against PyTorch through ONNX Runtime
on fresh random inputs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from pydantic import BaseModel, ConfigDict

from csa_cli import events
from csa_cli.errors import CsaError, UsageError
from csa_cli.paths import atomic_path
from csa_cli.records import Record, make_record
from csa_cli.store import artifact_key, cached_or_built, find_artifact

if TYPE_CHECKING:
    from torch import nn

    from csa_cli.manifest import ModelEntry

STAGE = "onnx"
INFO_FILE = "export.json"
PARITY_LIMIT = 1e-3
DEFAULT_OPSET = 17


class ExportInfo(BaseModel):
    """export.json, kept beside the graph in its artifact folder: what a cached export reports."""

    model_config = ConfigDict(extra="forbid")

    model: str
    file: str
    batch: int | None
    dynamic_batch: bool
    img_size: tuple[int, int]
    opset: int
    parity: float | None
    parity_batches: list[int]
    weights: str
    weights_hash: str
    commit: str | None = None
    license: str | None = None
    torch: str
    onnx: str
    ops: list[str]


@overload
def parse_img_size(value: int | str | tuple[int, int] | list[int] | None, default: tuple[int, int]) -> tuple[int, int]: ...
@overload
def parse_img_size(value: int | str | tuple[int, int] | list[int] | None, default: None = None) -> tuple[int, int] | None: ...
def parse_img_size(value: int | str | tuple[int, int] | list[int] | None, default: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """--img-size for every stage: None -> default; 224 / "224" -> (224, 224); "224x384" -> (224, 384).

    A bad value is a usage error. Light on purpose (no torch): command modules call it too.
    """
    if value is None:
        return None if default is None else (int(default[0]), int(default[1]))
    if isinstance(value, int):
        h = w = value
    elif isinstance(value, tuple | list):
        if len(value) != 2:
            raise UsageError(f"--img-size takes N or HxW, got {value!r}")
        h, w = int(value[0]), int(value[1])
    else:
        parts = str(value).lower().replace("*", "x").split("x")
        try:
            dims = [int(p) for p in parts]
        except ValueError:
            raise UsageError(f"--img-size takes N or HxW, got {value!r}", hint="e.g. --img-size 224 or --img-size 224x384") from None
        if len(dims) == 1:
            h = w = dims[0]
        elif len(dims) == 2:
            h, w = dims
        else:
            raise UsageError(f"--img-size takes N or HxW, got {value!r}", hint="e.g. --img-size 224 or --img-size 224x384")
    if h < 1 or w < 1:
        raise UsageError(f"--img-size must be positive, got {h}x{w}")
    return (h, w)


def _code_hash(entry: ModelEntry) -> str:
    """The code that shapes this model's graph (its builder's files, the exporter): a change there is a new export.

    Files that do not touch the graph (the checkpoint converter, another family's builder) do not count.
    """
    from csa_cli.models.code import graph_code_hash

    return graph_code_hash(entry.architecture.builder, (Path(__file__).with_name("onnx_export.py"),))


def _versions() -> dict[str, str]:
    """torch and onnx versions from their metadata: a cached export never imports them."""
    from csa_cli.models.code import library_version

    return {"torch": library_version("torch"), "onnx": library_version("onnx")}


def _load(model: str, weights: str | None, manifest: str | os.PathLike[str] | None) -> tuple[nn.Module, ModelEntry, str, str, str | None]:
    """(module in eval mode, entry, weights label, weights hash, commit) via the hub's load_model."""
    from csa_cli.stages.pull.weights import load_model

    loaded = load_model(model, weights, manifest=manifest)
    return loaded.module, loaded.entry, loaded.weights, loaded.weights_hash, loaded.commit


def _verify_graph(path: Path, dynamic_batch: bool) -> list[str]:
    """onnx.checker and shape inference: every tensor static except an optional batch axis. Returns the op set."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise CsaError(f"the exported graph fails onnx.checker: {str(exc).splitlines()[0]}", hint="rerun with --debug; report it with the model name") from None
    inferred = onnx.shape_inference.infer_shapes(onnx.load(str(path)), strict_mode=True)
    for vi in inferred.graph.input:
        dims = vi.type.tensor_type.shape.dim
        for axis, d in enumerate(dims):
            if not d.HasField("dim_value") and not (dynamic_batch and axis == 0):
                raise CsaError(f"the exported graph has a dynamic input dimension: {vi.name} axis {axis}", hint="export with a fixed --img-size")
    for vi in inferred.graph.output:
        dims = vi.type.tensor_type.shape.dim
        if any(not d.HasField("dim_value") for axis, d in enumerate(dims) if not (dynamic_batch and axis == 0)):
            # Shape arithmetic left in the graph (swin's window reshapes): runnable, but `csa check` flags it.
            events.warn(f"{path.name}: output {vi.name!r} has no static shape after shape inference (shape arithmetic in the graph)")
    return sorted({n.op_type for n in inferred.graph.node})


def _fresh_seed() -> int:
    # Fresh inputs, not the export's own dummy (seed 0): a graph that only fits its trace input fails.
    return int.from_bytes(os.urandom(4), "little") | 1


def _record(info: ExportInfo, path: Path, artifact: Path, cached: bool) -> Record:
    return make_record(
        "onnx",
        model=info.model,
        path=str(path),
        batch=info.batch,
        dynamic_batch=info.dynamic_batch,
        img_size=list(info.img_size),
        opset=info.opset,
        parity=info.parity,
        weights=info.weights,
        weights_hash=info.weights_hash,
        commit=info.commit,
        license=info.license,
        artifact=str(artifact),
        cached=cached,
        ops=info.ops,
    )


def _export_into(
    folder: Path,
    module: nn.Module,
    entry: ModelEntry,
    *,
    size: tuple[int, int],
    static_batch: int | None,
    dynamic_batch: bool,
    opset: int,
    verify: bool,
    provenance: dict[str, Any],
) -> None:
    """Export, check the op set and shapes, compare with PyTorch on a fresh input, and write export.json."""
    from csa_cli.stages.export.onnx_export import export_onnx, onnx_parity

    model = entry.name
    onnx_name = f"{model}.onnx"
    shape = f"batch {'dynamic' if dynamic_batch else static_batch}, {size[0]}x{size[1]}, opset {opset}"
    parity_batches = [1, 2] if dynamic_batch else [static_batch or 1]
    events.info(f"{model}: exporting to ONNX ({shape})")
    # three steps of a few seconds to minutes each (a large model): a bar with an ETA on a terminal
    with events.progress(f"{model}: export, check, parity", 3, "steps") as bar:
        export_onnx(module, folder / onnx_name, batch=static_batch or 1, img_size=size, dynamic_batch=dynamic_batch, opset=opset)
        bar.advance()
        ops = _verify_graph(folder / onnx_name, dynamic_batch)
        bar.advance()
        parity = onnx_parity(module, folder / onnx_name, batch_sizes=parity_batches, img_size=size, seed=_fresh_seed())
        bar.advance()
    events.info(f"{model}: parity ONNX Runtime vs PyTorch, max |ort - torch| / max |torch| = {parity:.2e} (fresh random input, batch {parity_batches})")
    if parity > PARITY_LIMIT:
        if verify:
            raise CsaError(
                f"{model}: the ONNX graph disagrees with PyTorch (relative error {parity:.2e} > {PARITY_LIMIT:g})",
                hint="report it with the model name; --no-verify keeps the export anyway",
            )
        events.warn(f"{model}: relative error {parity:.2e} > {PARITY_LIMIT:g}, kept because of --no-verify")
    info = ExportInfo(
        model=model,
        file=onnx_name,
        batch=static_batch,
        dynamic_batch=dynamic_batch,
        img_size=size,
        opset=opset,
        parity=parity,
        parity_batches=parity_batches,
        license=entry.license,
        ops=ops,
        **provenance,
    )
    (folder / INFO_FILE).write_text(info.model_dump_json(indent=2))


def export_stage(
    model: str,
    *,
    weights: str | None = "auto",
    batch: int | None = 1,
    img_size: int | str | tuple[int, int] | None = None,
    dynamic_batch: bool = False,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    output: str | os.PathLike[str] | None = None,
    manifest: str | os.PathLike[str] | None = None,
) -> Record:
    """Export `model` to ONNX (input "input", output "logits"), verify it, keep it under CSA_HOME; an "onnx" record.

    verify=False keeps a parity error above 1e-3 as a warning instead of a failure.

    Long because the artifact key names every input of an export in one place; the export itself is
    _export_into.
    """
    from csa_cli.manifest import load_manifest
    from csa_cli.stages.pull.weights import entry_for_weights

    if batch is not None and batch < 1:
        raise UsageError(f"--batch must be at least 1, got {batch}")
    if opset < 13:
        raise UsageError(f"--opset {opset} is too old", hint="use opset 17 (the default)")
    entry = entry_for_weights(load_manifest(manifest).get(model), weights)  # a trained checkpoint's size and classes
    size = parse_img_size(img_size, entry.preprocessing.input_size)
    static_batch = None if dynamic_batch else (batch or 1)

    from csa_cli.stages.pull.weights import weights_identity

    def key_inputs(weights_hash: str) -> dict[str, Any]:
        return {
            "model": model,
            "architecture": entry.architecture.model_dump(),
            "num_classes": entry.num_classes,
            "weights_hash": weights_hash,
            "batch": static_batch,
            "img_size": list(size),
            "dynamic_batch": dynamic_batch,
            "opset": opset,
            "code": _code_hash(entry),
            **_versions(),
        }

    # The key from the weights' lock and file stamps: a cached export answers without building the model.
    known = weights_identity(entry, weights, manifest=manifest)
    found = find_artifact(model, STAGE, artifact_key(**key_inputs(known.weights_hash))) if known is not None else None
    if found is not None and known is not None:
        known.warn_if_random(entry)
        folder, cached, key = found, True, found.name.rsplit("-", 1)[1]
    else:
        module, entry, weights_label, weights_hash, commit = _load(model, weights, manifest)
        inputs = key_inputs(weights_hash)
        key = artifact_key(**inputs)

        def build(tmp: Path) -> None:
            provenance = {"weights": weights_label, "weights_hash": weights_hash, "commit": commit, **_versions()}
            shape = {"size": size, "static_batch": static_batch, "dynamic_batch": dynamic_batch, "opset": opset}
            _export_into(tmp, module, entry, **shape, verify=verify, provenance=provenance)

        folder, cached = cached_or_built(model, STAGE, key, inputs, build)
    info = ExportInfo.model_validate_json((folder / INFO_FILE).read_text())
    if cached:
        events.info(f"{model}: cached ONNX export ({key}), not redone: {folder / info.file}")
    else:
        events.info(f"{model}: exported {folder / info.file}")
    artifact = folder / info.file
    path = artifact
    if output is not None:
        path = Path(output)
        if path.is_dir():
            path = path / info.file
        with atomic_path(path) as tmp_copy:  # a copy, not a link: the user may edit their file in place
            shutil.copyfile(artifact, tmp_copy)
        events.info(f"{model}: copied to {path}")
    return _record(info, path, artifact, cached)
