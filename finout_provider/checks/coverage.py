"""Coverage of a cluster's export: which windows are complete, partial, missing or corrupt in S3.

A grid of days (rows) by windows of the day (columns), built from the states
:meth:`~finout_provider.s3.folder.ClusterFolder.states` gives each expected key; shown as a
text table, or drawn as a PNG heatmap (needs Pillow: ``pip install airflow-provider-finout[coverage]``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from finout_provider.plan.windows import DAY, Window
from finout_provider.s3.layout import parse_key

COMPLETE, PARTIAL, MISSING, CORRUPT, EMPTY = "complete", "partial", "missing", "corrupt", "empty"
BEFORE = "before data"  # not exported: before the cluster's data begins in Prometheus
SYMBOL = {COMPLETE: "#", PARTIAL: "+", MISSING: ".", CORRUPT: "X", EMPTY: "o", BEFORE: "-"}
COLOUR = {
    COMPLETE: (46, 160, 67),
    EMPTY: (150, 180, 220),  # every metric exported with no series (before the data begins)
    BEFORE: (205, 215, 230),
    PARTIAL: (230, 160, 30),
    MISSING: (215, 50, 40),
    CORRUPT: (40, 40, 40),
    None: (235, 235, 235),  # outside the requested range
}
# PNG geometry (pixels): cells of CELL x CELL with a GAP, after a LEFT x TOP margin for labels.
CELL, GAP, LEFT, TOP, BOTTOM = 18, 2, 90, 28, 34


@dataclass
class Coverage:
    """Per window: its state and the metrics that are not ``ok`` (with their state)."""

    cluster: str
    time_frame: int
    windows: dict[int, str] = field(default_factory=dict)
    problems: dict[int, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def from_states(
        cls, cluster: str, prefix: str, time_frame: int, windows: Sequence[Window], states: Mapping[str, str]
    ) -> Coverage:
        coverage = cls(cluster, time_frame)
        per_window: dict[int, dict[str, str]] = {w.start: {} for w in windows}
        for key, state in states.items():
            parsed = parse_key(key, prefix, cluster)
            if parsed is not None and parsed.start in per_window:
                per_window[parsed.start][parsed.metric] = state
        for start, metrics in sorted(per_window.items()):
            bad = {m: s for m, s in sorted(metrics.items()) if s != "ok"}
            if not bad:
                coverage.windows[start] = COMPLETE
            elif any(s != "missing" for s in bad.values()):
                coverage.windows[start] = CORRUPT
            elif len(bad) == len(metrics):
                coverage.windows[start] = MISSING
            else:
                coverage.windows[start] = PARTIAL
            if bad:
                coverage.problems[start] = bad
        return coverage

    def mark_empty(self, starts: list[int]) -> None:
        """Windows exported whole with no series at all: not complete (nothing for Finout)."""
        for start in starts:
            if self.windows.get(start) == COMPLETE:
                self.windows[start] = EMPTY
                self.problems[start] = {"every metric": "no series"}

    def mark_before(self, begins: int | None) -> list[int]:
        """Missing windows that end before ``begins``, where the cluster's data begins: nothing was
        measured then, so nothing is owed. The window holding ``begins`` and all after it keep their
        state, so a failed first window still shows. Returns the windows marked."""
        marked = [
            s
            for s, state in self.windows.items()
            if begins is not None and state == MISSING and s + self.time_frame <= begins
        ]
        for start in marked:
            self.windows[start] = BEFORE
            self.problems.pop(start, None)
        return sorted(marked)

    @property
    def slots(self) -> int:
        return DAY // self.time_frame

    def days(self) -> list[int]:
        return sorted({start - start % DAY for start in self.windows})

    def counts(self) -> dict[str, int]:
        return {state: sum(s == state for s in self.windows.values()) for state in SYMBOL}

    def render(self, details: int = 20) -> str:
        """A days x windows table (``#`` complete, ``+`` partial, ``.`` missing, ``X`` corrupt)."""
        lines = [f"Coverage of cluster {self.cluster!r}, {len(self.windows)} windows of {self.time_frame}s"]
        legend = "  ".join(f"{SYMBOL[s]} {s}" for s in SYMBOL)
        header = "".join(str((slot * self.time_frame // 3600) % 10) for slot in range(self.slots))
        lines += [legend, "", f"{'day (UTC)':<10}  {header}"]
        for day in self.days():
            row = "".join(
                SYMBOL[self.windows[s]] if (s := day + i * self.time_frame) in self.windows else " "
                for i in range(self.slots)
            )
            lines.append(f"{time.strftime('%Y-%m-%d', time.gmtime(day))}  {row}")
        counts = self.counts()
        lines += ["", ", ".join(f"{n} {state}" for state, n in counts.items())]
        for start in sorted(self.problems)[:details]:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start))
            what = ", ".join(f"{m} {s}" for m, s in self.problems[start].items())
            lines.append(f"  {stamp}: {what}")
        if len(self.problems) > details:
            lines.append(f"  ... and {len(self.problems) - details} more windows")
        return "\n".join(lines)

    # --- picture -----------------------------------------------------------------------------

    @staticmethod
    def cell_box(row: int, column: int) -> tuple[int, int, int, int]:
        """Pixel box (left, top, right, bottom) of a cell in :meth:`write_png`'s picture."""
        left, top = LEFT + column * (CELL + GAP), TOP + row * (CELL + GAP)
        return left, top, left + CELL - 1, top + CELL - 1

    def write_png(self, path: str | Path) -> Path:
        """Draw the grid as a heatmap: one row per day, one cell per window, a legend below."""
        try:
            from PIL import Image, ImageDraw
        except ImportError:  # pragma: no cover - depends on the extra
            raise RuntimeError("--png needs Pillow: pip install 'airflow-provider-finout[coverage]'") from None
        days = self.days()
        width = LEFT + self.slots * (CELL + GAP) + 10
        height = TOP + max(1, len(days)) * (CELL + GAP) + BOTTOM
        image = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(image)
        draw.text((4, 6), f"{self.cluster}: windows by day (UTC)", fill="black")
        step = max(1, self.slots // 12)
        for slot in range(0, self.slots, step):
            hour = slot * self.time_frame // 3600
            draw.text((self.cell_box(0, slot)[0], TOP - 12), f"{hour:02d}", fill="black")
        for row, day in enumerate(days):
            draw.text((4, self.cell_box(row, 0)[1] + 3), time.strftime("%Y-%m-%d", time.gmtime(day)), fill="black")
            for slot in range(self.slots):
                state = self.windows.get(day + slot * self.time_frame)
                draw.rectangle(self.cell_box(row, slot), fill=COLOUR[state])
        _legend(draw, height)
        out = Path(path)
        image.save(out, format="PNG")
        return out


def _legend(draw: Any, height: int) -> None:
    """The colours' legend along the bottom of a picture ``height`` pixels high."""
    x, y = 4, height - BOTTOM + 10
    for state in SYMBOL:
        draw.rectangle((x, y, x + 10, y + 10), fill=COLOUR[state])
        draw.text((x + 14, y), state, fill="black")
        x += 14 + 8 * len(state) + 12


# --- the fleet: clusters (rows) x windows (columns) -----------------------------------------------

FLEET_LEFT = 160


def _fleet_grid(rows: Sequence[Coverage]) -> tuple[list[int], list[list[str | None]]]:
    """Every window start of the rows (columns, in time order) and each row's state per column."""
    starts = sorted({start for row in rows for start in row.windows})
    return starts, [[row.windows.get(start) for start in starts] for row in rows]


def fleet_cell_box(row: int, column: int) -> tuple[int, int, int, int]:
    """Pixel box of a cell in :func:`write_fleet_png`'s picture."""
    left, top = FLEET_LEFT + column * (CELL + GAP), TOP + row * (CELL + GAP)
    return left, top, left + CELL - 1, top + CELL - 1


def write_fleet_png(rows: Sequence[Coverage], path: str | Path) -> Path:
    """The fleet as a heatmap: one row per cluster, one cell per window, the coverage colours."""
    try:
        from PIL import Image, ImageDraw
    except ImportError:  # pragma: no cover - depends on the extra
        raise RuntimeError("--png needs Pillow: pip install 'airflow-provider-finout[coverage]'") from None
    starts, grid = _fleet_grid(rows)
    image = Image.new(
        "RGB",
        (FLEET_LEFT + max(1, len(starts)) * (CELL + GAP) + 10, TOP + max(1, len(rows)) * (CELL + GAP) + BOTTOM),
        "white",
    )
    draw = ImageDraw.Draw(image)
    draw.text((4, 6), "clusters x windows (UTC)", fill="black")
    for column in range(0, len(starts), max(1, len(starts) // 12)):
        draw.text(
            (fleet_cell_box(0, column)[0], TOP - 12), time.strftime("%d %H", time.gmtime(starts[column])), fill="black"
        )
    for number, (row, states) in enumerate(zip(rows, grid, strict=True)):
        draw.text((4, fleet_cell_box(number, 0)[1] + 3), row.cluster[:24], fill="black")
        for column, state in enumerate(states):
            draw.rectangle(fleet_cell_box(number, column), fill=COLOUR[state])
    _legend(draw, image.height)
    out = Path(path)
    image.save(out, format="PNG")
    return out


FLEET_STYLE = (
    "body{font-family:sans-serif}table.grid{border-collapse:separate;border-spacing:2px}"
    f"table.grid td{{width:{CELL}px;height:{CELL}px}}table.grid th{{font-size:11px;text-align:left}}"
)


def fleet_grid_html(rows: Sequence[Coverage]) -> str:
    """Clusters x windows as an HTML table in the coverage colours, with its legend."""
    starts, grid = _fleet_grid(rows)

    def colour(state: str | None) -> str:
        red, green, blue = COLOUR[state]
        return f"#{red:02x}{green:02x}{blue:02x}"

    head = "".join(f"<th>{time.strftime('%d %H:%M', time.gmtime(s))}</th>" for s in starts)
    body = "".join(
        f"<tr><th>{escape(row.cluster)}</th>"
        + "".join(f'<td class="{s or "none"}" style="background:{colour(s)}" title="{s or "-"}"></td>' for s in states)
        + "</tr>"
        for row, states in zip(rows, grid, strict=True)
    )
    legend = "".join(f'<span style="background:{colour(s)}">&nbsp;&nbsp;&nbsp;</span> {s} ' for s in SYMBOL)
    return f'<table class="grid"><tr><th>cluster</th>{head}</tr>{body}</table><p>{legend}</p>'


def html_page(title: str, body: str) -> str:
    """One self-contained page (inline styles, no script, no external file)."""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{FLEET_STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )


def fleet_html(rows: Sequence[Coverage], title: str = "Finout export: the fleet") -> str:
    """The grid as one self-contained HTML page."""
    return html_page(title, fleet_grid_html(rows))
