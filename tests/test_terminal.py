"""What a person sees on a terminal: tables rendered through a real pseudo-terminal at 80 and 120 columns.

Each table is compared with what it must hold: the command's own data (its --json, for doctor and
list), or the same table rendered 400 columns wide, where nothing wraps (compare). At 80 and 120
columns every cell must hold the same text (wrapped or folded over lines, never cut), the first
column (the model) must never wrap, and only a column the command moves out on purpose (with a
caption saying where it went) may be missing. Timings differ from run to run: their cells must
hold a whole number.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Table = dict[str, Any]  # {"header": [column names], "rows": [[cell texts]]}
WIDTHS = (80, 120)


def parse_tables(text: str) -> list[Table]:
    """The rich tables in a terminal's text: header names and rows, each cell's lines joined.

    A row starts on a line whose first cell is not empty (the first column never wraps); the lines
    after it, up to the next such line, continue its cells.
    """
    tables: list[Table] = []
    current: Table | None = None
    header_lines: list[list[str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("┏"):
            current, header_lines = {"header": [], "rows": []}, []
            tables.append(current)
        elif stripped.startswith("┃") and current is not None:
            header_lines.append([c.strip() for c in stripped.strip("┃").split("┃")])
        elif stripped.startswith("┡") and current is not None:
            current["header"] = [squeeze("".join(h[i] for h in header_lines)) for i in range(len(header_lines[0]))]
        elif stripped.startswith("│") and current is not None:
            cells = [c.strip() for c in stripped.strip("│").split("│")]
            assert len(cells) == len(current["header"]), f"a row that does not fit its table:\n{line}"
            if cells[0] or not current["rows"]:
                current["rows"].append([[c] if c else [] for c in cells])
            else:
                for parts, cell in zip(current["rows"][-1], cells, strict=True):
                    if cell:
                        parts.append(cell)
        elif stripped.startswith("└"):
            current = None
    for t in tables:
        t["rows"] = [[" ".join(parts) for parts in row] for row in t["rows"]]
    return tables


def squeeze(cell: str) -> str:
    """A cell's text without the spaces wrapping may add or remove (folding splits a word without one)."""
    return re.sub(r"\s+", "", cell)


def assert_same_tables(wide: list[Table], narrow: list[Table], width: int, *, measured: set[str] = frozenset(), moved: set[str] = frozenset()) -> None:
    """Every table and row of the wide render is in the narrow one, each cell's text whole; first cells equal exactly."""
    assert len(narrow) == len(wide) and wide, f"{len(narrow)} tables at {width} columns, {len(wide)} at 400"
    for w, n in zip(wide, narrow, strict=True):
        assert set(w["header"]) - set(n["header"]) <= moved, f"columns lost at {width}: {set(w['header']) - set(n['header'])}"
        assert len(n["rows"]) == len(w["rows"]), f"rows at {width}: {n['rows']}\nat 400: {w['rows']}"
        for wrow, nrow in zip(w["rows"], n["rows"], strict=True):
            assert nrow[0] == wrow[0], f"first column (the model) broken at {width}: {nrow[0]!r} vs {wrow[0]!r}"
            for name, ncell in zip(n["header"], nrow, strict=True):
                wcell = wrow[w["header"].index(name)]
                if name in measured:  # a timing differs from run to run: the whole number must be there
                    assert re.fullmatch(r"-|-?\d+(\.\d+)?(±\d+(\.\d+)?)?", squeeze(ncell)), f"{name} cut at {width}: {ncell!r}"
                else:
                    assert squeeze(ncell) == squeeze(wcell), f"{name} at {width}: {ncell!r}, at 400: {wcell!r}"


def renders(csa_pty: Callable[..., tuple[int, str]], *args: str, widths: tuple[int, ...] = (400, *WIDTHS)) -> dict[int, str]:
    out = {}
    for width in widths:
        code, text = csa_pty(*args, columns=width)
        assert code == 0, text
        assert "…" not in text, f"an ellipsis at {width} columns: text was cut\n{text}"
        for line in text.splitlines():  # a table line never runs past the edge (messages are the terminal's to wrap)
            if line.strip()[:1] in set("┏┃┡│└"):
                assert len(line) <= width, f"a table line wider than {width} columns:\n{line}"
        out[width] = text
    return out


def expected_table(header: list[str], rows: list[list[Any]]) -> list[Table]:
    return [{"header": [squeeze(h) for h in header], "rows": [[str(c) for c in row] for row in rows]}]


def test_doctor_at_80_and_120_columns(csa_pty: Callable[..., tuple[int, str]], csa: Callable[..., Any]) -> None:
    checks = csa("doctor").record["checks"]  # the data the table shows
    rows = [
        [
            c["component"],
            ("too old" if c.get("problem") else "present") if c["present"] else "absent",
            c["detail"] + " " + (c.get("problem") or ""),
            c["enables"],
        ]
        for c in checks
    ]
    wide = expected_table(["component", "status", "version / detail", "enables"], rows)
    texts = renders(csa_pty, "doctor", widths=WIDTHS)
    assert "pip install 'csa[tensorrt]'" in " ".join(texts[120].split()) or importlib.util.find_spec("tensorrt")  # markup in a value is text
    for width in WIDTHS:
        assert_same_tables(wide, parse_tables(texts[width]), width)


