"""Trigger behind the deferrable validation sensor."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from finout_provider.failures import explain, is_permanent
from finout_provider.target import S3Target

if TYPE_CHECKING:
    from finout_provider.hooks.s3 import FinoutS3Hook


class FinoutExportTrigger(BaseTrigger):
    """
    Polls S3 until every expected object of the windows is a whole answer, or times out. An error
    reaches the task with whether a retry could fix it (``permanent``), so the task's failure
    policy holds in the triggerer too.

    :param target: the cluster's S3 target (or its fields, as :meth:`serialize` writes them).
    :param starts: the windows' starts.
    :param metrics: the metric names every window holds.
    :param time_frame: TIME_FRAME.
    :param poke_interval: seconds between looks.
    :param timeout: seconds before the trigger gives up (event ``timeout``).
    """

    def __init__(
        self,
        *,
        target: S3Target | dict[str, Any],
        starts: list[int],
        metrics: list[str],
        time_frame: int,
        poke_interval: float,
        timeout: float,
    ) -> None:
        super().__init__()
        self.target = target if isinstance(target, S3Target) else S3Target(**target)
        self.starts = list(starts)
        self.metrics = list(metrics)
        self.time_frame = time_frame
        self.poke_interval = poke_interval
        self.timeout = timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "finout_provider.triggers.export.FinoutExportTrigger",
            {
                "target": dataclasses.asdict(self.target),
                "starts": self.starts,
                "metrics": self.metrics,
                "time_frame": self.time_frame,
                "poke_interval": self.poke_interval,
                "timeout": self.timeout,
            },
        )

    @cached_property
    def s3_hook(self) -> FinoutS3Hook:
        return self.target.hook()

    def _problems(self) -> list[str]:
        return self.target.folder(self.s3_hook.store).problems(self.metrics, self.starts, self.time_frame)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                problems = await asyncio.to_thread(self._problems)
            except Exception as err:  # noqa: BLE001 - reported to the task, with whether a retry can fix it
                yield TriggerEvent({"status": "error", "message": explain(err), "permanent": is_permanent(err)})
                return
            if not problems:
                yield TriggerEvent({"status": "success"})
                return
            if time.monotonic() >= deadline:
                yield TriggerEvent({"status": "timeout", "problems": problems})
                return
            await asyncio.sleep(self.poke_interval)
