"""A cluster's small state between runs, in Airflow Variables: how many pieces each metric needed
(:class:`SplitHints`) and which windows were exported while Prometheus lacked data
(:class:`FlaggedWindows`). JSON objects, best effort: where no Variable store answers (a plain
process, a test), reads give an empty object and writes say why they did not happen."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from finout_provider.plan.windows import DAY


def read_object(key: str) -> dict[str, Any]:
    """The JSON object in Variable ``key`` (empty when absent, unreadable or not an object)."""
    try:
        from finout_provider.compat import Variable

        loaded = json.loads(Variable.get(key, "{}"))
    except Exception:  # noqa: BLE001 - no Variable store here
        return {}
    return loaded if isinstance(loaded, dict) else {}


def write_object(key: str, value: dict[str, Any]) -> str | None:
    """Store ``value`` in Variable ``key``; ``None``, or why it was not stored."""
    try:
        from finout_provider.compat import Variable

        Variable.set(key, json.dumps(value, sort_keys=True))
    except Exception as err:  # noqa: BLE001 - the state saves work, it is not needed
        return str(err)
    return None


class SplitHints:
    """How many pieces each metric of a cluster needed in earlier windows (an Airflow Variable,
    ``finout_split_hints_<cluster>``), so the next window starts split instead of being refused
    first. The window that starts a UTC day tries half the hinted pieces and keeps what it needed,
    so a hint outlives a raised server limit or a shrunk cluster by a day at most, for at most one
    refused query a day per split metric. Best effort: where no Variable can be read or written,
    each window finds out again."""

    def __init__(self, cluster: str) -> None:
        self.key = f"finout_split_hints_{cluster}"
        self._known: dict[str, int] | None = None

    def load(self) -> dict[str, int]:
        if self._known is None:
            try:
                self._known = {str(k): int(v) for k, v in read_object(self.key).items()}
            except (TypeError, ValueError):  # not hints: start over
                self._known = {}
        return self._known

    def pieces(self, metric: str, window_start: int) -> int:
        hinted = self.load().get(metric, 1)
        return max(1, hinted // 2) if window_start % DAY == 0 else hinted

    def save(self, used: Mapping[str, int], window_start: int, log: Any) -> None:
        """Keep the pieces each metric ``used``: more than hinted, or fewer on the day's first window."""
        known = self.load()
        probe = window_start % DAY == 0
        changed = {name: n for name, n in used.items() if n > known.get(name, 1) or (probe and n < known.get(name, 1))}
        if not changed:
            return
        self._known = {name: n for name, n in (known | changed).items() if n > 1}
        failed = write_object(self.key, self._known)
        if failed:
            log.info("split hints not saved (%s); the next window finds out again", failed)
        else:
            log.info("split hints %s: %s", self.key, self._known)


class FlaggedWindows:
    """Windows of a cluster the validation judged incomplete (Prometheus lacked data), kept in an
    Airflow Variable ``finout_incomplete_<cluster>`` (``{window start: [metrics]}``): gap repair
    exports them again until a validation finds them complete. Best effort: where no Variable can
    be read or written, ``status`` still shows them."""

    def __init__(self, cluster: str) -> None:
        self.key = f"finout_incomplete_{cluster}"

    def load(self) -> dict[int, list[str]]:
        try:
            return {int(k): [str(m) for m in v] for k, v in read_object(self.key).items()}
        except (TypeError, ValueError):  # not flags: none known
            return {}

    def update(self, judged: Sequence[int], flagged: dict[int, list[str]], log: Any) -> None:
        """Set the flags of the ``judged`` windows to ``flagged`` (the others are left as they were)."""
        known = {k: v for k, v in self.load().items() if k not in judged} | flagged
        failed = write_object(self.key, {str(k): v for k, v in known.items()})
        if failed:  # status shows the flags whatever happens here
            log.info("incomplete windows not recorded in %s (%s)", self.key, failed)
