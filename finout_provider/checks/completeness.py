"""Completeness: did Prometheus have the data of a window it answered whole? (pure)

Each exported object carries its answer's measures (:class:`Measured`, taken while the answer
streamed: series, samples, the samples its series' lifetimes imply at the step, the first and last
sample) as S3 user metadata. :func:`judge` compares a window's measures with the windows before it,
per metric, and says what looks lost:

- a metric that had series in the windows before has none (kube-state-metrics or a scrape down);
- its samples fall well below what its series' lifetimes imply (a hole inside the window);
- its data starts or stops inside the window while the windows before were full (a source that
  stopped, or a Prometheus that lost its head block);
- its series count drops far below its recent level.

Normal life does not trip it: pods come and go (each series' lifetime sets what it should have), a
nightly scale-down by half stays above the series threshold, a new cluster has no windows before,
and a metric that is legitimately empty (EXPECT_EMPTY) is never missed. What it cannot see: data
that never reached Prometheus in any window (nothing to compare with), and a loss small enough to
stay within the thresholds.
"""

from __future__ import annotations

import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

PREFIX = "finout-"
FIELDS = ("series", "samples", "expected", "first", "last")
# Where the cluster's data begins in Prometheus (Unix seconds), as the run that wrote the object
# found it: windows before it are not missing, they were never measured.
DATA_BEGINS = PREFIX + "data-begins"
EDGE_STEPS = 2  # steps of slack at a window's edges before data "starts late" or "stops early"


@dataclass(frozen=True)
class Measured:
    """One answer's measures (see :class:`~finout_provider.prometheus.answer.Measures`)."""

    series: int
    samples: int
    expected: int
    first: float | None = None
    last: float | None = None

    @classmethod
    def of(cls, measures: Any) -> Measured:
        """From an answer's :class:`~finout_provider.prometheus.answer.Measures`."""
        return cls(measures.series, measures.samples, measures.expected, measures.first, measures.last)

    def as_metadata(self) -> dict[str, str]:
        return {PREFIX + name: "" if getattr(self, name) is None else str(getattr(self, name)) for name in FIELDS}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> Measured | None:
        """The measures an object carries, or ``None`` (written by an older version, or split)."""
        try:
            values = [metadata[PREFIX + name] for name in FIELDS]
            series, samples, expected = (int(v) for v in values[:3])
            first, last = (float(v) if v else None for v in values[3:])
        except (KeyError, ValueError):
            return None
        return cls(series, samples, expected, first, last)


def data_begins(metadata: Mapping[str, str]) -> int | None:
    """Where an object's run found the cluster's data to begin, if it asked."""
    value = metadata.get(DATA_BEGINS, "")
    return int(value) if value.isdigit() else None


@dataclass(frozen=True)
class Thresholds:
    """COMPLETENESS_MIN_SAMPLES and COMPLETENESS_MIN_SERIES of the clusters file."""

    min_samples: float = 0.9  # samples / what the series' lifetimes imply
    min_series: float = 0.25  # series / the median of the windows before


def _hhmm(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%MZ")


def judge(
    window: tuple[int, int],
    step: int,
    measured: Mapping[str, Measured],
    before: Sequence[Mapping[str, Measured]],
    *,
    expect_empty: Collection[str] = (),
    thresholds: Thresholds | None = None,
) -> dict[str, str]:
    """What looks lost in ``window`` (start, end), per metric: ``{metric: reason}``. ``before``
    holds the measures of the windows before it, newest first."""
    limits = thresholds or Thresholds()
    found: dict[str, str] = {}
    for metric, now in measured.items():
        had = [w[metric] for w in before if metric in w and w[metric].series > 0]
        reason = _reason(window, step, now, had, metric in expect_empty, limits)
        if reason:
            found[metric] = reason
    return found


def _reason(
    window: tuple[int, int], step: int, now: Measured, had: Sequence[Measured], may_be_empty: bool, limits: Thresholds
) -> str | None:
    if now.series == 0:
        return None if may_be_empty or not had else f"no series (the window before had {had[0].series})"
    if now.expected and now.samples < limits.min_samples * now.expected:
        return f"{now.samples} samples of the {now.expected} its series' lifetimes imply (a hole in the window)"
    if not had:
        return None
    start, last_step = window[0], window[1] - step
    late = now.first is not None and now.first > start + EDGE_STEPS * step
    early = now.last is not None and now.last < last_step - EDGE_STEPS * step
    if (late or early) and now.first is not None and now.last is not None:
        return f"data only from {_hhmm(now.first)} to {_hhmm(now.last)} (the windows before were full)"
    usual = statistics.median(m.series for m in had)
    if now.series < limits.min_series * usual:
        return f"{now.series} series, down from about {usual:g}"
    return None
