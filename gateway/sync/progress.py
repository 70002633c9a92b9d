"""A terminal progress bar for ``memberhub sync``.

On a TTY it redraws one line per stream in place (at most ten times a second); elsewhere (CI
logs, pipes) it prints a plain line every few seconds and when a stream finishes, so logs stay
readable. The fraction comes from the connector's checkpoints (``done``/``total`` windows or
pages), so it advances with the work actually committed, not with guesses.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from gateway.sync.runner import Progress

WIDTH = 24


def render(p: Progress) -> str:
    s = p.stats
    if s.finished:
        frac = 1.0
    elif s.total:
        frac = min(1.0, (s.done or 0) / s.total)
    else:
        frac = None
    bar = (
        "█" * int(frac * WIDTH) + "░" * (WIDTH - int(frac * WIDTH))
        if frac is not None
        else "·" * WIDTH
    )
    pct = f"{frac * 100:5.1f}%" if frac is not None else "   …  "
    rate = s.read / p.elapsed if p.elapsed > 0 else 0.0
    applied = s.created + s.updated + s.unchanged
    retries = p.http.get("retries", 0)
    parts = [
        f"{p.channel}/{p.stream:<10}",
        bar,
        pct,
        f"{s.read} read",
        f"{applied} applied",
        f"{s.rejected} rejected",
        f"{rate:,.0f}/s",
    ]
    if retries:
        parts.append(f"{retries} retries")
    return " ".join(parts[:2]) + " " + " · ".join(parts[2:])


class ProgressBar:
    def __init__(self, out: TextIO | None = None, *, interval: float | None = None) -> None:
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self.interval = interval if interval is not None else (0.1 if self.tty else 5.0)
        self._last = 0.0
        self._stream: str | None = None

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        new_stream = p.stream != self._stream
        if not (p.stats.finished or new_stream or now - self._last >= self.interval):
            return
        self._last = now
        line = render(p)
        if self.tty:
            if new_stream and self._stream is not None:
                self.out.write("\n")
            self.out.write("\r\x1b[2K" + line)
            if p.stats.finished:
                self.out.write("\n")
        else:
            self.out.write(line + "\n")
        self.out.flush()
        self._stream = None if p.stats.finished else p.stream
