from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from finout_provider.plan.windows import (
    DAY,
    Window,
    WindowError,
    align_down,
    backfill_start,
    check_frame,
    plan_run,
    to_epoch,
    windows_between,
    windows_covering,
    windows_ending_in,
)

T0 = int(datetime(2025, 10, 5, tzinfo=UTC).timestamp())  # 1759622400, a midnight
H = 3600


def plan(**kwargs: object) -> list[tuple[int, int]]:
    args: dict[str, object] = {"now": T0 + 10 * H + 300, "time_frame": H, "settle": 120, "limit": 1024} | kwargs
    return [(w.start, w.end) for w in plan_run(**args).windows]  # type: ignore[arg-type]


def test_hourly_interval_gives_its_window() -> None:
    assert plan(interval=(T0 + 9 * H, T0 + 10 * H)) == [(T0 + 9 * H, T0 + 10 * H)]


@pytest.mark.parametrize("frame", [300, 900, 1800, 7200, 21600])
def test_other_time_frames_are_aligned(frame: int) -> None:
    windows = plan(time_frame=frame, interval=(T0, T0 + 6 * H))
    assert len(windows) == 6 * H // frame
    assert all(s % frame == 0 and e - s == frame for s, e in windows)
    assert windows[0][0] == T0 and windows[-1][1] == T0 + 6 * H


def test_unaligned_interval_closes_only_whole_windows() -> None:
    # A run every 30 minutes with hourly windows closes one window every other run.
    assert plan(interval=(T0 + 9 * H + 1800, T0 + 10 * H)) == [(T0 + 9 * H, T0 + 10 * H)]
    assert plan(interval=(T0 + 9 * H, T0 + 9 * H + 1800)) == []


def test_windows_not_yet_closed_are_left_out() -> None:
    assert plan(interval=(T0 + 9 * H, T0 + 12 * H)) == [(T0 + 9 * H, T0 + 10 * H)]


def test_settle_delay_is_waited_for() -> None:
    result = plan_run(now=T0 + 10 * H + 5, time_frame=H, settle=120, limit=10, interval=(T0 + 9 * H, T0 + 10 * H))
    assert result.wait_until == T0 + 10 * H + 120


def test_no_interval_takes_the_newest_settled_window() -> None:
    assert plan(now=T0 + 10 * H + 60) == [(T0 + 8 * H, T0 + 9 * H)]  # 10:00 not settled yet
    assert plan(now=T0 + 10 * H + 180) == [(T0 + 9 * H, T0 + 10 * H)]


def test_first_run_backfill() -> None:
    now = T0 + 10 * H + 300
    history = windows_between(align_down(backfill_start(now, 3, None), H), T0 + 10 * H, H)  # all missing in S3
    windows = plan(now=now, interval=(T0 + 9 * H, T0 + 10 * H), repairs=history)
    assert len(windows) == 3 * 24  # the 3 days up to the run, its own window included
    assert windows[0] == (T0 + 10 * H - 3 * DAY, T0 + 11 * H - 3 * DAY)
    assert windows[-1] == (T0 + 9 * H, T0 + 10 * H)
    assert [s for s, _ in windows] == list(range(windows[0][0], T0 + 10 * H, H))


def test_initial_backfill_date_is_limited_to_three_days() -> None:
    now = T0 + 10 * H
    assert backfill_start(now, 3, date(2025, 10, 4)) == T0 - DAY
    assert backfill_start(now, 3, date(2025, 9, 1)) == now - 3 * DAY  # clamped, not refused
    assert backfill_start(now, 1, None) == now - DAY


def test_gap_repair_adds_missing_windows_once() -> None:
    gaps = [Window(T0 + 2 * H, T0 + 3 * H), Window(T0 + 5 * H, T0 + 6 * H), Window(T0 + 9 * H, T0 + 10 * H)]
    windows = plan(interval=(T0 + 9 * H, T0 + 10 * H), repairs=gaps)
    assert windows == [(T0 + 2 * H, T0 + 3 * H), (T0 + 5 * H, T0 + 6 * H), (T0 + 9 * H, T0 + 10 * H)]


def test_manual_start_end_covers_the_range() -> None:
    windows = plan(explicit=(T0 + 3 * H + 600, T0 + 6 * H))
    assert windows == [(T0 + 3 * H, T0 + 4 * H), (T0 + 4 * H, T0 + 5 * H), (T0 + 5 * H, T0 + 6 * H)]


