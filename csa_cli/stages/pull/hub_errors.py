"""What went wrong talking to the Hub, in one line a user can act on (401, 403, 404, offline, bad bytes)."""

from __future__ import annotations

from csa_cli.errors import CsaError
from csa_cli.manifest import ModelEntry
from csa_cli.stages.pull.hub_env import hub_cache_dir, hub_endpoint


class HashMismatch(CsaError):
    """A file that does not match its lock."""


def no_source_error(entry: ModelEntry) -> CsaError:
    return CsaError(
        f"{entry.name} has no published weights (its manifest entry names no Hub source)",
        hint=(
            f"convert a checkpoint trained with NVIDIA's reference code: `csa import-reference CHECKPOINT.pth --model {entry.name}`, "
            "then pass --weights PATH; or use --weights random for graph-only work"
        ),
    )


def offline_missing(entry: ModelEntry, repo: str, what: str) -> CsaError:
    return CsaError(
        f"offline and {what} of {entry.name} ({repo}) is not in the Hugging Face cache at {hub_cache_dir()}",
        hint=f"run `csa pull {entry.name}` with network access to {hub_endpoint()} (same HF_HOME), or unset HF_HUB_OFFLINE / drop --offline",
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no answer"


def hub_error(exc: BaseException, entry: ModelEntry, repo: str, revision: str, filename: str | None = None) -> CsaError:
    """One clear CsaError for whatever huggingface_hub or the network raised."""
    import httpx2
    from huggingface_hub import errors as hf

    token_hint = "set HF_TOKEN to a token with access, or run `hf auth login`"
    endpoint = hub_endpoint()
    if isinstance(exc, hf.OfflineModeIsEnabled):
        return offline_missing(entry, repo, "the files")
    if isinstance(exc, hf.GatedRepoError):
        return CsaError(
            f"{repo} is gated: the Hub refused access (403)", hint=f"accept its conditions on {endpoint}/{repo} with your account, and {token_hint}"
        )
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status == 401:
        return CsaError(f"the Hub refused {repo} without valid credentials (401): it is private or gated, or the token is wrong", hint=token_hint)
    if status == 403:
        return CsaError(f"access to {repo} is forbidden (403): the token lacks permission for it", hint=token_hint)
    if isinstance(exc, hf.RevisionNotFoundError):
        return CsaError(f"revision '{revision}' not found in {repo} (404)", hint="check --revision, or source.revision in the manifest")
    if isinstance(exc, hf.RemoteEntryNotFoundError) or (isinstance(exc, hf.EntryNotFoundError) and filename):
        return CsaError(f"{filename or 'a file'} not found in {repo} at revision '{revision}' (404)", hint="check source.files in the manifest")
    if isinstance(exc, hf.RepositoryNotFoundError) or status == 404:
        return CsaError(f"repo {repo} not found on {endpoint} (404)", hint=f"check source.repo of {entry.name} in the manifest, and HF_ENDPOINT")
    if isinstance(exc, hf.HfHubHTTPError) and status is not None:
        return CsaError(f"the Hub answered {status} for {repo}: {str(exc).strip().splitlines()[0]}", hint="try again later")
    if filename and isinstance(exc, httpx2.RemoteProtocolError | httpx2.ReadError | httpx2.ReadTimeout):
        return CsaError(
            f"the download of {filename} from {repo} was cut off ({type(exc).__name__}: {_first_line(exc)}); nothing partial was kept",
            hint=f"run `csa pull {entry.name}` again",
        )
    if isinstance(exc, httpx2.TransportError | hf.LocalEntryNotFoundError | ConnectionError):
        what = f"downloading {filename}" if filename else "resolving the revision"
        return CsaError(
            f"cannot reach the Hub at {endpoint} while {what} of {repo} ({type(exc).__name__}: {_first_line(exc)})",
            hint=f"check the connection and HF_ENDPOINT, then run `csa pull {entry.name}` again (nothing partial was kept); a pulled model also works offline",
        )
    if isinstance(exc, OSError) and "Consistency check failed" in str(exc):
        return CsaError(
            f"the download of {filename} from {repo} was cut short (size differs from the Hub's); nothing partial was kept",
            hint=f"run `csa pull {entry.name}` again",
        )
    return CsaError(f"pulling {repo} failed: {type(exc).__name__}: {exc}")
