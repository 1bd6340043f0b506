"""Trigger behind the deferrable validation sensor."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from finout_provider.s3_target import S3TargetMixin


class FinoutExportTrigger(S3TargetMixin, BaseTrigger):
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
        self.cluster_name = cluster_name
        self.s3_bucket = s3_bucket
        self.s3_prefix = s3_prefix
        self.starts = list(starts)
        self.metrics = list(metrics)
        self.time_frame = time_frame
        self.aws_conn_id = aws_conn_id
        self.role_arn = role_arn
        self.role_external_id = role_external_id
        self.poke_interval = poke_interval
        self.timeout = timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "finout_provider.triggers.export.FinoutExportTrigger",
            {
                "cluster_name": self.cluster_name,
                "s3_bucket": self.s3_bucket,
                "s3_prefix": self.s3_prefix,
                "starts": self.starts,
                "metrics": self.metrics,
                "time_frame": self.time_frame,
                "aws_conn_id": self.aws_conn_id,
                "role_arn": self.role_arn,
                "role_external_id": self.role_external_id,
                "poke_interval": self.poke_interval,
                "timeout": self.timeout,
            },
        )

    def _problems(self) -> list[str]:
        return self.cluster_folder.problems(self.metrics, self.starts, self.time_frame)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        deadline = time.monotonic() + self.timeout
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
            await asyncio.sleep(self.poke_interval)
