"""A cluster's small state between runs (split hints, incomplete-window flags) as JSON objects in
Airflow Variables, best effort: where no Variable store answers (a plain process, a test), reads
give an empty object and writes say why they did not happen."""

from __future__ import annotations

import json
from typing import Any


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
