"""The overview's charts as plain numbers for inline SVG: no chart library, no script."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

WIDTH = 600
HEIGHT = 140
PAD_LEFT = 44
PAD_BOTTOM = 18
PAD_TOP = 8


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    plot_left: int
    plot_bottom: float
    y_max: int
    bars: list[Bar]
    lines: dict[str, str]
    """Series name -> SVG polyline points."""
    x_labels: list[tuple[float, str]]
    empty: bool


def nice_max(value: int) -> int:
    """A round axis maximum at or above ``value`` (1, 2 or 5 times a power of ten)."""
    if value <= 0:
        return 1
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def _x_labels(starts: list[datetime], x_of: list[float]) -> list[tuple[float, str]]:
    if not starts:
        return []
    picks = sorted({0, len(starts) // 2, len(starts) - 1})
    return [(x_of[i], starts[i].strftime("%H:%M")) for i in picks]


def bar_chart(starts: list[datetime], counts: list[int]) -> Chart:
    plot_width = WIDTH - PAD_LEFT
    plot_height = HEIGHT - PAD_BOTTOM - PAD_TOP
    y_max = nice_max(max(counts, default=0))
    slot = plot_width / max(len(counts), 1)
    bars = []
    xs = []
    for i, (start, count) in enumerate(zip(starts, counts, strict=True)):
        height = plot_height * count / y_max
        x = PAD_LEFT + i * slot
        xs.append(x + slot / 2)
        bars.append(
            Bar(
                x=round(x + 0.5, 1),
                y=round(PAD_TOP + plot_height - height, 1),
                width=round(max(slot - 1, 0.5), 1),
                height=round(height, 1),
                label=f"{start:%H:%M}: {count}",
            )
        )
    return Chart(
        WIDTH,
        HEIGHT,
        PAD_LEFT,
        HEIGHT - PAD_BOTTOM,
        y_max,
        bars,
        {},
        _x_labels(starts, xs),
        empty=not any(counts),
    )


def line_chart(
    times: list[datetime], series: dict[str, list[int]], start: datetime, end: datetime
) -> Chart:
    """Lines over [start, end]; points placed by their time, so gaps stay visible as gaps."""
    plot_width = WIDTH - PAD_LEFT
    plot_height = HEIGHT - PAD_BOTTOM - PAD_TOP
    y_max = nice_max(max((max(values, default=0) for values in series.values()), default=0))
    span = max((end - start).total_seconds(), 1.0)

    def x_of(instant: datetime) -> float:
        return round(PAD_LEFT + plot_width * (instant - start).total_seconds() / span, 1)

    def y_of(value: int) -> float:
        return round(PAD_TOP + plot_height - plot_height * value / y_max, 1)

    lines = {
        name: " ".join(f"{x_of(t)},{y_of(v)}" for t, v in zip(times, values, strict=True))
        for name, values in series.items()
    }
    labels = [
        (float(PAD_LEFT), f"{start:%H:%M}"),
        (PAD_LEFT + plot_width / 2, f"{start + (end - start) / 2:%H:%M}"),
        (float(WIDTH), f"{end:%H:%M}"),
    ]
    return Chart(WIDTH, HEIGHT, PAD_LEFT, HEIGHT - PAD_BOTTOM, y_max, [], lines, labels, not times)
