"""The API retry policy."""

from __future__ import annotations

import pytest

from flywheel_operator.kube import retry


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (None, retry.Verdict.RETRY),
        (500, retry.Verdict.RETRY),
        (503, retry.Verdict.RETRY),
        (429, retry.Verdict.RETRY),
        (409, retry.Verdict.REREAD),
        (422, retry.Verdict.PERMANENT),
        (403, retry.Verdict.PERMANENT),
        (404, retry.Verdict.PERMANENT),
    ],
)
def test_classify(status: int | None, verdict: retry.Verdict) -> None:
    assert retry.classify(status) == verdict


def test_backoff_is_capped_and_honours_retry_after() -> None:
    b = retry.Backoff(base=0.2, cap=5, attempts=10)
    assert [b.delay(i) for i in range(7)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5, 5]
    assert b.delay(0, retry_after=7) == 7
    assert retry.retry_after_seconds({"Retry-After": "3"}) == 3.0
    assert retry.retry_after_seconds({"retry-after": "soon"}) is None
