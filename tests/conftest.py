"""Shared fixtures: a real Prometheus loaded with generated history, S3 from moto, Airflow on SQLite."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Airflow reads its configuration at import time: point it at a throwaway home first.
_HOME = Path(tempfile.mkdtemp(prefix="finout-airflow-home-"))
atexit.register(shutil.rmtree, _HOME, True)
os.environ.setdefault("AIRFLOW_HOME", str(_HOME))
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_HOME}/airflow.db")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
for _name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
    os.environ[_name] = "testing"

from devtools.history import HistorySpec, PrometheusServer, VictoriaMetricsServer, build_tsdb  # noqa: E402

HOURS = 8
CLUSTERS = ("prod-eu", "staging")
BUCKET = "finout-metrics"
PREFIX = "k8s/prometheus"


@pytest.fixture(scope="session")
def history() -> HistorySpec:
    """Hours of data ending at the newest hour that has closed and settled (the export's 120 s):
    a session starting a minute past an hour would otherwise end its data in a window that
    coverage and status do not count yet."""
    from finout_provider.plan.windows import closed_before

    end = closed_before(int(time.time()), 120, 3600)
    return HistorySpec(clusters=CLUSTERS, start=end - HOURS * 3600, end=end, cluster_label="cluster")


@pytest.fixture(scope="session")
def tsdb(history: HistorySpec, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tsdb(history, tmp_path_factory.mktemp("history"))


@pytest.fixture(scope="session")
def prometheus(tsdb: Path) -> Iterator[PrometheusServer]:
    server = PrometheusServer(tsdb).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def victoria(history: HistorySpec, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetricsServer]:
    """Debian's VictoriaMetrics holding the same history as the session's Prometheus."""
    server = VictoriaMetricsServer(build_tsdb(history, tmp_path_factory.mktemp("vm-history"))).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def limited_victoria(history: HistorySpec, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetricsServer]:
    """VictoriaMetrics refusing queries that select more than 5,000 samples: node-level metrics pass,
    pod-level ones are refused at any range (it counts every sample of the blocks a query reads)."""
    blocks = build_tsdb(history, tmp_path_factory.mktemp("vm-limited"))
    server = VictoriaMetricsServer(blocks, extra_args=["-search.maxSamplesPerQuery=5000"]).start()
    yield server
    server.stop()


BACKENDS = ("prometheus", "victoria-metrics")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> PrometheusServer | VictoriaMetricsServer:
    """Each real backend in turn, holding the session's history."""
    name = "victoria" if request.param == "victoria-metrics" else "prometheus"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


def set_connection(conn_id: str, **fields: object) -> None:
    """Define an Airflow connection through its environment variable (JSON form)."""
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(fields)


@pytest.fixture
def prom_conn(prometheus: PrometheusServer) -> str:
    set_connection("prom_test", conn_type="prometheus", host="127.0.0.1", port=prometheus.port, schema="http")
    return "prom_test"


@pytest.fixture
def s3() -> Iterator[object]:
    """In-process moto S3 with the export bucket."""
    from moto import mock_aws

    with mock_aws():
        import boto3

        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        set_connection("aws_default", conn_type="aws", extra={"region_name": "us-east-1"})
        yield client


@pytest.fixture(scope="session")
def s3_server() -> Iterator[object]:
    """An S3 endpoint on loopback (moto server), for tests that run Airflow in other processes."""
    from devtools.s3server import S3Server

    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3_server: Any) -> str:
    import uuid

    name = f"finout-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name)
    return name


@pytest.fixture(autouse=True)
def variables(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Airflow Variables as a dict the test can read (split hints, incomplete-window flags), new for
    every test: where the session's metadata database is migrated (the DAG tests), Airflow 2 would
    otherwise keep one test's split hints for the next."""
    from finout_provider import compat

    store: dict[str, str] = {}

    class Variable:
        @staticmethod
        def get(key: str, default: str) -> str:
            return store.get(key, default)

        @staticmethod
        def set(key: str, value: str) -> None:
            store[key] = value

    monkeypatch.setattr(compat, "Variable", Variable, raising=False)
    return store
