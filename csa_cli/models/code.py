"""Which code shapes a model's graph, as a hash: part of every export's cache key.

Only the files that build the network count (and the version of the library that builds a
baseline): editing the checkpoint converter (checkpoint.py, reference.py) or another family's
builder does not invalidate an export. Nothing here imports torch, timm or transformers: a cached
stage decides from this, file stamps and the manifest alone.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent

# builder -> the files under models/ that build its networks (factory.py dispatches to them)
GRAPH_FILES: dict[str, tuple[str, ...]] = {
    "csa": ("factory.py", "csa.py"),
    "timm": ("factory.py", "baselines.py"),
    "transformers": ("factory.py", "baselines.py"),
}
# builder -> the library whose version changes what it builds
GRAPH_LIBRARIES: dict[str, tuple[str, ...]] = {"csa": (), "timm": ("timm",), "transformers": ("transformers",)}


def library_version(name: str) -> str:
    """A distribution's version from its metadata (no import of the library itself)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


@functools.lru_cache(maxsize=64)
def _file_hash(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def file_hash(path: Path) -> str:
    """sha256 of a small source file, remembered per stamp for the life of the process."""
    stat = path.stat()
    return _file_hash(str(path), stat.st_mtime_ns, stat.st_size)


def graph_code_hash(builder: str, extra: tuple[Path, ...] = ()) -> str:
    """A hash of the files (and library versions) that shape the graphs of `builder`'s models, plus `extra` files."""
    digest = hashlib.sha256()
    for name in GRAPH_FILES.get(builder, ("factory.py",)):
        digest.update(name.encode() + b"\0" + file_hash(HERE / name).encode())
    for path in extra:
        digest.update(path.name.encode() + b"\0" + file_hash(path).encode())
    for lib in GRAPH_LIBRARIES.get(builder, ()):
        digest.update(f"{lib}=={library_version(lib)}".encode())
    return digest.hexdigest()[:16]
