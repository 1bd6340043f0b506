"""The validation trigger serializes to a literal classpath and explicit arguments, and back."""

from __future__ import annotations

import importlib

from finout_provider.target import S3Target
from finout_provider.triggers.export import FinoutExportTrigger


def test_serialize_round_trip() -> None:
    target = S3Target("prod-eu", "finout-metrics", "k8s/prometheus", "aws_finout", "arn:aws:iam::1:role/r", "0012")
    trigger = FinoutExportTrigger(
        target=target, starts=[7200, 3600], metrics=["cpu_requests"], time_frame=3600, poke_interval=5.0, timeout=60.0
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "finout_provider.triggers.export.FinoutExportTrigger"
    module, name = classpath.rsplit(".", 1)
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    assert (again.starts, again.target, again.timeout) == ([7200, 3600], target, 60.0)
    assert kwargs["target"]["role_external_id"] == "0012"  # the whole target, explicit
