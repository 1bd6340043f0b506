"""Trigger behind the deferrable validation sensor."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from finout_provider.layout import normalize_prefix


class FinoutExportTrigger(BaseTrigger):
    """Polls S3 until every expected object of the windows is a non-empty gzip, or times out."""

    def __init__(
        self,
        *,
        cluster_name: str,
        s3_bucket: str,
        s3_prefix: str,
        starts: list[int],
        metrics: list[str],
        time_frame: int,
        aws_conn_id: str | None,
        role_arn: str | None,
        role_external_id: str | None,
        poke_interval: float,
        timeout: float,
    ) -> None:
        super().__init__()
        self.kwargs: dict[str, Any] = {
            "cluster_name": cluster_name,
            "s3_bucket": s3_bucket,
            "s3_prefix": s3_prefix,
            "starts": list(starts),
            "metrics": list(metrics),
            "time_frame": time_frame,
            "aws_conn_id": aws_conn_id,
            "role_arn": role_arn,
            "role_external_id": role_external_id,
            "poke_interval": poke_interval,
            "timeout": timeout,
        }

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__name__}", dict(self.kwargs)

    def _problems(self) -> list[str]:
        from finout_provider.hooks.s3 import FinoutS3Hook

        k = self.kwargs
        hook = FinoutS3Hook(k["aws_conn_id"], role_arn=k["role_arn"], role_external_id=k["role_external_id"])
        return hook.export_problems(
            k["s3_bucket"],
            normalize_prefix(k["s3_prefix"]),
            k["cluster_name"],
            k["metrics"],
            k["starts"],
            k["time_frame"],
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        deadline = time.monotonic() + self.kwargs["timeout"]
        while True:
            try:
                problems = await asyncio.to_thread(self._problems)
            except Exception as err:  # noqa: BLE001 - reported to the task
                yield TriggerEvent({"status": "error", "message": str(err)})
                return
            if not problems:
                yield TriggerEvent({"status": "success"})
                return
            if time.monotonic() >= deadline:
                yield TriggerEvent({"status": "timeout", "problems": problems})
                return
            await asyncio.sleep(self.kwargs["poke_interval"])
