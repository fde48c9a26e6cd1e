"""Training/serving skew: what the model was served, against what training would compute.

A logged request that names its entity (the FeatureView's join keys, as an entity lookup
logs them) is joined point-in-time with the FeatureView's current offline version at the
request's time: the same code path as a training set. Each feature the request was served
is compared with that value; a feature that differs is reported with how often and one
example. Causes this finds: an online store behind or ahead of the offline one, a client
computing a feature itself, a transform that differs between the two paths.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import pyarrow.compute as pc

from flywheel.api.driftmonitor import DriftMonitor, FeatureSkew, SkewCheck, SkewResult
from flywheel.api.featureview import FeatureView
from flywheel.drift import window
from flywheel.drift.reference import ReferenceError
from flywheel.entrypoints import RunContext
from flywheel.features import runner as features


def check(monitor: DriftMonitor, context: RunContext, live: window.Live) -> SkewResult:
    spec = monitor.spec.skew
    assert spec is not None
    view = context.input_resource("FeatureView", spec.feature_view_ref.name)
    if not isinstance(view, FeatureView):
        raise ReferenceError(
            "ReferenceNotFound",
            f"spec.skew.featureViewRef: FeatureView {spec.feature_view_ref.name!r} is not "
            "among the monitor's inputs",
        )
    keys = view.spec.join_keys
    served = [f.name for f in view.spec.features if f.name in live.table.column_names]
    table = keyed_requests(live.table, keys)
    if table.num_rows == 0 or not served:
        return SkewResult(requests=table.num_rows)
    newest = table.slice(max(0, table.num_rows - spec.max_requests))
    labels = newest.select([*keys, window.TIME])  # the join keeps their order
    try:
        joined = features.training_set(view, labels, context, window.TIME)
    except LookupError as exc:
        raise ReferenceError("ReferenceNotReady", f"spec.skew: {exc}") from None
    found = compare(newest, joined, served, spec)
    return SkewResult(
        requests=table.num_rows,
        checked=newest.num_rows,
        features=found[:16],  # the result must fit a termination message
        skewed_features=[f.feature for f in found if f.share > spec.max_mismatch_share][:64],
    )


def keyed_requests(table: Any, keys: list[str]) -> Any:
    """The logged requests that give every join key (others were served without one).

    >>> import pyarrow as pa
    >>> t = pa.table({"a": [1, None, 3], "b": ["x", "y", None], "c": [1, 2, 3]})
    >>> keyed_requests(t, ["a", "b", "c"]).num_rows, keyed_requests(t, ["c"]).num_rows
    (1, 3)
    """
    if not keys or any(k not in table.column_names for k in keys):
        return table.slice(0, 0)
    return table.filter(functools.reduce(pc.and_, [pc.is_valid(table.column(k)) for k in keys]))


def compare(served: Any, offline: Any, names: list[str], spec: SkewCheck) -> list[FeatureSkew]:
    """Features whose served values differ from the offline ones, most mismatches first."""
    rows = served.num_rows
    out: list[FeatureSkew] = []
    for name in names:
        mine = served.column(name).to_pylist()
        theirs = offline.column(name).to_pylist()
        bad = [i for i in range(rows) if not same(mine[i], theirs[i], spec.tolerance)]
        if bad:
            i = bad[0]
            example = f"served {mine[i]!r}, offline {theirs[i]!r}"
            out.append(FeatureSkew(feature=name, mismatches=len(bad), share=len(bad) / rows,
                                   example=example[:120]))  # fmt: skip
    out.sort(key=lambda s: (-s.mismatches, s.feature))
    return out


def same(served: Any, offline: Any, tolerance: float) -> bool:
    """Numbers within `tolerance` relative to the offline value (absolute below 1); both
    null (or NaN) match; anything else must be equal.

    >>> same(1.0, 1.0 + 1e-9, 1e-6), same(0.5, None, 1e-6), same(None, float("nan"), 0)
    (True, False, True)
    """
    if _missing(served) or _missing(offline):
        return _missing(served) and _missing(offline)
    if isinstance(served, int | float) and isinstance(offline, int | float):
        return abs(float(served) - float(offline)) <= tolerance * max(1.0, abs(float(offline)))
    return bool(served == offline)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
