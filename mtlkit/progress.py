"""Where a training run reports how far it is: a live line on a terminal, plain lines in logs.
"""

from __future__ import annotations

import math
import sys
import time


class Progress:
    """Where training reports how far it is.

    On a terminal: one live status line. Elsewhere (a log file, a CI job, a batch system): a
    plain line every ``every`` steps and at the end of each epoch, with elapsed time and an
    estimate of the time left, so a log shows progress without a wall of carriage returns.
    ``enabled=False``: silent; ``None``: decide from ``stderr``.
    """

    def __init__(self, enabled: bool | None, every: int = 100) -> None:
        tty = sys.stderr.isatty()
        self.mode = ("live" if tty else "lines") if enabled is None else (
            ("live" if tty else "lines") if enabled else "off")
        self.enabled = self.mode != "off"
        self.every = every
        self._last = 0.0
        self._start = time.monotonic()
        self._start_step = 0

    def start(self, step: int) -> None:
        self._start, self._start_step = time.monotonic(), step

    def _eta(self, step: int, total: int) -> str:
        elapsed = time.monotonic() - self._start
        done = step - self._start_step
        left = elapsed / done * (total - step) if done > 0 else float("nan")
        return f"elapsed {_duration(elapsed)}, ETA {_duration(left)}"

    def step(self, step: int, total: int, text: str) -> None:
        if self.mode == "live":
            self.update(f"{text} ({self._eta(step, total)})")
        elif self.mode == "lines" and step % self.every == 0:
            self._line(f"{text} ({self._eta(step, total)})")

    def epoch(self, step: int, total: int, text: str) -> None:
        if self.mode == "lines":
            self._line(f"{text} ({self._eta(step, total)})")

    def update(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.mode == "live" and (force or now - self._last > 0.2):
            self._last = now
            sys.stderr.write("\r\033[K" + text)
            sys.stderr.flush()

    def _line(self, text: str) -> None:
        sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.mode == "live":
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
