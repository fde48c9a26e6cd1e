"""The model card of a version: card.json for machines, card.html for people.

The HTML shows the reliability diagram (before and after calibration, when the job
calibrates), recall per class, and the metric by slice as PNG images drawn with
matplotlib (Agg: no display needed), beside intended use, lineage, the training
configuration, metrics, gates and their outcome, and limitations.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

RELIABILITY_PNG = "reliability.png"
SLICES_PNG = "slices.png"
CARD_JSON = "card.json"
CARD_HTML = "card.html"
# A class recalled less often than this is named in the limitations.
LOW_CLASS_RECALL = 0.5


def limitations(card: dict[str, Any]) -> list[str]:
    notes = [
        "Trained on the label window in the lineage; behaviour outside it is unmeasured.",
        "Predictions assume the features are computed exactly as the FeatureView defines "
        "them, with preprocessing.json applied.",
    ]
    weak = [s for s in card["evaluation"]["slices"] if s["weak"]]
    for s in weak:
        notes.append(
            f"Weak slice {s['column']}={s['value']} ({s['rows']} rows): "
            f"{card['evaluation']['primaryMetric']} well below the whole test set."
        )
    if card["evaluation"]["metrics"].get("ece", 0.0) > 0.05:
        notes.append("Probabilities are not well calibrated (ECE above 0.05).")
    for c in card["evaluation"].get("classes") or []:
        if c["recall"] is not None and c["recall"] < LOW_CLASS_RECALL:
            notes.append(
                f"Class {c['class']} ({c['rows']} test rows, {c['share']:.1%}) has a recall of "
                f"{c['recall']:.3f} at threshold 0.5."
            )
    return notes


def write(directory: Path, card: dict[str, Any]) -> None:
    card = {**card, "limitations": limitations(card)}
    images = _draw(directory, card)
    card["images"] = images
    (directory / CARD_JSON).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    (directory / CARD_HTML).write_text(render_html(card))


def _draw(directory: Path, card: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    evaluation = card["evaluation"]
    drawn = []
    bins = [b for b in evaluation["calibration"] if b["count"]]
    if bins:
        fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=80)
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
        fix = evaluation.get("calibrationFix")
        if fix:
            before = [b for b in fix["before"]["bins"] if b["count"]]
            ax.plot(
                [b["meanPredicted"] for b in before],
                [b["observedRate"] for b in before],
                marker="x",
                color="tab:orange",
                label=f"uncalibrated (ECE {fix['before']['ece']:.3f})",
            )
        ax.plot(
            [b["meanPredicted"] for b in bins],
            [b["observedRate"] for b in bins],
            marker="o",
            label=f"{fix['method']} calibrated" if fix else "model",
        )
        ax.set_xlabel("mean predicted probability")
        ax.set_ylabel("observed rate")
        ax.set_title(f"Reliability (ECE {evaluation['metrics'].get('ece', 0):.3f})")
        ax.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(directory / RELIABILITY_PNG, metadata={"Software": None})
        plt.close(fig)
        drawn.append(RELIABILITY_PNG)
    slices = evaluation["slices"]
    if slices:
        primary = evaluation["primaryMetric"]
        fig, ax = plt.subplots(figsize=(6, 0.4 * len(slices) + 1.5), dpi=80)
        labels = [f"{s['column']}={s['value']} (n={s['rows']})" for s in slices]
        values = [s["metrics"].get(primary, float("nan")) for s in slices]
        colors = ["tab:red" if s["weak"] else "tab:blue" for s in slices]
        ax.barh(labels, values, color=colors)
        ax.axvline(evaluation["metrics"][primary], color="black", linestyle="--", label="all")
        ax.set_xlabel(primary)
        ax.set_title(f"{primary} by slice (red: weak)")
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(directory / SLICES_PNG, metadata={"Software": None})
        plt.close(fig)
        drawn.append(SLICES_PNG)
    return drawn


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows
    )
    return f"<table>{body}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _perturbation(found: dict[str, Any] | None) -> str:
    if not found:
        return "<p>not measured</p>"
    rows = [("all perturbations at once", found["flipRate"])]
    rows += [(f"{name} only", rate) for name, rate in sorted(found["each"].items())]
    rows.append(("declared", found["spec"]))
    return f"<p>Share of {found['rows']} test rows whose class flips</p>{_table(rows)}"


def cause(card: dict[str, Any]) -> str:
    """What caused the training, in words: the drift event of a retrain, if any.

    >>> cause({"cause": {"monitor": "churn-drift", "time": "2026-05-01T00:10:00Z",
    ...                  "driftedFeatures": ["plan", "tenure"]}})
    'retrain by DriftMonitor churn-drift: drift in plan, tenure at 2026-05-01T00:10:00Z'
    >>> cause({})
    'trained from its manifest (no drift event)'
    """
    event = card.get("cause")
    if not event:
        return "trained from its manifest (no drift event)"
    features = ", ".join(event.get("driftedFeatures") or []) or "the prediction"
    when = f" at {event['time']}" if event.get("time") else ""
    return f"retrain by DriftMonitor {event['monitor']}: drift in {features}{when}"


def _warm_start(found: dict[str, Any] | None) -> str:
    if not found:
        return "<p>trained from scratch</p>"
    scratch, forgot = found["fromScratch"], found["forgetting"]
    rows = [
        (
            "base",
            f"{found['base']['model']}:{found['base']['version']} ({found['base']['resolvedBy']})",
        ),
        (
            "epochs",
            f"{found['epochsRun']} (from scratch: {scratch['epochs']}, "
            f"version {scratch['version']})",
        ),
        ("epochs saved", found["epochsSaved"]),
        ("rows seen", f"{found['rowsSeen']} (from scratch: {scratch['rowsSeen']})"),
        ("rows seen / from scratch", found["rowsSeenRatio"]),
        (
            f"forgetting: {forgot['metric']} on the base's test window ({forgot['rows']} rows)",
            f"{forgot['new']:.4f} vs {forgot['base']:.4f} (delta {forgot['delta']:+.4f}, "
            f"tolerance {forgot['tolerance']:g}): {'pass' if forgot['passed'] else 'FAIL'}",
        ),
    ]
    return _table(rows)


def _quantization(found: dict[str, Any] | None) -> str:
    if not found:
        return "<p>float model served</p>"
    metric = found["metric"]
    rows = [
        ("mode", found["mode"]),
        (
            "TorchScript bytes, float -> int8",
            f"{found['bytes']['float']} -> {found['bytes']['int8']}",
        ),
        ("size ratio", found["sizeRatio"]),
        (
            f"{metric}, float -> int8 (max drop {found['maxMetricDrop']:g})",
            f"{found['float'][metric]:.4f} -> {found['int8'][metric]:.4f}: "
            f"{'pass' if found['passed'] else 'FAIL'}",
        ),
        ("metric deltas", {k: round(v, 6) for k, v in sorted(found["delta"].items())}),
        ("latency", "measured per run: the registry index entry and the status message"),
    ]
    return _table(rows)


def _deployed(gates: list[dict[str, Any]]) -> str:
    """notWorseThanDeployed's two figures, and the rows behind them."""
    found = next((g["comparison"] for g in gates if g.get("comparison")), None)
    if found is None:
        return "<p>no notWorseThanDeployed gate, or nothing deployed yet</p>"
    metric = found["metric"]
    rows = [
        ("deployed version", found["deployedVersion"]),
        (f"{metric}, this version", found["newValue"]),
        (f"{metric}, deployed version", found["deployedValue"]),
    ]
    if found["sameRows"]:
        rows.append(("measured on", f"this job's test split, the same {found['rows']} rows"))
        rows.append((f"{metric}, deployed version, registry figure", found["registryValue"]))
    else:
        rows.append(("measured on", "each version's own test split (the registry's figure)"))
        rows.append(("why not the same rows", found["fallback"]))
    return _table(rows)


