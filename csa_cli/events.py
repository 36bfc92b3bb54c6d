"""What a stage says while it works: notes, warnings, status spans and progress.

Stages never print (only cli/ and the Output object do). They call the functions here, which
hand an Event to the listener installed by whoever called the stage (`listening(...)`): the
CLI's Output renders them on stderr (spinners and bars on a terminal, plain lines otherwise);
`csa run`, `csa compare` and tests can collect them instead. Without a listener they are dropped.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

EventKind = Literal["info", "warning", "status", "progress"]


@dataclass(frozen=True)
class Event:
    """One thing a stage said. `status` and `progress` come as spans: a first event, then `final`."""

    kind: EventKind
    message: str
    done: int | None = None  # progress: units done so far
    total: int | None = None  # progress: units in all
    unit: str = ""
    elapsed_s: float = 0.0
    final: bool = False
    span: int = 0  # ties the events of one status or progress span together

    @property
    def rate(self) -> float:
        """Units per second so far (progress events)."""
        return (self.done or 0) / self.elapsed_s if self.elapsed_s > 0 else 0.0


Listener = Callable[[Event], None]

_listener: contextvars.ContextVar[Listener | None] = contextvars.ContextVar("csa_events", default=None)
_live: contextvars.ContextVar[bool] = contextvars.ContextVar("csa_events_live", default=False)
_spans = iter(range(1, 1 << 62))


@contextmanager
def listening(listener: Listener, *, live: bool = False) -> Iterator[None]:
    """Send the events of the code run inside to `listener`; `live` means it draws bars on a terminal."""
    token, live_token = _listener.set(listener), _live.set(live)
    try:
        yield
    finally:
        _listener.reset(token)
        _live.reset(live_token)


def is_live() -> bool:
    """Whether the listener draws live progress (a terminal): libraries' own bars may show then."""
    return _live.get()


def emit(event: Event) -> None:
    listener = _listener.get()
    if listener is not None:
        listener(event)


def info(message: str) -> None:
    emit(Event("info", message))


def warn(message: str) -> None:
    emit(Event("warning", message))


@contextmanager
def status(message: str) -> Iterator[None]:
    """A span of work with no measurable progress (a spinner on a terminal)."""
    span = next(_spans)
    emit(Event("status", message, span=span))
    try:
        yield
    finally:
        emit(Event("status", message, span=span, final=True))


class Progress:
    """Counts units of work done and reports each step as a progress event."""

    def __init__(self, message: str, total: int, unit: str, span: int) -> None:
        self.message, self.total, self.unit, self.span = message, total, unit, span
        self.done = 0
        self.start = time.perf_counter()

    def _event(self, final: bool = False) -> Event:
        elapsed = time.perf_counter() - self.start
        return Event("progress", self.message, done=self.done, total=self.total, unit=self.unit, elapsed_s=elapsed, final=final, span=self.span)

    def advance(self, n: int = 1) -> None:
        self.done += n
        emit(self._event())

    @property
    def rate(self) -> float:
        return self._event().rate


@contextmanager
def progress(message: str, total: int, unit: str = "items") -> Iterator[Progress]:
    """A span of `total` units; call `advance(n)` as they are done."""
    tracker = Progress(message, total, unit, next(_spans))
    emit(tracker._event())
    try:
        yield tracker
    finally:
        emit(tracker._event(final=True))
