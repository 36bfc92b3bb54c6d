"""`csa push`: publish a csa checkpoint to a Hub repo in timm's layout, through huggingface_hub's commit API.

The repo gets `model.safetensors` (the checkpoint, byte for byte: its csa metadata included),
`model_ema.safetensors` when the EMA weights lie beside it, `config.json` written by timm's own
`save_config_for_hf` (architecture, num_classes, label_names, model_args, pretrained_cfg with the
checkpoint's preprocessing) and a model card (stages/push/card.py). One `create_commit` uploads
them all; the result names the commit and the manifest entry that pins it, and `--register NAME`
writes that entry into the user manifest so that `csa pull NAME` serves exactly those bytes.

On huggingface.co large files go over LFS or Xet; a loopback test Hub takes them inline
(tests/hubwrite.py), which huggingface_hub does when the server's preupload answer says so.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from csa_cli import events
from csa_cli.errors import CsaError
from csa_cli.manifest import register_entry
from csa_cli.paths import sha256_file
from csa_cli.records import PushRecord
from csa_cli.stages.pull.hub_env import hub_endpoint
from csa_cli.stages.push.card import CardFacts, card_text
from csa_cli.stages.push.entry import EMA_FILE, PushInput, manifest_entry, model_args, timm_architecture

OURS = {".gitattributes", "README.md", "config.json", "model.safetensors", EMA_FILE}
TOKEN_HINT = "run `hf auth login` (or `huggingface-cli login`), set HF_TOKEN, or pass --token"


def resolve_token(token: str | None) -> str:
    """--token, else huggingface_hub's own lookup (HF_TOKEN, then the token `hf auth login` saved)."""
    from huggingface_hub import get_token

    found = token or get_token()
    if not found:
        raise CsaError("pushing to the Hub needs a token with write access, and none is set", hint=TOKEN_HINT)
    return found


def _hub_write_error(exc: BaseException, repo: str) -> CsaError:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    first = (str(exc).strip().splitlines() or ["no answer"])[0]
    if status == 401:
        return CsaError(f"the Hub refused the token for {repo} (401): it is invalid or expired", hint=TOKEN_HINT)
    if status == 403:
        return CsaError(f"the token may not write to {repo} (403)", hint=f"use a token with write access to {repo.split('/')[0]}, or another --repo")
    return CsaError(f"pushing to {repo} on {hub_endpoint()} failed: {first}", hint="check HF_ENDPOINT and the network, then push again")


def write_config(item: PushInput, path: Path) -> dict[str, Any]:
    """config.json in timm's Hub layout, by timm's save_config_for_hf on the network it describes."""
    import json

    import timm
    from timm.models._hub import save_config_for_hf

    import csa_cli.models.csa  # noqa: F401  (registers the CSA architectures with timm)

    args = model_args(item)
    model = timm.create_model(timm_architecture(item), pretrained=False, num_classes=item.num_classes, **args)
    pre = item.preprocessing
    data = {"input_size": (3, *pre.input_size), "crop_pct": pre.crop_pct, "interpolation": pre.interpolation, "mean": pre.mean, "std": pre.std}
    extra: dict[str, Any] = {"label_names": list(item.meta.class_names)} if item.meta.class_names else {}
    save_config_for_hf(model, str(path), model_config=extra, model_args=args or None, data_config=data)
    return json.loads(path.read_text(encoding="utf-8"))


def _params_m(path: Path) -> float:
    """Millions of values in the checkpoint (parameters and BN statistics), read from the header's shapes."""
    from safetensors import safe_open

    total = 0
    with safe_open(str(path), framework="pt") as fh:
        for key in fh.keys():  # noqa: SIM118  (a safe_open handle is not a dict)
            count = 1
            for dim in fh.get_slice(key).get_shape():
                count *= int(dim)
            total += count
    return total / 1e6


def _check_repo(api: Any, repo: str, revision: str, force: bool) -> None:
    """An existing repo may hold only what a push writes; anything else is refused unless --force."""
    from huggingface_hub import errors as hf

    try:
        files = {s.rfilename for s in api.model_info(repo, revision=revision).siblings or []}
    except hf.RevisionNotFoundError:
        return  # a new branch: created below
    other = sorted(files - OURS)
    if other and not force:
        shown = ", ".join(other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
        raise CsaError(f"{repo} already holds files csa push did not write ({shown})", hint="push to a new --repo, or add --force to commit beside them")
    if other:
        events.warn(f"{repo}: committing beside {len(other)} file(s) csa push did not write (--force)")


def push_stage(
    item: PushInput,
    repo: str,
    *,
    revision: str = "main",
    private: bool = False,
    token: str | None = None,
    force: bool = False,
    register: str | None = None,
    manifest: str | os.PathLike[str] | None = None,
    license: str = "apache-2.0",
    dataset: str | None = None,
) -> PushRecord:
    """Publish `item` to `repo`@`revision` in one commit; the record names the commit and the entry that pins it.

    Long because it is the one place the order of a push is spelled out: token, files, repo, commit, entry.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    if repo.count("/") != 1 or not all(repo.split("/")):
        raise CsaError(f"--repo must be OWNER/NAME, got {repo!r}", hint="e.g. --repo my-org/csa-nano-digits")
    key = resolve_token(token)
    api = HfApi(endpoint=hub_endpoint(), token=key)
    with tempfile.TemporaryDirectory(prefix="csa-push-") as tmp:
        folder = Path(tmp)
        config = write_config(item, folder / "config.json")
        facts = CardFacts(
            repo=repo,
            model=item.entry.name,
            architecture=config["architecture"],
            meta=item.meta,
            preprocessing=item.preprocessing,
            license=license,
            dataset=dataset,
            params_m=_params_m(item.path),
            has_ema=item.ema is not None,
        )
        (folder / "README.md").write_text(card_text(facts), encoding="utf-8")
        uploads = {"model.safetensors": item.path, "config.json": folder / "config.json", "README.md": folder / "README.md"}
        if item.ema is not None:
            uploads[EMA_FILE] = item.ema
        hashes = {name: sha256_file(path) for name, path in uploads.items()}
        try:
            events.info(f"Creating {repo} on {hub_endpoint()} (if it does not exist)" + (" as a private repo" if private else ""))
            api.create_repo(repo, private=private, exist_ok=True)
            if revision != "main":
                api.create_branch(repo, branch=revision, exist_ok=True)
            _check_repo(api, repo, revision, force)
            events.info(f"Uploading {', '.join(uploads)} to {repo}@{revision}")
            operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in uploads.items()]
            info = api.create_commit(repo, operations, commit_message=f"csa push: {item.entry.name}, {item.num_classes} classes", revision=revision)
        except CsaError:
            raise
        except Exception as exc:
            raise _hub_write_error(exc, repo) from None
    commit = str(info.oid)
    name = register or repo.split("/")[-1]
    entry = manifest_entry(item, name, repo, commit, license=license, dataset=dataset)
    registered = None
    if register:
        registered = str(register_entry(register, entry, manifest))
        events.info(f"Registered {register} in {registered}: `csa pull {register}` serves commit {commit[:12]}")
    return PushRecord(
        model=name,
        path=str(item.path),
        repo=repo,
        revision=revision,
        commit=commit,
        url=f"{hub_endpoint()}/{repo}",
        files=hashes,
        entry={"name": name, **entry},
        registered=registered,
        private=private,
    )
