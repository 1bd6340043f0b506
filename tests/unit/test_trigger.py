"""The validation trigger serializes to a literal classpath and explicit arguments, and back."""

from __future__ import annotations

import importlib

from finout_provider.triggers.export import FinoutExportTrigger


def test_serialize_round_trip() -> None:
    trigger = FinoutExportTrigger(
        cluster_name="prod-eu", s3_bucket="finout-metrics", s3_prefix="k8s/prometheus", starts=[7200, 3600],
        metrics=["cpu_requests"], time_frame=3600, aws_conn_id="aws_finout", role_arn="arn:aws:iam::1:role/r",
        role_external_id="0012", poke_interval=5.0, timeout=60.0,
    )  # fmt: skip
    classpath, kwargs = trigger.serialize()
    assert classpath == "finout_provider.triggers.export.FinoutExportTrigger"
    module, name = classpath.rsplit(".", 1)
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    assert (again.starts, again.role_external_id, again.timeout) == ([7200, 3600], "0012", 60.0)
