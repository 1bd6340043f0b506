"""Window arithmetic: alignment, splitting, backfill ranges and gaps (pure, no I/O).

A window is the half-open interval ``[start, end)`` in Unix seconds (UTC), aligned to TIME_FRAME.
It is queried from ``start`` to ``end - step`` inclusive, so consecutive windows never share a
sample timestamp and together cover every step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime

DAY = 86_400
# Seconds after a window closes before it is exported: Prometheus' last scrapes and rules land.
SETTLE_SECONDS = 120
MAX_POINTS_PER_SERIES = 11_000
# INITIAL_BACKFILL_DATE reaches back at most this many days (the official exporter's limit).
MAX_INITIAL_BACKFILL_DAYS = 3
# The times a window can have: the Unix epoch to the end of year 9999 (what a datetime can hold).
LATEST = 253_402_300_799


class WindowError(ValueError):
    """A window, range or step that the export cannot use."""


@dataclass(frozen=True, order=True)
class Window:
    start: int
    end: int

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise WindowError(f"window end {self.end} must be after its start {self.start}")

    @property
    def label(self) -> str:
        """Human name, e.g. ``2025-10-05T00:00Z/01:00Z``, used in logs and the Airflow UI."""
        start = datetime.fromtimestamp(self.start, UTC)
        end = datetime.fromtimestamp(self.end, UTC)
        end_fmt = "%H:%MZ" if end.date() == start.date() else "%Y-%m-%dT%H:%MZ"
        return f"{start:%Y-%m-%dT%H:%MZ}/{end:{end_fmt}}"

    def query_range(self, step: int) -> tuple[int, int]:
        """``(start, end)`` for ``query_range``: both ends inclusive, so the last point is end-step."""
        return self.start, self.end - step

    def as_dict(self) -> dict[str, int]:
        return {"window_start": self.start, "window_end": self.end}


def check_frame(time_frame: int, step: int) -> None:
    """Refuse a TIME_FRAME/STEP pair the export cannot honour exactly."""
    if time_frame <= 0 or DAY % time_frame:
        raise WindowError(
            f"TIME_FRAME {time_frame} must divide a day (86400 s) so windows align to midnight UTC; "
            "e.g. 900, 1800, 3600, 7200, 21600"
        )
    if step <= 0 or time_frame % step:
        raise WindowError(f"STEP_SECONDS {step} must be positive and divide TIME_FRAME {time_frame}")
    if time_frame // step > MAX_POINTS_PER_SERIES:
        raise WindowError(
            f"TIME_FRAME {time_frame} / STEP_SECONDS {step} = {time_frame // step} points per "
            f"series exceeds Prometheus' limit of {MAX_POINTS_PER_SERIES}: lower TIME_FRAME or "
            "raise STEP_SECONDS"
        )


def align_down(ts: int, time_frame: int) -> int:
    return ts - ts % time_frame


def align_up(ts: int, time_frame: int) -> int:
    return -(-ts // time_frame) * time_frame


def windows_between(start: int, end: int, time_frame: int) -> list[Window]:
    """Every aligned window that lies wholly inside ``[start, end)``."""
    first = align_up(start, time_frame)
    return [Window(s, s + time_frame) for s in range(first, end - time_frame + 1, time_frame)]


def windows_covering(start: int, end: int, time_frame: int) -> list[Window]:
    """Every aligned window that overlaps ``[start, end)`` (for explicit re-export ranges)."""
    first = align_down(start, time_frame)
    return [Window(s, s + time_frame) for s in range(first, end, time_frame)]


def closed_before(now: int, settle: int, time_frame: int) -> int:
    """End of the last window that has closed and settled at ``now`` (aligned)."""
    return align_down(now - settle, time_frame)


def missing(expected: Iterable[Window], present_starts: Iterable[int]) -> list[Window]:
    """Windows of ``expected`` whose start is not among ``present_starts``."""
    present = set(present_starts)
    return [w for w in expected if w.start not in present]


def merge(*groups: Iterable[Window]) -> list[Window]:
    """Union of window lists, sorted and without duplicates."""
    return sorted({w for group in groups for w in group})


def iter_days(start: int, end: int) -> Iterator[int]:
    """Midnight (UTC) of every day that ``[start, end)`` touches."""
    day = align_down(start, DAY)
    while day < end:
        yield day
        day += DAY


def iso(ts: int) -> str:
    """``ts`` (Unix seconds) as ISO-8601 UTC, as logs and the CLI show times."""
    return f"{datetime.fromtimestamp(ts, UTC):%Y-%m-%dT%H:%M:%SZ}"


def to_epoch(value: object) -> int:
    """Unix seconds from an int, a numeric string, an ISO-8601 string or an aware datetime, between
    the epoch and the end of year 9999."""
    seconds = _seconds(value)
    if not 0 <= seconds <= LATEST:
        raise WindowError(f"{value!r} is not a time between 1970-01-01 and 9999-12-31 (as Unix seconds or ISO-8601)")
    return seconds


def _seconds(value: object) -> int:
    if isinstance(value, bool):
        raise WindowError(f"{value!r} is not a time")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise WindowError(f"{value!r} has no time zone; give UTC times")
        return int(value.timestamp())
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text) if len(text) <= 20 else LATEST + 1  # out of range, without int() of a huge text
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise WindowError(f"{value!r} is not an ISO-8601 time such as 2025-10-05T00:00:00Z") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp())
    raise WindowError(f"{value!r} is not a time")


def windows_ending_in(start: int, end: int, time_frame: int) -> list[Window]:
    """Aligned windows whose end lies in ``(start, end]``: the windows a data interval closes."""
    first_end = align_down(start, time_frame) + time_frame
    return [Window(e - time_frame, e) for e in range(first_end, end + 1, time_frame)]


def default_cron(time_frame: int) -> str:
    """A cron schedule whose runs each close a whole number of windows of ``time_frame``."""
    period = math.lcm(time_frame, 60)
    if 3600 % period == 0:
        minutes = period // 60
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *" if minutes < 60 else "0 * * * *"
    if period % 3600 == 0 and DAY % period == 0:
        hours = period // 3600
        return f"0 */{hours} * * *" if hours < 24 else "0 0 * * *"
    return "0 0 * * *"


def backfill_start(now: int, backfill_days: int, initial_date: date | None) -> int:
    """Where a cluster's first run starts its history.

    INITIAL_BACKFILL_DATE wins over BACKFILL_DAYS but reaches back at most
    :data:`MAX_INITIAL_BACKFILL_DAYS` (the official exporter's limit); a date further back is
    clamped rather than refused, so a DAG deployed long after that date keeps working.
    """
    if initial_date is not None:
        wanted = int(datetime(initial_date.year, initial_date.month, initial_date.day, tzinfo=UTC).timestamp())
        return max(wanted, now - MAX_INITIAL_BACKFILL_DAYS * DAY)
    return now - backfill_days * DAY


def _too_many(count: int, limit: int, time_frame: int) -> str:
    return (
        f"the run covers {count} windows, more than Airflow's max_map_length ({limit}): split the range "
        f"into pieces of at most {limit * time_frame // 3600} hours, or raise [core] max_map_length"
    )


@dataclass(frozen=True)
class Plan:
    """What one run exports, and when it may start (once its newest window has settled)."""

    windows: list[Window]
    wait_until: int
    deferred: int = 0
    data_begins: int | None = None  # where the cluster's data begins in Prometheus, when asked

    def tasks(self) -> list[dict[str, int]]:
        """The export task's arguments per window (the plan task's return value)."""
        begins = {} if self.data_begins is None else {"data_begins": self.data_begins}
        return [w.as_dict() | begins for w in self.windows]


def explicit_windows(
    start: int, end: int, *, now: int, time_frame: int, limit: int, oldest: int | None
) -> list[Window]:
    """Every window overlapping a manual range, which must be in the past, kept by Prometheus
    (``oldest``) and fit ``limit`` (Airflow's max_map_length), else :class:`WindowError`."""
    if end <= start:
        raise WindowError(f"end {end} must be after start {start}")
    if end > now:
        raise WindowError(f"end {iso(end)} is in the future: a window can only be exported once it has closed")
    if oldest is not None and start < oldest:
        raise WindowError(
            f"start {iso(start)} is older than what Prometheus keeps (its retention reaches back to "
            f"{iso(oldest)}): the export would write empty files; start at {iso(align_up(oldest, time_frame))} "
            "or later"
        )
    count = (align_up(end, time_frame) - align_down(start, time_frame)) // time_frame
    if count > limit:  # said before a window is built: a range can hold billions
        raise WindowError(_too_many(count, limit, time_frame))
    return windows_covering(start, end, time_frame)


def plan_run(
    *,
    now: int,
    time_frame: int,
    settle: int,
    limit: int,
    interval: tuple[int, int] | None = None,
    explicit: tuple[int, int] | None = None,
    repairs: Iterable[Window] = (),
    oldest: int | None = None,
) -> Plan:
    """Decide the windows of one run.

    - ``explicit`` (manual params ``start``/``end``): every window overlapping the range; it must
      be in the past and fit ``limit`` (Airflow's max_map_length), else :class:`WindowError`.
    - ``interval`` (a scheduled or backfill run's data interval): the windows it closes.
    - neither: the newest window that has closed and settled.
    - ``repairs`` (windows missing in S3: history and gaps) add older windows; they never push
      the run past ``limit``: the oldest are left to later runs (``deferred``).
    - ``oldest``: the oldest time Prometheus still keeps (its retention). An explicit range that
      starts before it is refused; history and repairs are cut to windows after it.
    """
    if explicit is not None:
        main = explicit_windows(*explicit, now=now, time_frame=time_frame, limit=limit, oldest=oldest)
    elif interval is not None:
        main = [w for w in windows_ending_in(*interval, time_frame) if w.end <= now]
    else:
        last_end = closed_before(now, settle, time_frame)
        main = [Window(last_end - time_frame, last_end)]
    if len(main) > limit:
        raise WindowError(_too_many(len(main), limit, time_frame))
    first = min((w.start for w in main), default=now)
    extra = merge(w for w in repairs if w.start < first)
    if oldest is not None:
        extra = [w for w in extra if w.start >= oldest]
    room = limit - len(main)
    deferred = max(0, len(extra) - room)
    chosen = merge(main, extra[deferred:])
    wait_until = max((w.end for w in chosen), default=now) + settle
    return Plan(chosen, wait_until, deferred)
