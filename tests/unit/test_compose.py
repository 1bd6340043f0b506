"""docker-compose.yaml checked statically (no Docker engine here): shape, pinning, wiring."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.generate import main as generate
from finout_provider.config.clusters import load_file
from tests.conftest import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
AIRFLOW = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
)


def test_services_follow_the_official_airflow_3_file() -> None:
    assert set(AIRFLOW) | {"postgres", "redis", "prometheus", "minio"} <= set(SERVICES)
    common = COMPOSE["x-airflow-common"]
    assert common["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert SERVICES["airflow-worker"]["command"] == "celery worker"
    assert SERVICES["airflow-apiserver"]["command"] == "api-server"
    assert SERVICES["airflow-dag-processor"]["command"] == "dag-processor"
    for name in AIRFLOW:
        assert SERVICES[name]["image"] == common["image"]  # every Airflow component runs the same image


def test_every_image_is_pinned() -> None:
    for name, service in SERVICES.items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and re.search(r"\d", tag), (name, image)
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.M)
    assert base and re.fullmatch(r"apache/airflow:3\.\d+\.\d+-python3\.\d+", base.group(1))
    assert "pip install" in dockerfile and "finout_provider" in dockerfile


def test_mounted_paths_exist_and_the_clusters_file_is_valid() -> None:
    env = COMPOSE["x-airflow-common"]["environment"]
    mounts = {}
    for service in SERVICES.values():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
                mounts[target] = ROOT / source
    assert mounts["/opt/airflow/dags"] == ROOT / "finout_provider" / "dag_files"
    clusters_path = mounts[env["FINOUT_CLUSTERS_FILE"]]
    clusters = load_file(clusters_path)
    assert not clusters.errors and clusters.clusters
    connections = {
        key.removeprefix("AIRFLOW_CONN_").lower(): json.loads(value)
        for key, value in env.items()
        if key.startswith("AIRFLOW_CONN_")
    }
    for cluster in clusters.clusters:
        prometheus = connections[cluster.effective_conn_id]
        assert prometheus["conn_type"] == "prometheus" and prometheus["host"] in SERVICES
        aws = connections[cluster.aws_conn_id]
        assert aws["conn_type"] == "aws"
        assert aws["extra"]["endpoint_url"].startswith("http://minio:")
        assert f"local/{cluster.s3_bucket}" in " ".join(SERVICES["minio-init"]["entrypoint"])
        assert aws["login"] == SERVICES["minio"]["environment"]["MINIO_ROOT_USER"]


def test_history_generator_used_by_compose_runs(tmp_path: Path) -> None:
    command = SERVICES["history-generate"]["entrypoint"]
    assert command[:3] == ["python", "-m", "devtools.generate"]
    args = command[3:]
    out = tmp_path / "history.om"
    args[args.index("--out") + 1] = str(out)
    assert generate(args) == 0
    text = out.read_text()
    assert text.endswith("# EOF\n") and 'cluster="local-trial"' in text


@pytest.mark.parametrize("name", ["airflow-apiserver", "airflow-scheduler", "prometheus", "postgres", "redis"])
def test_long_running_services_have_healthchecks(name: str) -> None:
    assert "healthcheck" in SERVICES[name]


def test_the_celery_stack_of_the_tests_is_configured_as_compose_is() -> None:
    """tests/e2e/test_celery.py runs Airflow with devtools.services.celery_settings: the same
    settings as the compose file's, with loopback addresses."""
    from devtools.services import PostgresServer, RedisServer, celery_settings

    compose = {k: str(v) for k, v in COMPOSE["x-airflow-common"]["environment"].items() if k.startswith("AIRFLOW__")}
    ours = celery_settings(PostgresServer(port=5432), RedisServer(port=6379))
    # Deployment choices of the compose file that a test stack leaves to Airflow's defaults.
    local = {"AIRFLOW__CORE__AUTH_MANAGER", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL"}
    assert set(compose) - local <= set(ours)
    for key in set(compose) - local:
        if "://" in compose[key]:
            assert ours[key].split("://")[0] == compose[key].split("://")[0], key  # same driver and scheme
            assert ours[key].rsplit("/", 1)[1] == compose[key].rsplit("/", 1)[1], key  # same database
        else:
            assert ours[key].lower() == compose[key].lower(), key
