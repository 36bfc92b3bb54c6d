"""The write half of the loopback Hub (tests/hubserver.py): the endpoints huggingface_hub's
HfApi.create_repo, create_branch and create_commit call (hf_api.py, _commit_api.py).

Every file is uploaded inline: preupload answers "regular" for all of them, so the client sends
them base64 in the commit's ndjson and never starts an LFS or Xet upload, which a loopback server
cannot take (tests also set HF_HUB_DISABLE_XET=1).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.hubserver import HubRepo, HubServer, git_blob_id

GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"


class WriteApi:
    """The write endpoints (one request): repo creation, README validation, preupload, branches, commits."""

    def __init__(self, hub: HubServer, handler: Any) -> None:
        self.hub = hub
        self.h = handler

    def post(self, path: str, body: bytes) -> None:
        given = self.h.headers.get("Authorization", "")
        token = given.removeprefix("Bearer ") if given.startswith("Bearer ") else None
        if token is None or token not in self.hub.write_tokens:
            self.h.send_json(401, {"error": "Invalid username or password." if token else "You must be authenticated to write"})
            return
        if path == "/api/repos/create":
            self._create(json.loads(body), token)
        elif path == "/api/validate-yaml":
            self._validate_yaml(json.loads(body))
        elif path.startswith("/api/models/"):
            rest = path[len("/api/models/") :]
            for action in ("preupload", "commit", "branch"):
                if f"/{action}/" in rest:
                    repo_id, revision = rest.split(f"/{action}/", 1)
                    repo = self.hub.repos.get(repo_id)
                    if repo is None:
                        self.h.send_json(404, {"error": "Repository not found"}, "RepoNotFound")
                        return
                    getattr(self, "_" + action)(repo, revision, body)
                    return
            self.h.send_json(404, {"error": "Not found"})
        else:
            self.h.send_json(404, {"error": "Not found"})

    def _create(self, payload: dict[str, Any], token: str) -> None:
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else str(payload["name"])
        url = f"{self.hub.url}/{repo_id}"
        if repo_id in self.hub.repos:
            self.h.send_json(409, {"error": "You already created this model repo", "url": url})
            return
        private = payload.get("visibility") == "private" or payload.get("private") is True
        self.hub.commit(repo_id, {".gitattributes": GITATTRIBUTES}, token=token if private else None, message="initial commit")
        self.h.send_json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _validate_yaml(self, payload: dict[str, Any]) -> None:
        import yaml

        content = str(payload.get("content", ""))
        if content.startswith("---"):
            front = content.split("---", 2)[1] if content.count("---") >= 2 else None
            try:
                data = yaml.safe_load(front) if front is not None else None
                ok = front is not None and isinstance(data, dict)
            except yaml.YAMLError:
                ok = False
            if not ok:
                self.h.send_json(400, {"errors": [{"message": "README.md's metadata is not a YAML mapping"}], "error": "Invalid metadata"})
                return
        self.h.send_json(200, {"errors": [], "warnings": []})

    def _head(self, repo: HubRepo, revision: str) -> str | None:
        return repo.refs.get(revision, revision if revision in repo.commits else None)

    def _preupload(self, repo: HubRepo, revision: str, body: bytes) -> None:
        files = json.loads(body).get("files", [])
        head = self._head(repo, revision)
        current = repo.commits.get(head, {}) if head else {}
        answer = []
        for f in files:
            existing = current.get(f["path"])
            oid = git_blob_id(existing) if existing is not None else None
            answer.append({"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": oid})
        self.h.send_json(200, {"files": answer, "commitOid": head})

    def _branch(self, repo: HubRepo, branch: str, body: bytes) -> None:
        start = (json.loads(body) if body else {}).get("startingPoint") or "main"
        if branch in repo.refs:
            self.h.send_json(409, {"error": f"Reference {branch} already exists"})
            return
        sha = self._head(repo, start)
        if sha is None:
            self.h.send_json(404, {"error": "Invalid rev id"}, "RevisionNotFound")
            return
        repo.refs[branch] = sha
        self.h.send_json(200, {})

    def _commit(self, repo: HubRepo, revision: str, body: bytes) -> None:
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next((item["value"] for item in lines if item["key"] == "header"), {})
        head = self._head(repo, revision)
        if head is None:
            self.h.send_json(404, {"error": "Invalid rev id"}, "RevisionNotFound")
            return
        if header.get("parentCommit") and header["parentCommit"] != head:
            self.h.send_json(412, {"error": "A commit has happened since. Please refresh and try again."})
            return
        files = dict(repo.commits[head])
        for item in lines:
            key, value = item["key"], item["value"]
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"]) if value.get("encoding") == "base64" else value["content"].encode()
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key in ("lfsFile", "deletedFolder"):
                self.h.send_json(400, {"error": f"the test Hub takes files inline only, not {key} (set HF_HUB_DISABLE_XET=1)"})
                return
        sha = self.hub.commit(repo.repo_id, files, branch=revision, token=repo.token, gated=repo.gated, license=repo.license, message=header.get("summary", ""))
        self.h.send_json(200, {"commitOid": sha, "commitUrl": f"{self.hub.url}/{repo.repo_id}/commit/{sha}", "success": True})