@pytest.mark.parametrize(
    ("explicit", "message"),
    [((T0 + 5 * H, T0 + 4 * H), "must be after"), ((T0, T0 + 20 * H), "in the future")],
)
def test_manual_range_errors(explicit: tuple[int, int], message: str) -> None:
    with pytest.raises(WindowError, match=message):
        plan(explicit=explicit)


def test_ranges_older_than_prometheus_retention_are_refused_or_cut() -> None:
    oldest = T0 + 2 * H + 600
    with pytest.raises(
        WindowError, match=r"older than what Prometheus keeps .* start at 2025-10-05T03:00:00Z or later"
    ):
        plan(explicit=(T0 + H, T0 + 5 * H), oldest=oldest)
    assert plan(explicit=(T0 + 3 * H, T0 + 5 * H), oldest=oldest) == [
        (T0 + 3 * H, T0 + 4 * H),
        (T0 + 4 * H, T0 + 5 * H),
    ]
    now = T0 + 6 * H + 300
    result = plan_run(
        now=now,
        time_frame=H,
        settle=120,
        limit=100,
        interval=(T0 + 5 * H, T0 + 6 * H),
        repairs=windows_between(T0, T0 + 6 * H, H),
        oldest=oldest,
    )
    assert [w.start for w in result.windows] == [T0 + h * H for h in (3, 4, 5)]


def test_map_limit_fails_clearly_for_explicit_ranges() -> None:
    with pytest.raises(WindowError, match=r"more than Airflow's max_map_length \(24\)"):
        plan(explicit=(T0 - 2 * DAY, T0), limit=24)


def test_a_range_reaching_far_back_is_refused_before_a_window_is_built() -> None:
    """A start of -99999999999 (or 0) would be billions of windows: refused by count, at once."""
    with pytest.raises(WindowError, match=r"not a time between 1970-01-01 and 9999-12-31"):
        to_epoch("-99999999999")
    with pytest.raises(WindowError, match=r"covers 488784 windows, more than Airflow's max_map_length \(1024\)"):
        plan(explicit=(0, T0))


@pytest.mark.parametrize("value", ["99999999999999999999", "9" * 400, 10**30, "253402300800"])
def test_times_past_year_9999_are_refused_not_overflowed(value: object) -> None:
    with pytest.raises(WindowError, match=r"not a time between"):
        to_epoch(value)
    assert to_epoch("253402300799") == 253402300799


def test_map_limit_defers_automatic_history() -> None:
    now = T0 + 10 * H + 300
    result = plan_run(
        now=now,
        time_frame=H,
        settle=120,
        limit=10,
        interval=(T0 + 9 * H, T0 + 10 * H),
        repairs=windows_between(align_down(now - DAY, H), T0 + 10 * H, H),
    )
    assert len(result.windows) == 10 and result.deferred == 23 - 9  # 23 history windows from 14:00 the day before
    assert result.windows[-1] == Window(T0 + 9 * H, T0 + 10 * H)  # newest kept


def test_consecutive_query_ranges_never_share_a_step() -> None:
    a, b = Window(T0, T0 + H), Window(T0 + H, T0 + 2 * H)
    sa, ea = a.query_range(60)
    sb, eb = b.query_range(60)
    assert set(range(sa, ea + 1, 60)).isdisjoint(range(sb, eb + 1, 60))
    assert set(range(sa, ea + 1, 60)) | set(range(sb, eb + 1, 60)) == set(range(T0, T0 + 2 * H, 60))


@pytest.mark.parametrize(("frame", "step"), [(7000, 60), (3600, 7), (86400, 1), (0, 60)])
def test_bad_frames(frame: int, step: int) -> None:
    with pytest.raises(WindowError):
        check_frame(frame, step)


def test_helpers() -> None:
    assert windows_between(T0 + 1, T0 + 3 * H, H) == [Window(T0 + H, T0 + 2 * H), Window(T0 + 2 * H, T0 + 3 * H)]
    assert windows_covering(T0 + 1, T0 + H + 1, H) == [Window(T0, T0 + H), Window(T0 + H, T0 + 2 * H)]
    assert windows_ending_in(T0, T0 + H, H) == [Window(T0, T0 + H)]
    assert to_epoch("2025-10-05T00:00:00Z") == T0 == to_epoch(str(T0)) == to_epoch(datetime.fromtimestamp(T0, UTC))
    assert Window(T0, T0 + H).label == "2025-10-05T00:00Z/01:00Z"
    with pytest.raises(WindowError):
        to_epoch("yesterday")
