"""The zoo manifest: pydantic models, loading, user-manifest merging and name lookup.

The built-in manifest is `zoo/manifest.toml` (shipped inside the package as well); a user
manifest is deep-merged over it, entry by entry, and the result is validated as a whole. The
user manifest is the one `--manifest` or CSA_MANIFEST names, else `manifest.toml` in the user's
config folder (click's get_app_dir: $XDG_CONFIG_HOME/csa, ~/.config/csa, ...) when it exists.
`register_entry` writes an entry there (`csa push --register`, `csa train --register`): never
into the packaged zoo.
"""

from __future__ import annotations

import difflib
import functools
import json
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
    source: Source | None = Field(default=None, description="the published weights on the Hub (for csa-* entries: what `csa push` printed)")
    checkpoint: str | None = Field(default=None, description="a csa checkpoint here: the weights of an entry with no source (`csa train --register`)")
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


def default_user_manifest() -> Path:
    """manifest.toml in the user's config folder for csa (click's get_app_dir honours XDG_CONFIG_HOME)."""
    import click

    return Path(click.get_app_dir("csa")) / "manifest.toml"


def user_manifest_path(explicit: str | os.PathLike[str] | None = None, *, for_writing: bool = False) -> Path | None:
    """--manifest, else CSA_MANIFEST, else the default user manifest (if it exists, or when writing)."""
    value = explicit or os.environ.get("CSA_MANIFEST")
    if value:
        return Path(value).expanduser()
    default = default_user_manifest()
    return default if for_writing or default.is_file() else None


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


# ----------------------------------------------------------------------------- writing the user manifest


def _toml_key(key: str) -> str:
    return key if key and all(c.isalnum() or c in "-_" for c in key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string (same escapes)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise CsaError(f"cannot write {type(value).__name__} into a manifest")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _toml_table(name: str, table: dict[str, Any], lines: list[str]) -> None:
    """`table` under [name]: plain values first, then sub-tables and arrays of tables (config dicts stay inline)."""
    plain = {k: v for k, v in table.items() if not (isinstance(v, dict) and k != "config") and not _is_table_array(v)}
    if plain or not table:
        lines += ["", f"[{name}]"] if name else []
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in plain.items()]
    for key, value in table.items():
        child = f"{name}.{_toml_key(key)}" if name else _toml_key(key)
        if isinstance(value, dict) and key != "config":
            _toml_table(child, value, lines)
        elif _is_table_array(value):
            for item in value:
                lines += ["", f"[[{child}]]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in item.items()]


def manifest_toml(data: dict[str, Any]) -> str:
    """A manifest (or one entry under `models.NAME`) as TOML text; tomllib reads back the same data."""
    lines: list[str] = []
    _toml_table("", data, lines)
    return "\n".join(lines).strip() + "\n"


def register_entry(name: str, entry: dict[str, Any], manifest: str | os.PathLike[str] | None = None) -> Path:
    """Write `entry` as models.NAME into the user manifest (--manifest, CSA_MANIFEST or the default one); its path.

    An entry of that name in the user manifest is replaced; one in the packaged zoo is overridden
    (the user manifest merges over it). The merged result is validated before anything is
    written, and the file is replaced atomically: a bad entry leaves the manifest as it was.
    Comments in a user manifest are not kept (the file is rewritten from its data).
    """
    from filelock import FileLock

    from csa_cli.paths import atomic_write_text, csa_home

    path = user_manifest_path(manifest, for_writing=True)
    assert path is not None
    if path.resolve() == builtin_manifest_path().resolve():
        raise CsaError(f"{path} is the packaged zoo; entries are registered in a user manifest", hint="pass --manifest FILE or set CSA_MANIFEST")
    guard = csa_home() / "locks" / ".guards" / "user-manifest.lock"
    guard.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(guard), timeout=120):
        data = _read_toml(path) if path.is_file() else {"schema": 1}
        models = data.setdefault("models", {})
        models[name] = {k: v for k, v in entry.items() if k != "name" and v is not None}
        _validate(_deep_merge(_read_toml(builtin_manifest_path()), data), [builtin_manifest_path(), path])
        atomic_write_text(path, manifest_toml(data))
    return path
