"""Calls of the public API as a user writes them: tests/test_api.py has mypy check this file (it is never run)."""

from __future__ import annotations

from pathlib import Path

import csa_cli as csa
from csa_cli.events import Event


def walkthrough(data: Path) -> tuple[csa.Record, list[csa.Record], int]:
    said: list[Event] = []
    bundle: csa.Record = csa.engine(csa.quantize(csa.export("csa-tiny"), calib_dataset=str(data)), precision="mixed", target="orin", on_event=said.append)
    profiles: list[csa.Record] = csa.profile(bundle, "convnext-tiny", batch=[1, 8], iterations=5)
    try:
        csa.check(csa.pull("convnext-tiny"), rules="all")
    except csa.CheckFailed as exc:
        assert exc.record is not None
        return exc.record, profiles, int(exc.exit_code)
    return bundle, profiles, len(said)
