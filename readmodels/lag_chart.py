"""The admin's lag chart: one series per read model over the last hour, drawn server-side.

Points are beat's lag samples (readmodels.operations.lag_samples) plus the lag measured
as the page is drawn, so the right edge always agrees with the status table. Where no
sample was taken for a while (beat down, PostgreSQL unreachable) the series breaks and
the time shows as a grey "no samples" band: a gap is never drawn as a flat zero.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from readmodels import config, projectors

CHART_WIDTH, CHART_HEIGHT = 760, 240
# Room for the y-axis labels on the left and the time labels below.
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 52, 12, 10, 28
COLOURS = ["#2563eb", "#16a34a", "#db2777", "#ea580c", "#7c3aed", "#0891b2"]
# Series overlap wherever their lag is equal (at zero, most of the time): each one is
# drawn narrower than the one below it, so every colour stays visible as a band.
WIDEST_STROKE = 9
# Samples further apart than this many sampling intervals have a gap between them.
GAP_INTERVALS = 2.5
# Time ticks closer than this to the right edge would overwrite "now (UTC)".
NOW_LABEL_PX = 64


def _nice_step(top: float, ticks: int = 4) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) that covers `top` in ~`ticks`."""
    raw = top / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _seconds_label(value: float) -> str:
    return f"{value:g} s"


def _runs(points: list[tuple[datetime, float]], gap: timedelta) -> list[list[tuple[datetime, float]]]:
    """Sorted points cut wherever two neighbours are more than `gap` apart."""
    runs: list[list[tuple[datetime, float]]] = []
    for point in points:
        if runs and point[0] - runs[-1][-1][0] <= gap:
            runs[-1].append(point)
        else:
            runs.append([point])
    return runs


def _gaps(times: list[datetime], since: datetime, now: datetime, gap: timedelta):
    """The stretches of [since, now] longer than `gap` in which no sample was taken."""
    edges = [since, *sorted(t for t in times if since <= t <= now), now]
    return [(a, b) for a, b in zip(edges, edges[1:], strict=False) if b - a > gap]


def lag_chart(samples, since: datetime, now: datetime, *, current: dict[str, float] | None = None,
              slos: dict[str, float] | None = None, interval: float | None = None) -> dict:
    """What the template draws: axes, SLO lines, series (as unbroken runs) and gaps.

    `samples` have projector, at and lag_seconds (segments of one read model are taken
    together: the worst counts); `current` is each read model's lag as the page is drawn.
    """
    slos = slos if slos is not None else {n: config.slo_seconds(n) for n in projectors.PROJECTORS}
    interval = interval if interval is not None else config.lag_sample_seconds()
    gap = timedelta(seconds=GAP_INTERVALS * interval)
    series: dict[str, dict] = {}
    for sample in samples:
        points = series.setdefault(sample.projector, {})
        points[sample.at] = max(points.get(sample.at, 0.0), sample.lag_seconds)
    sampled_at = sorted({at for points in series.values() for at in points})
    for name, lag in (current or {}).items():
        points = series.setdefault(name, {})
        points[now] = max(points.get(now, 0.0), lag)
    highest = max([0.0] + [v for points in series.values() for v in points.values()])
    # The SLO stays in view even when every lag is far below it.
    ceiling = max(highest, *slos.values(), 1.0) * 1.1
    step = _nice_step(ceiling)
    top = step * math.ceil(ceiling / step)
    plot_w = CHART_WIDTH - PLOT_LEFT - PLOT_RIGHT
    plot_h = CHART_HEIGHT - PLOT_TOP - PLOT_BOTTOM
    span = max((now - since).total_seconds(), 1)

    def x(at) -> float:
        return PLOT_LEFT + (at - since).total_seconds() / span * plot_w

    def y(value: float) -> float:
        return PLOT_TOP + plot_h - min(value, top) / top * plot_h

    y_ticks = [
        {"y": f"{y(step * i):.1f}", "label": _seconds_label(round(step * i, 6))}
        for i in range(int(round(top / step)) + 1)
    ]
    # Time ticks on whole ten minutes, labelled in UTC like every time in the admin.
    first = since.replace(minute=since.minute - since.minute % 10, second=0, microsecond=0)
    x_ticks, at = [], first
    while at <= now:
        if at >= since and x(at) <= CHART_WIDTH - PLOT_RIGHT - NOW_LABEL_PX:
            x_ticks.append({"x": f"{x(at):.1f}", "label": at.strftime("%H:%M")})
        at += timedelta(minutes=10)
    slo_lines = [
        {
            "y": f"{y(value):.1f}",
            "label": f"SLO {_seconds_label(value)} ("
            + ", ".join(sorted(n for n, v in slos.items() if v == value))
            + ")",
        }
        for value in sorted(set(slos.values()))
        if value <= top
    ]
    lines = []
    for index, name in enumerate(sorted(series)):
        ordered = sorted(series[name].items())
        runs = []
        for run in _runs(ordered, gap):
            coords = [f"{x(at):.1f},{y(value):.1f}" for at, value in run]
            if len(coords) == 1:
                # A lone sample: a segment of no length, which the round cap draws as a dot.
                coords.append(coords[0])
            runs.append(" ".join(coords))
        last_sampled = max((at for at in series[name] if at != now or current is None), default=None)
        lines.append({
            "name": name,
            "runs": runs,
            "colour": COLOURS[index % len(COLOURS)],
            "width": max(WIDEST_STROKE - 2 * index, 1.5),
            "latest": _seconds_label(round(ordered[-1][1], 2)),
            "peak": _seconds_label(round(max(v for _, v in ordered), 2)),
            "silent_since": last_sampled if last_sampled and now - last_sampled > gap else None,
        })
    gaps = [
        {"x": f"{x(a):.1f}", "width": f"{max(x(b) - x(a), 1):.1f}",
         "label": f"no samples {a:%H:%M:%S}–{b:%H:%M:%S} UTC"}
        for a, b in _gaps(sampled_at, since, now, gap)
    ]
    return {
        "lines": lines, "gaps": gaps, "top": top, "width": CHART_WIDTH, "height": CHART_HEIGHT,
        "left": PLOT_LEFT, "right": CHART_WIDTH - PLOT_RIGHT, "top_y": PLOT_TOP,
        "bottom": PLOT_TOP + plot_h, "plot_height": plot_h, "y_ticks": y_ticks,
        "x_ticks": x_ticks, "slo_lines": slo_lines, "since": since, "now": now,
        "interval": interval,
    }
