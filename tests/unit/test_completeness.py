"""Judging a window's measures against the windows before it: losses flagged, normal life not."""

from __future__ import annotations

from finout_provider.checks.completeness import Measured, Thresholds, judge

T0, H, STEP = 1_700_000_000 - 1_700_000_000 % 3600, 3600, 60
FULL = Measured(series=100, samples=6000, expected=6000, first=T0, last=T0 + H - STEP)


def window(k: int = 0) -> tuple[int, int]:
    return (T0 + k * H, T0 + (k + 1) * H)


def shifted(m: Measured, k: int, **changes: float) -> Measured:
    values = {"series": m.series, "samples": m.samples, "expected": m.expected,
              "first": (m.first or 0) + k * H, "last": (m.last or 0) + k * H} | changes  # fmt: skip
    return Measured(**values)  # type: ignore[arg-type]


def test_normal_life_is_not_flagged() -> None:
    before = [{"cpu": shifted(FULL, k)} for k in (2, 1, 0)]
    churn = shifted(FULL, 3, series=130, samples=6100, expected=6100)  # pods came and went
    halved = shifted(FULL, 3, series=50, samples=3000, expected=3000)  # nightly scale-down by half
    for now in (churn, halved):
        assert judge(window(3), STEP, {"cpu": now}, before) == {}
    assert judge(window(0), STEP, {"cpu": FULL}, []) == {}  # a new cluster: nothing to compare with
    new = Measured(series=10, samples=200, expected=200, first=T0 + 40 * 60, last=T0 + H - STEP)
    assert judge(window(0), STEP, {"cpu": new}, [{"cpu": Measured(0, 0, 0)}]) == {}  # data begins here
    empty = Measured(0, 0, 0)
    assert judge(window(3), STEP, {"gpu": empty}, [{"gpu": shifted(FULL, 2)}], expect_empty={"gpu"}) == {}


def test_losses_are_flagged_with_their_reason() -> None:
    before = [{"cpu": shifted(FULL, k)} for k in (2, 1, 0)]
    gone = judge(window(3), STEP, {"cpu": Measured(0, 0, 0)}, before)
    assert gone == {"cpu": "no series (the window before had 100)"}
    hole = shifted(FULL, 3, samples=4000)
    assert "a hole in the window" in judge(window(3), STEP, {"cpu": hole}, before)["cpu"]
    stopped = shifted(FULL, 3, last=T0 + 3 * H + 20 * 60, samples=2100, expected=2100)
    assert "data only from" in judge(window(3), STEP, {"cpu": stopped}, before)["cpu"]
    dropped = shifted(FULL, 3, series=10, samples=600, expected=600)
    assert "10 series, down from about 100" in judge(window(3), STEP, {"cpu": dropped}, before)["cpu"]
    strict = Thresholds(min_samples=0.99, min_series=0.6)
    halved = shifted(FULL, 3, series=50, samples=3000, expected=3000)
    assert judge(window(3), STEP, {"cpu": halved}, before, thresholds=strict)


def test_measures_travel_as_object_metadata() -> None:
    assert Measured.from_metadata(FULL.as_metadata()) == FULL
    assert Measured.from_metadata({"finout-answer": "whole"}) is None  # an older version's object
