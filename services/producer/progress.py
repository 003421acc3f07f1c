"""Progress bars for a person watching the producer; nothing at all for logs and containers."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType

from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

UPDATE_EVERY_S = 0.1  # a redraw per record would cost more than the send in TIMESTAMP mode
STEPS = 10_000  # the bar's resolution: progress is a fraction, not a known line count


class Tracker:
    """One use case's bar: records sent, records/s and an ETA from the fraction done."""

    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        self._progress = progress
        self._task = task
        self._started = time.monotonic()
        self._last = 0.0

    def update(self, records: int, fraction: float, *, force: bool = False) -> None:
        if self._progress is None or self._task is None:
            return
        now = time.monotonic()
        if not force and now - self._last < UPDATE_EVERY_S:
            return
        self._last = now
        rate = records / max(now - self._started, 1e-9)
        self._progress.update(
            self._task, completed=round(fraction * STEPS), records=records, rate=rate
        )


class ProgressBoard:
    """A rich progress display, shown only when stdout is a terminal.

    While it runs, log handlers writing to the terminal go through rich's redirection so log
    lines print above the bars instead of tearing them.
    """

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stdout.isatty() if enabled is None else enabled
        self._progress: Progress | None = None
        self._swapped: list[tuple[logging.StreamHandler, object]] = []

    def track(self, name: str) -> Tracker:
        if self._progress is None:
            return Tracker(None, None)
        task = self._progress.add_task(name, total=STEPS, records=0, rate=0.0)
        return Tracker(self._progress, task)

    def __enter__(self) -> ProgressBoard:
        if not self.enabled:
            return self
        streams = {id(sys.stdout): "stdout", id(sys.stderr): "stderr"}
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("{task.fields[records]:>12,} records"),
            TextColumn("{task.fields[rate]:>9,.0f} rec/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        self._progress.start()
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and id(handler.stream) in streams:
                previous = handler.setStream(getattr(sys, streams[id(handler.stream)]))
                if previous is not None:
                    self._swapped.append((handler, previous))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._progress is None:
            return
        for handler, stream in self._swapped:
            handler.setStream(stream)
        self._swapped.clear()
        self._progress.stop()
        self._progress = None
