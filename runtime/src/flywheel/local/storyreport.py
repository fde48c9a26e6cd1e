"""The HTML report of a `flywheel run`: one self-contained file (inline SVG, no network).

    summary + timeline (flywheel.local.story)
    traffic split over time     one step chart per rollout: each version's share
    accuracy over time          per window, the labels fed back / the rewards they earned
    drift histograms            the DriftMonitor's own report (drift/report.py), embedded

Time on the charts is the deployments' simulated time, the rollouts one after the other.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flywheel.api.driftmonitor import DriftMonitorStatus
from flywheel.local.story import Story
from flywheel.storage import uris

COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860"]
WIDTH, HEIGHT, PAD = 720, 240, 44

Series = tuple[str, Sequence[tuple[float, float]]]


def write(story: Story, directory: Path, name: str = "run-report.html") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    tmp = path.with_name(f".{name}.tmp")
    tmp.write_text(render(story))
    tmp.replace(path)
    return path


def render(story: Story) -> str:
    traffic, accuracy, marks = _series(story)
    drift = _drift_reports(story)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Flywheel run</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1100px; }}
pre {{ background: #f6f6f6; padding: 8px; overflow-x: auto; }}
svg text {{ font-size: 11px; }}
iframe {{ width: 100%; height: 900px; border: 1px solid #ddd; }}
</style></head><body>
<h1>Flywheel run</h1>
<h2>Summary</h2>
<pre>{_e(story.summary())}</pre>
<h2>Traffic split over time</h2>
<p>Each version's share of the router's traffic, per analysis window (simulated time).</p>
{_chart(traffic, "share %", 0.0, 100.0, marks)}
<h2>Accuracy over time</h2>
<p>Per window: the share of replayed requests whose label, fed back to the router, matched
the prediction that answered it; overall and per version.</p>
{_chart(accuracy, "accuracy", *_range(accuracy), marks)}
<h2>Drift</h2>
{drift}
<h2>Timeline</h2>
<pre>{_e(chr(10).join(story.lines))}</pre>
</body></html>
"""


def _series(story: Story) -> tuple[list[Series], list[Series], list[tuple[float, str]]]:
    """(traffic per version, accuracy overall and per version, marks), the rollouts laid
    end to end on one simulated time axis."""
    traffic: dict[str, list[tuple[float, float]]] = {}
    accuracy: dict[str, list[tuple[float, float]]] = {"all": []}
    marks: list[tuple[float, str]] = []
    offset = 0.0
    for rollout in story.rollouts:
        if rollout is not story.rollouts[0]:
            marks.append((offset, f"{rollout.key} again"))
        previous = offset
        for w in rollout.windows:
            t = offset + float(w["seconds"])
            for version, share in w["traffic"].items():
                traffic.setdefault(version, []).extend([(previous, share), (t, share)])
            if w.get("accuracy") is not None:
                accuracy["all"].append((t, float(w["accuracy"])))
            for version, value in (w.get("accuracyByVersion") or {}).items():
                if value is not None:
                    accuracy.setdefault(version, []).append((t, float(value)))
            previous = t
        offset = previous
    return list(traffic.items()), [(k, v) for k, v in accuracy.items() if v], marks


def _range(series: list[Series]) -> tuple[float, float]:
    values = [y for _, points in series for _, y in points]
    if not values:
        return 0.0, 1.0
    low = max(0.0, min(values) - 0.05)
    high = min(1.0, max(values) + 0.05)
    return (low, high) if high > low else (0.0, 1.0)


def _chart(
    series: list[Series], unit: str, low: float, high: float, marks: list[tuple[float, str]]
) -> str:
    xs = [x for _, points in series for x, _ in points]
    if not xs:
        return "<p>No traffic was replayed.</p>"
    right = max(xs) or 1.0
    w, h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD

    def px(x: float) -> float:
        return PAD + w * x / right

    def py(y: float) -> float:
        return PAD + h * (1 - (y - low) / ((high - low) or 1.0))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{_e(unit)} over time">',
        f'<rect x="{PAD}" y="{PAD}" width="{w}" height="{h}" fill="none" stroke="#999"/>',
    ]
    for i in range(5):
        y = low + (high - low) * i / 4
        parts.append(
            f'<text x="{PAD - 4}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.3g}</text>'
            f'<line x1="{PAD}" x2="{PAD + w}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#eee"/>'
        )
    for i in range(5):
        x = right * i / 4
        parts.append(
            f'<text x="{px(x):.1f}" y="{PAD + h + 14}" text-anchor="middle">{_minutes(x)}</text>'
        )
    for x, label in marks:
        parts.append(
            f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{PAD}" y2="{PAD + h}" '
            f'stroke="#c0392b" stroke-dasharray="4 3"/>'
            f'<text x="{px(x) + 3:.1f}" y="{PAD + 12}" fill="#c0392b">{_e(label)}</text>'
        )
    for i, (name, points) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        path = " ".join(f"{px(x):.1f},{py(min(max(y, low), high)):.1f}" for x, y in points)
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}">'
            f"<title>{_e(name)}</title></polyline>"
        )
    legend = " ".join(
        f'<span style="color:{COLORS[i % len(COLORS)]}">&#9632; {_e(name)}</span>'
        for i, (name, _) in enumerate(series)
    )
    parts.append("</svg>")
    caption = f"{legend} ({_e(unit)}; x: simulated time)"
    return f"<figure>{''.join(parts)}<figcaption>{caption}</figcaption></figure>"


def _drift_reports(story: Story) -> str:
    """Each DriftMonitor's own report (histograms of reference vs live), inlined."""
    blocks = []
    for event in story.finished("DriftMonitor"):
        status = event.fields.get("status")
        if not isinstance(status, DriftMonitorStatus) or not status.report_uri:
            continue
        try:
            location = uris.resolve(status.report_uri)
            text = Path(location.path).read_text() if location.filesystem else ""
        except (OSError, ValueError):
            blocks.append(f"<p>{_e(event.key)}: report at {_e(status.report_uri)}</p>")
            continue
        blocks.append(
            f"<h3>{_e(event.key)}</h3>"
            f'<iframe title="{_e(event.key)}" srcdoc="{html.escape(text, quote=True)}"></iframe>'
        )
    return "".join(blocks) or "<p>No DriftMonitor wrote a report in this run.</p>"


def _minutes(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60}m{s % 60:02d}s"


def _e(value: Any) -> str:
    return html.escape(str(value))
