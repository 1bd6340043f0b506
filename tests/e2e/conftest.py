"""End-to-end fixtures: an S3 endpoint on loopback (moto server) beside the real Prometheus."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.s3server import S3Server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3_server: S3Server) -> Iterator[str]:
    import uuid

    name = f"finout-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name)  # type: ignore[attr-defined]
    yield name
