"""A small progress bar on stderr, written by hand so that hnm needs no tqdm.

    with Progress(total=1000, desc="embed") as bar:
        for batch in batches:
            ...
            bar.update(len(batch))

prints, redrawn in place at most ten times a second:

    embed  [##########----------]  512/1000  51%  130.2/s  eta 0:04

`quiet=True` (the command line's `--quiet`) turns it off. It does not nest and does not draw several bars at once.
"""

import sys
import time
from typing import Optional, TextIO


def _clock(seconds: float) -> str:
    """3725.2 -> '1:02:05'; 65 -> '1:05'."""
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Counts work done out of `total` (or open-ended when total is None) and draws a bar on `stream`."""

    width = 20  # characters in the bar itself
    interval = 0.1  # seconds between redraws

    def __init__(self, total: Optional[int], desc: str = "", quiet: bool = False, unit: str = "",
                 stream: Optional[TextIO] = None):
        self.total = total
        self.desc = desc
        self.quiet = quiet
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.start = time.monotonic()
        self._last_draw = 0.0

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last_draw >= self.interval:
            self._draw(now)

    def close(self) -> None:
        if not self.quiet:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, now: float) -> None:
        if self.quiet:
            return
        self._last_draw = now
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        if self.total:
            frac = min(self.done / self.total, 1.0)
            filled = int(round(frac * self.width))
            left = (self.total - self.done) / rate if rate > 0 else 0.0
            line = (f"{self.desc}  [{'#' * filled}{'-' * (self.width - filled)}]  {self.done}/{self.total}"
                    f"  {frac:4.0%}  {rate:.1f}{self.unit}/s  eta {_clock(left)}")
        else:
            line = f"{self.desc}  {self.done}{self.unit}  {rate:.1f}{self.unit}/s  {_clock(elapsed)}"
        self.stream.write("\r" + line)
        self.stream.flush()