def test_list_at_80_and_120_columns(csa_pty: Callable[..., tuple[int, str]], csa: Callable[..., Any]) -> None:
    from csa_cli.cli.list_info import _fmt

    models = csa("list").record["models"]
    rows = [
        [m["name"], m["family"], m["builder"], _fmt(m["params_m"], 2), _fmt(m["gmacs"], 2), _fmt(m["reported_top1"], 2), m["hub_repo"] or "none published"]
        for m in models
    ]
    wide = expected_table(["model", "family", "builder", "params (M)", "GMACs", "top-1 %", "Hub repo"], rows)
    assert all(m["params_m"] is not None and m["gmacs"] is not None for m in models)  # every entry states them
    texts = renders(csa_pty, "list", widths=WIDTHS)
    for width in WIDTHS:
        narrow = parse_tables(texts[width])
        assert_same_tables(wide, narrow, width, moved={"Hubrepo"})
        if "Hubrepo" not in narrow[0]["header"]:
            assert "Hub repo: `csa info MODEL`" in texts[width]  # moved, and the caption says where
    assert "Hubrepo" in parse_tables(texts[120])[0]["header"]  # 120 columns hold the whole table


def test_profile_at_80_and_120_columns(csa_pty: Callable[..., tuple[int, str]], exported: Callable[..., Path]) -> None:
    onnx = str(exported("csa-nano"))  # the session's export: onnxruntime, no torch in the renders
    texts = renders(csa_pty, "profile", onnx, "--iterations", "3", "--warmup", "1", widths=WIDTHS)
    tables = {width: parse_tables(texts[width]) for width in WIDTHS}
    for width, found in tables.items():
        assert [[r[:2] for r in t["rows"]] for t in found] == [[["csa-nano", "1"]]] * 2, width
    # the static estimate is the same at both widths; the timings differ, but each cell holds a whole number
    fixed = ("model", "batch", "GMAC*", "MB*")
    wide = [{**t, "rows": [[c if h in fixed else "0" for h, c in zip(t["header"], r, strict=True)] for r in t["rows"]]} for t in tables[120]]
    measured = {h for t in tables[120] for h in t["header"]} - set(fixed)
    for width in WIDTHS:
        assert_same_tables(wide, tables[width], width, measured=measured)


def test_compare_at_80_and_120_columns(csa_pty: Callable[..., tuple[int, str]], stored_study: dict[str, Any], tmp_path: Path, test_manifest_path: Path) -> None:
    manifest = study_manifest(stored_study["models"], test_manifest_path, tmp_path)
    args = ("compare", *stored_study["models"], "--no-run", "--batch", "1,4,8", "--baseline", "m-base", "--manifest", str(manifest))
    texts = renders(csa_pty, *args)
    wide = parse_tables(texts[400])
    assert len(wide) == 4 and {r[0] for r in wide[2]["rows"]} == set(stored_study["models"])
    for width in WIDTHS:
        assert_same_tables(wide, parse_tables(texts[width]), width)


def study_manifest(models: list[str], test_manifest: Path, tmp_path: Path) -> Path:
    """A user manifest naming the stored study's models (m-* are not zoo names)."""
    text = test_manifest.read_text()
    block = text[text.index("[models.test-convnext]") : text.index("[models.test-swin]")]
    manifest = tmp_path / "m.toml"
    manifest.write_text("schema = 1\n" + "".join(block.replace("models.test-convnext", f"models.{m}") for m in models))
    return manifest


@pytest.fixture
def stored_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from tests.test_compare import make_stored_study

    monkeypatch.setenv("CSA_HOME", str(tmp_path / "home"))  # the child process inherits it
    return make_stored_study()


def test_a_long_stage_shows_a_bar_with_an_eta_on_a_terminal_and_nothing_extra_on_a_pipe(
    csa_pty: Callable[..., tuple[int, str]],
    csa: Callable[..., Any],
    exported: Callable[..., Path],
    imagenet_photos: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    onnx = str(exported("csa-nano"))  # the session's (before CSA_HOME moves), for the pipe half
    monkeypatch.setenv("CSA_HOME", str(tmp_path / "home"))  # nothing cached: the export runs
    code, shown = csa_pty("export", "csa-nano", "--weights", "random", "--opset", "18")
    assert code == 0, shown
    bars = [line for line in shown.replace("\r", "\n").splitlines() if "export, check, parity" in line and "━" in line]
    assert bars and all(re.search(r"\d/3 .*(-:--:--|\d+:\d\d:\d\d)$", line.rstrip()) for line in bars), bars  # done/total, then the ETA
    # on a pipe (an eval reports progress too): the record alone on stdout, plain progress lines on stderr
    piped = csa("eval", onnx, "--model", "csa-nano", "--dataset", str(imagenet_photos.val_dir), "--limit", "8", "--workers", "0")
    assert piped.exit_code == 0, piped.stderr
    assert len(piped.stdout.splitlines()) == 1 and piped.record["kind"] == "eval"
    assert "images/s" in piped.stderr and "━" not in piped.stderr and "\x1b" not in piped.stderr  # no bar, no terminal codes


def test_user_text_is_never_read_as_markup() -> None:
    from rich.console import Console

    from csa_cli.console import Output, table
    from csa_cli.events import Event

    tricky = ["pip install 'csa[tensorrt]'", "/data/[bold]val[/bold]/*.JPEG", "node [red]x"]
    console = Console(record=True, width=120, force_terminal=True)
    console.print(table("[bold]title[/bold]", ["a [b]", "c"], [[tricky[0], tricky[1]], [tricky[2], "-"]]))
    shown = console.export_text()
    assert all(t in shown for t in [*tricky, "[bold]title[/bold]", "a [b]"]), shown
    out = Output()
    out.__dict__["stderr"] = Console(record=True, width=120, force_terminal=True)  # what a terminal would get
    out.render_event(Event("info", tricky[2]))
    out.render_event(Event("warning", tricky[1]))
    said = out.stderr.export_text()
    assert tricky[2] in said and f"Warning: {tricky[1]}" in said
