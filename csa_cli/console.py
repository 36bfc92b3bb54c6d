"""Output conventions for every command (see docs/architecture.md).

Data goes to stdout: a JSON record (one line) when stdout is not a terminal or with --json,
a rich table otherwise. Everything else goes to stderr; progress bars only on a terminal.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from csa_cli import events
from csa_cli.errors import CsaError, UpstreamError

if TYPE_CHECKING:  # records pull in pydantic, rich costs tens of ms: keep both off the fast paths
    from rich.console import Console, RenderableType
    from rich.table import Table
    from rich.text import Text

    from csa_cli.records import Record


def debug_from_env() -> bool:
    return os.environ.get("CSA_DEBUG", "") not in ("", "0", "false")


class Output:
    """One command's view of the terminal: where data and messages go, and in which form."""

    def __init__(self, *, json_flag: bool = False, debug: bool = False, stage: str = "csa") -> None:
        self.stdout_is_terminal = sys.stdout.isatty()
        self.stderr_is_terminal = sys.stderr.isatty()
        self.json = json_flag or not self.stdout_is_terminal
        self.debug = debug or debug_from_env()
        self.stage = stage
        self._spans: dict[int, Any] = {}  # open spinners and bars, by event span
        self._lines: dict[int, tuple[float, float]] = {}  # plain progress lines: (last time, last fraction)

    # rich is imported on first use: a piped `csa list` never renders, so never pays for it
    @functools.cached_property
    def stdout(self) -> Console:
        from rich.console import Console

        return Console(soft_wrap=True)

    @functools.cached_property
    def stderr(self) -> Console:
        from rich.console import Console

        return Console(stderr=True, soft_wrap=True)

    # messages (stderr)
    def info(self, message: str) -> None:
        self.stderr.print(message, highlight=False, markup=False)

    def warn(self, message: str) -> None:
        self.stderr.print(f"Warning: {message}", style="yellow", highlight=False, markup=False)

    def error(self, exc: CsaError) -> None:
        """This stage failed: one `Error:` line (and a hint) on stderr, and an error record on a piped stdout."""
        self.stderr.print(f"Error: {exc.message}", style="bold red", highlight=False, markup=False)
        if exc.hint:
            self.stderr.print(f"Hint: {exc.hint}", highlight=False, markup=False)
        if not self.stdout_is_terminal or self.json:
            from csa_cli.records import ErrorRecord

            self.emit_record(ErrorRecord(stage=self.stage, message=exc.message))

    def forward(self, exc: UpstreamError) -> None:
        """An earlier stage failed: its error record goes on unchanged down a pipe; nothing is said (it said why already)."""
        from csa_cli.records import ErrorRecord

        if not self.stdout_is_terminal or self.json:
            self.emit_record(ErrorRecord(stage=exc.upstream_stage or self.stage, message=exc.upstream_message))

    # data (stdout)
    def emit_record(self, record: Record) -> None:
        sys.stdout.write(record.to_json() + "\n")
        sys.stdout.flush()

    def emit(self, record: Record, render: Callable[[], RenderableType | None] | None = None) -> None:
        """The record on a pipe or with --json; the rendered view on a terminal."""
        if self.json or render is None:
            self.emit_record(record)
            return
        view = render()
        if view is not None:
            self.stdout.print(view)

    def emit_data(self, data: Any, render: Callable[[], RenderableType | None]) -> None:
        """Non-record data (lists, reports): JSON on a pipe, the rendered view on a terminal."""
        if self.json:
            import json

            sys.stdout.write(json.dumps(data) + "\n")
            sys.stdout.flush()
        else:
            view = render()
            if view is not None:
                self.stdout.print(view)

    # what stages say (csa_cli.events), rendered here: the only place besides cli/ that prints
    def listen(self) -> contextlib.AbstractContextManager[None]:
        """Render the events of the stages called inside on stderr."""
        return events.listening(self.render_event, live=self.stderr_is_terminal)

    def render_event(self, event: events.Event) -> None:
        if event.kind == "info":
            self.info(event.message)
        elif event.kind == "warning":
            self.warn(event.message)
        elif event.kind == "status":
            self._render_status(event)
        else:
            self._render_progress(event)

    def _render_status(self, event: events.Event) -> None:
        if not self.stderr_is_terminal:
            if not event.final:
                self.info(event.message)
            return
        if event.final:
            spinner = self._spans.pop(event.span, None)
            if spinner is not None:
                spinner.stop()
            return
        spinner = self.stderr.status(text(event.message))  # a stage's words are never markup
        spinner.start()
        self._spans[event.span] = spinner

    def _render_progress(self, event: events.Event) -> None:
        """A bar with an ETA on a terminal; otherwise a plain line every 10% (or 15 s) and at the end."""
        done, total = event.done or 0, max(event.total or 0, 1)
        line = f"{event.message}: {done}/{event.total} {event.unit} ({100 * done / total:.0f}%), {event.rate:.1f} {event.unit}/s"
        if not self.stderr_is_terminal:
            if event.final:
                self._lines.pop(event.span, None)
                return
            last_time, last_fraction = self._lines.setdefault(event.span, (0.0, 0.0))
            fraction = done / total
            if done and (done == event.total or fraction - last_fraction >= 0.1 or event.elapsed_s - last_time >= 15):
                self.info(line)
                self._lines[event.span] = (event.elapsed_s, fraction)
            return
        bar = self._spans.get(event.span)
        if bar is None and not event.final:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            bar = Progress(
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=self.stderr,
                transient=True,
            )
            bar.add_task(event.message, total=event.total, rate="")
            bar.start()
            self._spans[event.span] = bar
        if bar is None:
            return
        if event.final:
            self._spans.pop(event.span).stop()
            return
        bar.update(bar.task_ids[0], completed=done, rate=f"{event.rate:.1f} {event.unit}/s")

    @contextmanager
    def status(self, message: str) -> Iterator[None]:
        """A spinner on a terminal, a plain line otherwise."""
        if self.stderr_is_terminal:
            with self.stderr.status(text(message)):
                yield
        else:
            self.info(message)
            yield


