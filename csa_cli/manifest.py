"""The zoo manifest: pydantic models, loading, user-manifest merging and name lookup.

The built-in manifest is `zoo/manifest.toml` (shipped inside the package as well); a user
manifest given with `--manifest` or CSA_MANIFEST is deep-merged over it, entry by entry, and
the result is validated as a whole.
"""

from __future__ import annotations

import difflib
import functools
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from csa_cli.errors import CsaError

Interpolation = Literal["bicubic", "bilinear", "nearest"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Architecture(_Strict):
    """How to build the network: which builder, which named variant, which extra kwargs."""

    builder: Literal["csa", "timm", "transformers"]
    name: str = Field(description="CSA variant, timm model name, or transformers class name")
    config: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the builder")


class Source(_Strict):
    """Where the pretrained weights live on the Hugging Face Hub."""

    repo: str
    revision: str = "main"
    files: list[str] = Field(min_length=1)
    format: Literal["timm", "transformers", "csa"]

    @field_validator("files")
    @classmethod
    def _no_pickles_first(cls, files: list[str]) -> list[str]:
        for f in files:
            if not f.endswith((".safetensors", ".json", ".bin", ".txt")):
                raise ValueError(f"unsupported file type {f!r} (expected .safetensors, .bin or .json)")
        return files


class Preprocessing(_Strict):
    """Eval preprocessing: short side to floor(size / crop_pct), centre crop, normalize."""

    input_size: tuple[int, int] = (224, 224)
    crop_pct: float = Field(gt=0, le=1)
    interpolation: Interpolation
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @field_validator("input_size")
    @classmethod
    def _positive(cls, size: tuple[int, int]) -> tuple[int, int]:
        if min(size) < 1:
            raise ValueError("input_size must be positive")
        return size

    @field_validator("std")
    @classmethod
    def _nonzero_std(cls, std: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(std) <= 0:
            raise ValueError("std must be positive")
        return std


class ReportedMetric(_Strict):
    metric: str
    value: float
    source: str


class ModelEntry(_Strict):
    name: str
    family: Literal["csa", "baseline"]
    description: str = ""
    architecture: Architecture
    source: Source | None = None
    license: str
    preprocessing: Preprocessing
    num_classes: int = Field(default=1000, ge=1)
    params_m: float | None = None
    gmacs: float | None = None
    reported: list[ReportedMetric] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    def aliases(self) -> list[str]:
        """Other names that mean exactly this entry: its Hub repo id, and for timm weights the tagged model name."""
        if self.source is None:
            return []
        names = [self.source.repo]
        owner, _, repo_name = self.source.repo.partition("/")
        if self.architecture.builder == "timm" and owner == "timm" and "." in repo_name:
            names.append(repo_name)  # timm's own name for exactly these weights: convnext_tiny.fb_in1k
        return names


class Manifest(_Strict):
    schema_version: Literal[1] = Field(default=1, alias="schema")
    models: dict[str, ModelEntry]

    def get(self, name: str) -> ModelEntry:
        """The entry called `name` (its zoo name, exact Hub repo id, or tagged timm name), or an error suggesting the closest.

        `timm/convnext_tiny.fb_in1k` and `convnext_tiny.fb_in1k` find convnext-tiny; the untagged
        `convnext_tiny` does not: timm resolves it to other weights (its default tag), so it gets a
        did-you-mean instead of a match.
        """
        if name in self.models:
            return self.models[name]
        for entry in self.models.values():
            if name in entry.aliases():
                return entry
        untagged = [e.name for e in self.models.values() if e.architecture.builder == "timm" and e.source is not None and name == e.architecture.name]
        if untagged:
            entry = self.models[untagged[0]]
            raise CsaError(
                f"unknown model '{name}': untagged, timm resolves it to its default weights, which this zoo does not pin",
                hint=f"did you mean {entry.name} ({', '.join(entry.aliases())})?",
            )
        names = list(self.models) + [alias for e in self.models.values() for alias in e.aliases()]
        close = list(dict.fromkeys(self._canonical(c) for c in difflib.get_close_matches(name, names, n=5, cutoff=0.5)))[:3]
        hint = f"did you mean {', '.join(close)}?" if close else "run `csa list` to see the zoo"
        raise CsaError(f"unknown model '{name}'", hint=hint)

    def _canonical(self, name: str) -> str:
        return name if name in self.models else next(e.name for e in self.models.values() if name in e.aliases())


def builtin_manifest_path() -> Path:
    """The manifest shipped with csa: the repo's zoo/ in a checkout, the packaged copy otherwise."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "zoo" / "manifest.toml", here / "_zoo" / "manifest.toml"):
        if candidate.is_file():
            return candidate
    raise CsaError("the built-in zoo manifest is missing", hint="reinstall csa")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise CsaError(f"manifest not found: {path}", hint="check --manifest / CSA_MANIFEST") from None
    except tomllib.TOMLDecodeError as exc:
        raise CsaError(f"invalid manifest {path}: not valid TOML ({exc})") from None


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _with_names(data: dict[str, Any]) -> dict[str, Any]:
    models = data.get("models", {})
    if isinstance(models, dict):
        for name, entry in models.items():
            if isinstance(entry, dict):
                entry.setdefault("name", name)
    return data


def _validate(data: dict[str, Any], sources: list[Path]) -> Manifest:
    try:
        return Manifest.model_validate(_with_names(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        where = " over ".join(str(p) for p in reversed(sources))
        raise CsaError(
            f"invalid manifest {where}: {loc}: {first['msg']}" + (f" ({len(exc.errors())} problems in all)" if len(exc.errors()) > 1 else ""),
            hint="fix that field, or remove the entry",
        ) from None


def user_manifest_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    value = explicit or os.environ.get("CSA_MANIFEST")
    return Path(value).expanduser() if value else None


def _stamp(path: Path) -> tuple[str, int, int]:
    try:
        stat = path.stat()
    except OSError:
        return (str(path), -1, -1)  # missing: _read_toml reports it
    return (str(path), stat.st_mtime_ns, stat.st_size)


def load_manifest(user: str | os.PathLike[str] | None = None) -> Manifest:
    """The built-in manifest with the user manifest (argument or CSA_MANIFEST) merged over it.

    One command looks entries up many times (input, weights, export, eval): the validated result
    is cached per file contents' stamp, so each file is parsed and validated once.
    """
    user_path = user_manifest_path(user)
    return _load_manifest(_stamp(builtin_manifest_path()), _stamp(user_path) if user_path is not None else None)


@functools.lru_cache(maxsize=8)
def _load_manifest(base: tuple[str, int, int], user: tuple[str, int, int] | None) -> Manifest:
    base_path = Path(base[0])
    data = _read_toml(base_path)
    sources = [base_path]
    if user is not None:
        user_path = Path(user[0])
        data = _deep_merge(data, _read_toml(user_path))
        sources.append(user_path)
    return _validate(data, sources)


def get_entry(name: str, user: str | os.PathLike[str] | None = None) -> ModelEntry:
    return load_manifest(user).get(name)
