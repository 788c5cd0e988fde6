"""A one-line progress bar on stderr, with finished jobs printed above it.

On a terminal the bar is redrawn in place; elsewhere (CI logs, pipes) only the finished-job
lines are printed, so logs stay readable.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

BAR_WIDTH = 24


class Progress:
    def __init__(self, total: int, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._status = ""

    def _eta(self) -> str:
        if self.done == 0:
            return "eta ?"
        elapsed = time.monotonic() - self.started
        left = elapsed / self.done * (self.total - self.done)
        return f"eta {int(left // 60)}m{int(left % 60):02d}s"

    def _bar(self) -> str:
        filled = BAR_WIDTH * self.done // self.total
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        text = f"[{bar}] {self.done}/{self.total} {self._eta()}  {self._status}"
        width = shutil.get_terminal_size((100, 20)).columns - 1
        return text[:width]

    def _draw(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\r\x1b[2K" + self._bar())
            self.stream.flush()

    def status(self, text: str) -> None:
        self._status = text
        self._draw()

    def line(self, text: str) -> None:
        """Print a line above the bar."""
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\x1b[2K")
        elapsed = time.monotonic() - self.started
        self.stream.write(f"[{elapsed:6.0f}s] {text}\n")
        self._draw()

    def advance(self, text: str) -> None:
        self.done += 1
        if not self.tty and self.enabled:
            text = f"({self.done}/{self.total}) {text}"
        self.line(text)

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
