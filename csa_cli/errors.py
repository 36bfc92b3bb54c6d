"""Errors that the CLI turns into one `Error:` line and an exit code."""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # records import this module
    from csa_cli.records import Record


class ExitCode(IntEnum):
    """Exit codes shared by every command (documented in the README)."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    CHECK_FAILED = 3
    MISSING_BACKEND = 4
    INTERRUPTED = 130  # Ctrl-C, or a training run stopped by its scheduler's signal (state saved)


class CsaError(Exception):
    """A failure the user can act on: a one-line message and, where it helps, a hint.

    `record`: what the stage made before it failed, where it made something (the verdict of a
    non-compliant check, the numbers of an eval under --min-top1, a run's stages): the CLI
    prints it before the error, the Python API hands it over on the exception.
    """

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, hint: str | None = None, *, exit_code: ExitCode | None = None, record: Record | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.record = record
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class UsageError(CsaError):
    """Bad arguments: batch 0, limit 0, an option that contradicts another."""

    exit_code = ExitCode.USAGE


class CheckFailed(CsaError):
    """A check or threshold not met (non-compliant graph, top-1 under --min-top1)."""

    exit_code = ExitCode.CHECK_FAILED


class MissingBackend(CsaError):
    """A backend or device that is not here (TensorRT, a GPU)."""

    exit_code = ExitCode.MISSING_BACKEND


class UpstreamError(CsaError):
    """An error record read from stdin: the previous stage of a pipeline failed."""

    def __init__(self, stage: str | None, message: str) -> None:
        where = f"upstream stage '{stage}' failed" if stage else "upstream stage failed"
        super().__init__(f"{where}: {message}")
        self.upstream_stage = stage
        self.upstream_message = message