def text(value: Any, style: str = "") -> Text:
    """A cell or line as plain text: user-supplied and computed strings ("[tensorrt]", paths, globs) are never read as markup."""
    from rich.text import Text

    return value if isinstance(value, Text) else Text("" if value is None else str(value), style=style)


def table(
    title: str | None,
    columns: list[str],
    rows: list[list[Any]],
    *,
    wide: set[str] | frozenset[str] = frozenset(),
    numeric: set[str] | frozenset[str] = frozenset(),
    details: dict[str, str] | None = None,
    width: int | None = None,
) -> Table:
    """A table laid out for 80 columns: every cell escaped, the first column never wrapped (model names stay whole).

    wide: columns with long values (paths, repo ids) that take the spare width and fold anywhere;
    the others wrap at spaces. No column ever drops text (overflow folds, never an ellipsis).
    numeric: columns of numbers, right-aligned.
    details: column -> where else it is shown (`csa info MODEL`); such a column moves out of the table,
    named in the caption, when the table would not fit in `width` with it.
    """
    from rich.table import Table

    if details and width is not None:
        natural = sum(max([len(str(c))] + [len(str(r[i])) for r in rows]) + 3 for i, c in enumerate(columns)) + 1
        if natural > width:
            keep = [i for i, c in enumerate(columns) if c not in details]
            moved = [c for c in columns if c in details]
            columns = [columns[i] for i in keep]
            rows = [[r[i] for i in keep] for r in rows]
            caption = "; ".join(f"{c}: {details[c]}" for c in moved)
        else:
            caption = None
    else:
        caption = None
    view = Table(title=text(title) if title else None, show_lines=False, caption=text(caption) if caption else None)
    for i, col in enumerate(columns):
        is_number = col in numeric
        view.add_column(
            text(col),
            overflow="fold",
            no_wrap=i == 0,
            justify="right" if is_number else "left",
            ratio=2 if col in wide else None,
        )
    for row in rows:
        view.add_row(*(text(v) for v in row))
    return view
