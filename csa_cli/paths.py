"""Where csa keeps what it makes, and how it writes files without ever half-writing them."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def csa_home() -> Path:
    """CSA_HOME, else the user cache dir (XDG_CACHE_HOME or ~/.cache) / csa."""
    env = os.environ.get("CSA_HOME")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "csa"


def csa_dir(*parts: str) -> Path:
    """A folder under CSA_HOME, created on first use."""
    path = csa_home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    The temporary file lives in the same folder so that the final rename is atomic.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; it replaces `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file, read in 1 MiB blocks (weights and ONNX files run to hundreds of MB)."""
    import hashlib

    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_stamp(path: str | os.PathLike[str]) -> str:
    """What changes when a file's content may have: device, inode, size, mtime and ctime (ctime no tool can set back)."""
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def sha256_stamped(path: str | os.PathLike[str]) -> str:
    """sha256_file, remembered under CSA_HOME/hashes per file stamp: a cached stage need not read 100 MB again.

    A file rewritten in place changes its ctime (and usually size and mtime), so its stamp no
    longer matches and it is hashed afresh.
    """
    import hashlib
    import json

    resolved = Path(path).resolve()
    memo = csa_home() / "hashes" / (hashlib.sha256(str(resolved).encode()).hexdigest()[:24] + ".json")
    stamp = file_stamp(resolved)
    try:
        data = json.loads(memo.read_text())
        if data.get("stamp") == stamp and data.get("path") == str(resolved):
            return str(data["sha256"])
    except (OSError, ValueError, KeyError):
        pass
    digest = sha256_file(resolved)
    with contextlib.suppress(OSError):
        atomic_write_text(memo, json.dumps({"path": str(resolved), "stamp": stamp, "sha256": digest}))
    return digest


def link_or_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """dst as a hard link to src where both are on one file system (no space used, still a whole file), else a copy.

    Artifacts are never changed in place (they are replaced by rename), so a link cannot see a
    later edit; and a linked folder copied elsewhere (an Orin bundle) carries real files.
    """
    target = Path(dst)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
    return target
