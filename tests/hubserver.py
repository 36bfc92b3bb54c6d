"""A Hugging Face Hub-compatible HTTP server on 127.0.0.1, for driving the real huggingface_hub client.

Repos are laid out as folders (one commit = a snapshot of a folder's files). It serves what
`HfApi.model_info`, `hf_hub_download` and `snapshot_download` use:
    GET  /api/models/{repo}[/revision/{rev}]      repo info: sha (the commit), siblings (+ size, blobId, lfs)
    GET  /api/datasets/{repo}[/revision/{rev}]    the same for a dataset repo (add_dataset; its files under /datasets/{repo}/resolve/)
    HEAD/GET /{repo}/resolve/{rev}/{file}         ETag, X-Repo-Commit, Content-Length; LFS files (*.safetensors,
                                                  *.bin) answer 302 to a second "CDN" port with X-Linked-Etag
                                                  (sha256) and X-Linked-Size, as the Hub does
    GET  /blobs/{sha256}  (CDN port)              the content, with Range support (for resumed downloads)
and what `HfApi.create_repo`, `create_branch` and `create_commit` use (huggingface_hub's hf_api.py and
_commit_api.py name these endpoints), each needing "Authorization: Bearer <a token in write_tokens>":
    POST /api/repos/create                        {name, organization, visibility}: a repo with .gitattributes (409 if it exists)
    POST /api/validate-yaml                       {content}: README.md's YAML front matter must parse (400 with errors otherwise)
    POST /api/models/{repo}/preupload/{rev}       every file "regular": uploaded inline in the commit, never over LFS/Xet
    POST /api/models/{repo}/branch/{branch}       a branch at main (or startingPoint) (409 if it exists)
    POST /api/models/{repo}/commit/{rev}          ndjson: header, base64 "file"s, "deletedFile"s -> {commitOid, commitUrl}
A loopback server cannot take LFS or Xet uploads: the client must upload inline (the "regular" mode the
preupload answer gives; tests also set HF_HUB_DISABLE_XET=1).
Errors carry the Hub's X-Error-Code headers (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo).

It counts GETs of file content per (repo, file), and can simulate: a private repo (401 without
the right bearer token), a gated one (403), a connection cut halfway through a file, and a file
whose content changes upstream under the same commit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pth", ".onnx", ".parquet")
DATASETS = "datasets/"  # dataset repos are kept under this prefix of their id, as the Hub's URLs name them


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\nsize {len(data)}\n".encode()


@dataclass
class HubRepo:
    repo_id: str
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    token: str | None = None  # private: needs "Authorization: Bearer <token>"
    gated: bool = False
    license: str = "apache-2.0"
    messages: dict[str, str] = field(default_factory=dict)  # commit -> its summary (commits made through the API)


@dataclass
class _Cut:
    times: int
    fraction: float


class HubServer:
    """The Hub (on `port`) and its CDN (another port), sharing one state; start() / stop()."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.host = host
        self.repos: dict[str, HubRepo] = {}
        self.blobs: dict[str, bytes] = {}
        self.gets: Counter[tuple[str, str]] = Counter()
        self.requests: list[tuple[str, str]] = []
        self.cuts: dict[tuple[str, str], _Cut] = {}
        self.tampered: dict[tuple[str, str], bytes] = {}
        self.delay_s = 0.0
        self.write_tokens: set[str] = set()  # tokens the write endpoints accept (tests add theirs)
        self.posts: list[str] = []  # paths of every POST, in order
        self._lock = threading.Lock()
        self._bind(port)
        self._threads: list[threading.Thread] = []
        self._stopped = False

    def _bind(self, port: int) -> None:
        self._hub = ThreadingHTTPServer((self.host, port), self._handler(cdn=False))
        self._cdn = ThreadingHTTPServer((self.host, 0), self._handler(cdn=True))
        self._hub.daemon_threads = self._cdn.daemon_threads = True

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._hub.server_address[1]}"

    @property
    def cdn_url(self) -> str:
        return f"http://{self.host}:{self._cdn.server_address[1]}"

    def start(self) -> HubServer:
        if self._stopped:  # a second pytest session in one process (mutmut): serve again on the same port
            self._bind(self._hub.server_address[1])
            self._stopped = False
        for server in (self._hub, self._cdn):
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in (self._hub, self._cdn):
            server.shutdown()
            server.server_close()
        self._stopped = True

    # ------------------------------------------------------------------ repos
    def add_folder(
        self, repo_id: str, folder: str | Path, *, branch: str = "main", token: str | None = None, gated: bool = False, license: str = "apache-2.0"
    ) -> str:
        """Publish a folder's files as a new commit on `branch`; returns the commit id."""
        root = Path(folder)
        files = {str(p.relative_to(root)).replace("\\", "/"): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
        return self.commit(repo_id, files, branch=branch, token=token, gated=gated, license=license)

    def commit(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        branch: str = "main",
        token: str | None = None,
        gated: bool = False,
        license: str = "apache-2.0",
        message: str = "",
    ) -> str:
        with self._lock:
            repo = self.repos.get(repo_id) or HubRepo(repo_id, token=token, gated=gated, license=license)
            self.repos[repo_id] = repo
            parent = repo.refs.get(branch, "")
            digest = hashlib.sha1(parent.encode() + repo_id.encode())
            for name in sorted(files):
                digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
            sha = digest.hexdigest()
            repo.commits[sha] = dict(files)
            repo.refs[branch] = sha
            repo.messages[sha] = message
            for data in files.values():
                self.blobs[hashlib.sha256(data).hexdigest()] = data
            return sha

    def add_dataset(self, repo_id: str, files: dict[str, bytes], *, branch: str = "main", token: str | None = None, gated: bool = False) -> str:
        """Publish a dataset repo's files as a new commit; returns the commit id."""
        return self.commit(DATASETS + repo_id, files, branch=branch, token=token, gated=gated)

    def replace_file(self, repo_id: str, name: str, data: bytes, *, revision: str = "main") -> None:
        """Change a file's content under the SAME commit (what a consistent Hub never does)."""
        with self._lock:
            repo = self.repos[repo_id]
            sha = repo.refs.get(revision, revision)
            repo.commits[sha][name] = data
            self.blobs[hashlib.sha256(data).hexdigest()] = data

    def remove_repo(self, repo_id: str) -> None:
        """Forget a repo, and the blobs no other repo uses."""
        with self._lock:
            self.repos.pop(repo_id, None)
            used = {hashlib.sha256(data).hexdigest() for repo in self.repos.values() for files in repo.commits.values() for data in files.values()}
            for digest in [d for d in self.blobs if d not in used]:
                del self.blobs[digest]

    def file(self, repo_id: str, name: str, revision: str = "main") -> bytes:
        repo = self.repos[repo_id]
        return repo.commits[repo.refs.get(revision, revision)][name]

    def cut(self, repo_id: str, name: str, *, times: int = 1, fraction: float = 0.5) -> None:
        """The next `times` GETs of the file's content stop after `fraction` of it and drop the connection."""
        self.cuts[(repo_id, name)] = _Cut(times, fraction)

    def tamper(self, repo_id: str, name: str, data: bytes) -> None:
        """Serve `data` as the file's content while the listing and headers keep the real sha256 and size.

        A Hub (or a CDN, or a proxy) sending bytes that differ from the hash it lists: only the
        client's own check can notice. Same length as the real file, or the client's size check would.
        """
        assert len(data) == len(self.file(repo_id, name)), "tampered content must keep the file's size"
        self.tampered[(repo_id, name)] = data

    def get_count(self, repo_id: str, name: str) -> int:
        return self.gets[(repo_id, name)]

    def file_gets(self, repo_id: str | None = None) -> int:
        return sum(n for (repo, _), n in self.gets.items() if repo_id is None or repo == repo_id)

    def reset_counts(self) -> None:
        self.gets.clear()
        self.requests.clear()

    # ------------------------------------------------------------------ HTTP
    def _handler(self, *, cdn: bool) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "csa-test-hub"

            def log_message(self, format: str, *args: Any) -> None:  # keep the test output clean
                pass

            def do_HEAD(self) -> None:
                self._dispatch(head=True)

            def do_GET(self) -> None:
                self._dispatch(head=False)

            def do_POST(self) -> None:
                path = unquote(urlsplit(self.path).path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hub.posts.append(path)
                from tests.hubwrite import WriteApi  # the write endpoints live beside this file

                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    WriteApi(hub, self).post(path, body)

            # -------------------------------------------------------- helpers
            def send_json(self, status: int, body: dict[str, Any], code: str | None = None) -> None:
                headers = {"Content-Type": "application/json"}
                if code:
                    headers["X-Error-Code"] = code
                if status >= 400:
                    headers["X-Error-Message"] = str(body.get("error", ""))
                self._send(status, json.dumps(body).encode(), headers)

            def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                if "Content-Length" not in (headers or {}):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head and body:
                    self.wfile.write(body)

            def _error(self, status: int, code: str | None, message: str, head: bool, extra: dict[str, str] | None = None) -> None:
                headers = {"Content-Type": "application/json", **(extra or {})}
                if code:
                    headers["X-Error-Code"] = code
                headers["X-Error-Message"] = message
                self._send(status, json.dumps({"error": message}).encode(), headers, head)

            def _auth(self, repo: HubRepo, head: bool) -> bool:
                if repo.token is not None:
                    given = self.headers.get("Authorization", "")
                    if not given:
                        self._error(401, "RepoNotFound", "Repository not found", head)
                        return False
                    if given != f"Bearer {repo.token}":
                        self._error(401, None, "Invalid credentials in Authorization header", head)
                        return False
                if repo.gated:
                    self._error(403, "GatedRepo", "Access to this model is restricted", head)
                    return False
                return True

            def _repo(self, repo_id: str, head: bool) -> HubRepo | None:
                repo = hub.repos.get(repo_id)
                if repo is None:
                    self._error(404, "RepoNotFound", "Repository not found", head)
                    return None
                return repo if self._auth(repo, head) else None

            def _commit(self, repo: HubRepo, revision: str, head: bool) -> str | None:
                sha = repo.refs.get(revision, revision if revision in repo.commits else None)
                if sha is None:
                    self._error(404, "RevisionNotFound", "Invalid rev id", head)
                return sha

            def _dispatch(self, head: bool) -> None:
                parts = urlsplit(self.path)
                path = unquote(parts.path)
                hub.requests.append(("HEAD" if head else "GET", path))
                try:
                    if cdn:
                        self._cdn(path, parse_qs(parts.query), head)
                    elif path.startswith("/api/models/"):
                        self._api(path[len("/api/models/") :], head)
                    elif path.startswith("/api/datasets/"):
                        self._api(DATASETS + path[len("/api/datasets/") :], head)
                    elif "/resolve/" in path:
                        self._resolve(path, head)
                    else:
                        self._error(404, None, "Not found", head)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _api(self, rest: str, head: bool) -> None:
                if "/revision/" in rest:
                    repo_id, revision = rest.split("/revision/", 1)
                else:
                    repo_id, revision = rest.rstrip("/"), "main"
                repo = self._repo(repo_id, head)
                if repo is None:
                    return
                sha = self._commit(repo, revision, head)
                if sha is None:
                    return
                siblings = []
                for name, data in sorted(repo.commits[sha].items()):
                    sibling: dict[str, Any] = {"rfilename": name, "size": len(data)}
                    if name.endswith(LFS_SUFFIXES):
                        pointer = lfs_pointer(data)
                        sibling["blobId"] = git_blob_id(pointer)
                        sibling["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": len(pointer)}
                    else:
                        sibling["blobId"] = git_blob_id(data)
                    siblings.append(sibling)
                body = {
                    "id": repo.repo_id.removeprefix(DATASETS),
                    "modelId": repo.repo_id.removeprefix(DATASETS),
                    "sha": sha,
                    "private": repo.token is not None,
                    "gated": repo.gated,
                    "disabled": False,
                    "tags": [f"license:{repo.license}"],
                    "cardData": {"license": repo.license},
                    "siblings": siblings,
                    "lastModified": "2026-01-01T00:00:00.000Z",
                }
                self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json", "X-Repo-Commit": sha}, head)

            def _resolve(self, path: str, head: bool) -> None:
                repo_part, rest = path.lstrip("/").split("/resolve/", 1)
                revision, _, name = rest.partition("/")
                repo = self._repo(repo_part, head)
                if repo is None:
                    return
                sha = self._commit(repo, revision, head)
                if sha is None:
                    return
                files = repo.commits[sha]
                if name not in files:
                    self._error(404, "EntryNotFound", "Entry not found", head, {"X-Repo-Commit": sha})
                    return
                data = files[name]
                common = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes"}
                if name.endswith(LFS_SUFFIXES):
                    digest = hashlib.sha256(data).hexdigest()
                    location = f"{hub.cdn_url}/blobs/{digest}?repo={repo.repo_id}&file={name}"
                    headers = {
                        **common,
                        "Location": location,
                        "ETag": f'"{git_blob_id(lfs_pointer(data))}"',
                        "X-Linked-Etag": f'"{digest}"',
                        "X-Linked-Size": str(len(data)),
                        "Content-Length": "0",
                    }
                    self._send(302, b"", headers, head=True)
                    return
                headers = {**common, "ETag": f'"{git_blob_id(data)}"', "Content-Type": "application/octet-stream"}
                if head:
                    self._send(200, b"", {**headers, "Content-Length": str(len(data))}, head=True)
                    return
                self._serve_content(repo.repo_id, name, data, headers)

            def _cdn(self, path: str, query: dict[str, list[str]], head: bool) -> None:
                digest = path.rsplit("/", 1)[-1]
                data = hub.blobs.get(digest)
                if data is None:
                    self._error(404, None, "No such blob", head)
                    return
                repo_id = query.get("repo", [""])[0]
                name = query.get("file", [digest])[0]
                headers = {"Content-Type": "application/octet-stream", "ETag": f'"{digest}"', "Accept-Ranges": "bytes"}
                if head:
                    self._send(200, b"", {**headers, "Content-Length": str(len(data))}, head=True)
                    return
                self._serve_content(repo_id, name, data, headers)

            def _serve_content(self, repo_id: str, name: str, data: bytes, headers: dict[str, str]) -> None:
                with hub._lock:
                    hub.gets[(repo_id, name)] += 1
                    cut = hub.cuts.get((repo_id, name))
                    data = hub.tampered.get((repo_id, name), data)
                    if cut is not None:
                        cut.times -= 1
                        if cut.times <= 0:
                            del hub.cuts[(repo_id, name)]
                start = 0
                status = 200
                range_header = self.headers.get("Range", "")
                if range_header.startswith("bytes="):
                    first = range_header[len("bytes=") :].split("-", 1)[0]
                    start = int(first or 0)
                    if start >= len(data):
                        self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                        return
                    status = 206
                    headers = {**headers, "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
                body = data[start:]
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(key, value)
                self.end_headers()
                if hub.delay_s:
                    time.sleep(hub.delay_s)
                if cut is not None:
                    # half the bytes, then drop the connection: the client sees a short body
                    self.wfile.write(body[: int(len(body) * cut.fraction)])
                    self.wfile.flush()
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        return Handler