def render_html(card: dict[str, Any]) -> str:
    e = card["evaluation"]
    gates = [
        (f"{g['name']}: {g['metric']} {g['bound']}", "pass" if g["passed"] else "FAIL")
        for g in card["gates"]
    ]
    slices = [
        (
            f"{s['column']}={s['value']} ({s['rows']} rows)",
            _fmt(s["metrics"]) + (" weak" if s["weak"] else ""),
        )
        for s in e["slices"]
    ]
    classes = [
        (f"class {c['class']} ({c['rows']} rows, {c['share']:.1%})", c["recall"])
        for c in e.get("classes") or []
    ]
    fix = e.get("calibrationFix")
    calibrated = (
        _table(
            [
                ("method", fix["method"]),
                ("fitted on", f"{fix['fittedOn']} split ({fix['validationRows']} rows)"),
                ("parameters", fix["parameters"]),
                ("ECE before", fix["before"]["ece"]),
                ("ECE after", fix["after"]["ece"]),
            ]
        )
        if fix
        else "<p>not calibrated</p>"
    )
    images = "".join(f'<img src="{name}" alt="{name}">' for name in card.get("images", []))
    title = html.escape(f"{card['model']} {card.get('version') or ''}")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Model card: {title}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}
th{{text-align:left;padding-right:1em}}img{{margin:0.5em}}</style></head>
<body>
<h1>Model card: {title}</h1>
<h2>Intended use</h2><p>{html.escape(card["intendedUse"])}</p>
<h2>Why it was trained</h2><p>{html.escape(cause(card))}</p>
<h2>Metrics (test split, {e["rows"]} rows)</h2>{_table(sorted(e["metrics"].items()))}
<h2>Recall per class (threshold 0.5)</h2>{_table(classes) if classes else "<p>-</p>"}
<h2>Calibration fix</h2>{calibrated}
<h2>Perturbation sensitivity</h2>{_perturbation(e.get("perturbation"))}
<h2>Warm start</h2>{_warm_start(card.get("warmStart"))}
<h2>Quantization</h2>{_quantization(card.get("quantization"))}
<h2>Gates</h2>{_table(gates) if gates else "<p>none</p>"}
<h2>Compared with the deployed version</h2>{_deployed(card["gates"])}
<h2>Calibration and slices</h2>{images}
{_table(slices) if slices else ""}
<h2>Lineage</h2>{_table(sorted(card["lineage"].items()))}
<h2>Training configuration</h2>{_table(sorted(card["config"].items()))}
<h2>Limitations</h2><ul>{"".join(f"<li>{html.escape(n)}</li>" for n in card["limitations"])}</ul>
</body></html>
"""
