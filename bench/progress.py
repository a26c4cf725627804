"""A progress bar on stderr, by planned seconds: a run is long and its steps are not equal.

No dependency: on a terminal it redraws one line twice a second from a thread (the measured
steps block the event loop or wait on h2load); elsewhere (CI, a log file) it prints one line
per step.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

WIDTH = 30


class Progress:
    def __init__(self, planned_seconds: float, stream: TextIO = sys.stderr) -> None:
        self._planned = max(planned_seconds, 1e-9)
        self._stream = stream
        self._tty = stream.isatty()
        self._done = 0.0
        self._step_seconds = 0.0
        self._step_started = time.monotonic()
        self._label = ""
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self._tty:
            self._thread = threading.Thread(target=self._tick, daemon=True, name="progress")
            self._thread.start()

    def step(self, label: str, seconds: float) -> None:
        """A new step of about `seconds`; the previous one counts as done."""
        with self._lock:
            self._done += self._step_seconds
            self._step_seconds = seconds
            self._step_started = time.monotonic()
            self._label = label
        if not self._tty:
            print(f"[{self._fraction():4.0%}] {label}", file=self._stream, flush=True)
        else:
            self._draw()

    def note(self, text: str) -> None:
        """A line above the bar (a skipped part, a warning)."""
        if self._tty:
            self._stream.write("\r\x1b[2K")
        print(text, file=self._stream, flush=True)
        if self._tty:
            self._draw()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._stream.write("\r\x1b[2K")
            self._stream.flush()

    def _fraction(self) -> float:
        with self._lock:
            within = min(time.monotonic() - self._step_started, self._step_seconds)
            return min(1.0, (self._done + within) / self._planned)

    def _draw(self) -> None:
        fraction = self._fraction()
        filled = int(fraction * WIDTH)
        elapsed = time.monotonic() - self._started
        left = elapsed / fraction - elapsed if fraction > 0.01 else float("nan")
        eta = f"{int(left // 60)}:{int(left % 60):02d} left" if left == left else "?:?? left"
        line = f"[{'#' * filled}{'.' * (WIDTH - filled)}] {fraction:4.0%} {eta}  {self._label}"
        self._stream.write("\r\x1b[2K" + line[:160])
        self._stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            self._draw()
