"""Stop signals: SIGINT and SIGTERM, and SIGBREAK (Ctrl+Break) on Windows.

Python delivers signals to the main thread only, and ``signal.signal`` works there only, so a
worker started in a background thread (embedded in another program) installs nothing; its
host stops it with ``Worker.stop()``. The handler must not take locks the interrupted code may
hold: it only calls the worker's ``_on_signal``, which sets flags and puts a token in a
``queue.SimpleQueue`` (documented as safe to call re-entrantly).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


def stop_signals() -> list[signal.Signals]:
    signals = [signal.SIGINT, signal.SIGTERM]
    if hasattr(signal, "SIGBREAK"):  # Windows: Ctrl+Break, and what a console close sends
        signals.append(signal.SIGBREAK)
    return signals


def signal_name(signum: int) -> str:
    """``SIGINT`` rather than ``2``: numbers differ between systems, names do not."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def handling_stop_signals(on_signal: Callable[[int], None]) -> Iterator[bool]:
    """Route the stop signals to ``on_signal`` while inside; restore the old handlers after.

    Yields False (and installs nothing) outside the main thread.
    """
    if not in_main_thread():
        yield False
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        on_signal(signum)

    previous: dict[signal.Signals, Any] = {}
    try:
        for sig in stop_signals():
            previous[sig] = signal.signal(sig, handler)
        yield True
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
