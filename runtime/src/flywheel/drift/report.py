"""The HTML report of a run: the verdicts, and reference-vs-live histograms per feature.

One self-contained file (figures inlined as PNG) that a browser opens from the artifact
store. Numbers are drawn as densities over common equal-width bins spanning the 0.5-99.5%
range of both sides; categories as the share of each reference category (and `other`).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from flywheel.api.driftmonitor import DriftMonitor, Verdict
from flywheel.drift import stats
from flywheel.drift.compare import NUMERIC, Check, ColumnReference, LiveColumn

if TYPE_CHECKING:
    from flywheel.drift.runner import Run

BINS = 30
REFERENCE_COLOR = "#4C72B0"
LIVE_COLOR = "#DD8452"
VERDICT_COLOR = {Verdict.DRIFT: "#c0392b", Verdict.NO_DRIFT: "#2e7d32"}


def render(monitor: DriftMonitor, run: Run) -> str:
    rows = "".join(_row(c) for c in run.checks)
    figures = "".join(
        _figure(c, run.references[c.feature], run.live_columns[c.feature])
        for c in run.checks
        if c.feature in run.references and c.feature in run.live_columns
    )
    window = f"{run.live.start or '-'} to {run.live.end or '-'}"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Drift: {_e(monitor.name)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ padding: 2px 10px; border-bottom: 1px solid #ddd; text-align: left; }}
figure {{ display: inline-block; margin: 6px; }}
</style></head><body>
<h1>DriftMonitor {_e(monitor.name)}: {_e(run.verdict)}</h1>
<p>Run at {_e(run.time.isoformat())}. Window: {run.live.rows} requests, {_e(window)}.
Model version: {_e(run.model_version or "-")}. Reference: {_e(run.reference_version)}.</p>
<table><tr><th>feature</th><th>method</th><th>score</th><th>p-value</th>
<th>alpha / threshold</th><th>verdict</th><th>live values</th><th>reference values</th></tr>
{rows}</table>
<h2>Reference (blue) and live (orange)</h2>
{figures}
</body></html>
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _row(c: Check) -> str:
    color = VERDICT_COLOR.get(c.verdict, "#777")
    return (
        f"<tr><td>{_e(c.feature)}</td><td>{_e(c.method)}</td><td>{_num(c.score)}</td>"
        f"<td>{_num(c.p_value)}</td><td>{_num(c.level)}</td>"
        f'<td style="color:{color}">{_e(c.verdict)}</td>'
        f"<td>{c.samples}</td><td>{c.reference_samples}</td></tr>\n"
    )


def _figure(check: Check, ref: ColumnReference, live: LiveColumn) -> str:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6, 2.7), dpi=80)
    ax = fig.add_subplot()
    if ref.kind == NUMERIC and ref.numeric is not None and live.values is not None:
        _numeric_axes(ax, ref.numeric, live.values)
    elif ref.categorical is not None and live.counts is not None:
        _categorical_axes(ax, ref.categorical, live.counts)
    ax.set_title(f"{check.feature}: {check.method} {_num(check.score)} ({check.verdict})")
    ax.title.set_fontsize(9)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<figure><img alt="{_e(check.feature)}" src="data:image/png;base64,{data}"></figure>\n'


def _numeric_axes(ax: Any, ref: stats.NumericReference, values: np.ndarray) -> None:
    live = values[np.isfinite(values)]
    weights = (ref.upto - ref.below).astype(np.float64)
    if ref.values.size == 0:
        return
    cdf = ref.upto / max(ref.count, 1)
    last = ref.values.size - 1
    low = float(ref.values[min(int(np.searchsorted(cdf, 0.005)), last)])
    high = float(ref.values[min(int(np.searchsorted(cdf, 0.995)), last)])
    if live.size:
        low = min(low, float(np.quantile(live, 0.005)))
        high = max(high, float(np.quantile(live, 0.995)))
    if high <= low:
        high = low + 1.0
    edges = np.linspace(low, high, BINS + 1)
    ref_hist, _ = np.histogram(ref.values, bins=edges, weights=weights, density=True)
    ax.stairs(ref_hist, edges, fill=True, alpha=0.45, color=REFERENCE_COLOR, label="reference")
    if live.size:
        live_hist, _ = np.histogram(live, bins=edges, density=True)
        ax.stairs(live_hist, edges, linewidth=1.6, color=LIVE_COLOR, label="live")


def _categorical_axes(ax: Any, ref: stats.CategoricalReference, counts: Mapping[str, int]) -> None:
    live = stats.counts_on(ref, counts).astype(np.float64)
    ref_share = ref.counts / max(ref.counts.sum(), 1)
    live_share = live / max(live.sum(), 1)
    x = np.arange(len(ref.categories))
    ax.bar(x - 0.2, ref_share, width=0.4, color=REFERENCE_COLOR, label="reference")
    ax.bar(x + 0.2, live_share, width=0.4, color=LIVE_COLOR, label="live")
    labels = ["other" if c == stats.OTHER else c[:12] for c in ref.categories]
    ax.set_xticks(x, labels, rotation=45, ha="right")
