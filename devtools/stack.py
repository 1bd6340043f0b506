"""A throwaway Airflow (SQLite) wired to a loopback Prometheus and S3, for e2e tests and the demo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from devtools.history import wait_http
from devtools.s3server import S3Server

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def airflow_version() -> str:
    """The installed Airflow's version, e.g. ``3.0.6``."""
    from importlib.metadata import version

    return version("apache-airflow")


def airflow_major() -> int:
    return int(airflow_version().split(".")[0])


@dataclass
class AirflowStack:
    """``AIRFLOW_HOME`` in a temporary folder, a clusters file, and connections in the environment."""

    clusters: Sequence[Mapping[str, Any]]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    connections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    home: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="finout-airflow-")))
    # Running components by log name, and the arguments they were started with.
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    commands: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def one_cluster(
        cls,
        cluster: Mapping[str, Any],
        prometheus_port: int,
        s3: S3Server,
        bucket: str,
        prefix: str = "k8s/prometheus",
        extra_env: Mapping[str, str] | None = None,
    ) -> AirflowStack:
        """A stack exporting one cluster from the Prometheus on 127.0.0.1:``prometheus_port`` to
        ``bucket`` (created here) on the loopback S3 server, without query delays."""
        s3.client().create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
        return cls(
            clusters=[{"HOSTNAME": "127.0.0.1", "PORT": prometheus_port, **cluster}],
            defaults={"S3_BUCKET": bucket, "S3_PREFIX": prefix, "QUERY_DELAY_SECONDS": 0},
            connections={"aws_default": s3.connection()},
            extra_env=dict(extra_env or {}),
        )

    def __post_init__(self) -> None:
        self.clusters_file.write_text(
            yaml.safe_dump({"defaults": dict(self.defaults), "clusters": list(self.clusters)})
        )

    @property
    def clusters_file(self) -> Path:
        return self.home / "clusters.yaml"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
        env |= {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # The scheduler, DAG processor, API server and CLI share one SQLite file: wait for its
            # write lock (sqlite3's default is 5 s, too short on a loaded 2-core machine).
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home}/airflow.db?timeout=60",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor" if airflow_major() >= 3 else "SequentialExecutor",
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "FINOUT_CLUSTERS_FILE": str(self.clusters_file),
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        for conn_id, conn in self.connections.items():
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(dict(conn))
        env |= dict(self.extra_env)
        return env

    def airflow(
        self, *args: str, timeout: float = 600, check: bool = True, retries_when_locked: int = 0
    ) -> subprocess.CompletedProcess[str]:
        """Run an ``airflow`` CLI command in this stack's environment (see :meth:`run`)."""
        command = [str(BIN / "airflow"), *args]
        return self.run(command, timeout=timeout, check=check, retries_when_locked=retries_when_locked)

    def run(
        self, command: Sequence[str], timeout: float = 600, check: bool = True, retries_when_locked: int = 0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in this stack's environment.

        ``retries_when_locked``: SQLite lets one process write at a time and refuses, at once, a
        transaction whose snapshot another process has written past ("database is locked"); such a
        command is rolled back, so a single-transaction command can simply be run again.
        """
        for attempt in range(retries_when_locked + 1):
            result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)
            locked = result.returncode != 0 and "database is locked" in result.stdout + result.stderr
            if not locked or attempt == retries_when_locked:
                break
            time.sleep(2)
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result

    def migrate(self) -> None:
        self.airflow("db", "migrate")

    def dags_test(self, dag_id: str, logical_date: str) -> subprocess.CompletedProcess[str]:
        """``airflow dags test``. On Airflow 3.0 the DAG is first stored as a DAG processor stores it
        (``dags reserialize``): 3.0's ``dags test`` does not register the DAG's assets, so a task with
        an outlet fails ("inactive assets") in a database that never saw the DAG parsed."""
        if airflow_version().startswith("3.0."):
            self.airflow("dags", "reserialize")
        return self.airflow("dags", "test", dag_id, logical_date)

    def start(self, *args: str, log_name: str) -> subprocess.Popen[bytes]:
        """Start an Airflow component in the background. Only loopback listeners: pass
        ``--skip-serve-logs`` to the scheduler and ``--host 127.0.0.1`` to the api-server."""
        log = (self.home / f"{log_name}.log").open("ab")  # a restart appends to the same log
        process = subprocess.Popen(
            [str(BIN / "airflow"), *args], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes[log_name] = process
        self.commands[log_name] = args
        return process

    def start_airflow3(self, port: int) -> str:
        """API server (on 127.0.0.1:``port``), DAG processor and scheduler of Airflow 3; returns the
        API server's URL once it is healthy. The stack's ``extra_env`` needs :func:`api_server_env`."""
        self.start("api-server", "--port", str(port), "--host", "127.0.0.1", log_name="api-server")
        self.start("dag-processor", log_name="dag-processor")
        self.start("scheduler", "--skip-serve-logs", log_name="scheduler")
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/api/v2/monitor/health", timeout=120)
        return base

    def start_celery_workers(self, count: int, concurrency: int) -> None:
        """``count`` Celery workers (logs ``worker-1``, ...) of ``concurrency`` slots each."""
        for number in range(1, count + 1):
            self.start("celery", "worker", "--skip-serve-logs", "--concurrency", str(concurrency),
                       "--celery-hostname", f"worker{number}@%h", log_name=f"worker-{number}")  # fmt: skip

    def stop(self, *names: str) -> None:
        """Stop the named components (default: all): SIGTERM to their process groups, SIGKILL after 20 s."""
        chosen = {n: p for n, p in self.processes.items() if not names or n in names}
        for process in chosen.values():
            if process.poll() is None:
                try:
                    os.killpg(process.pid, 15)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + 20
        for name, process in chosen.items():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
            del self.processes[name]

    @contextmanager
    def paused(self, *names: str) -> Iterator[None]:
        """Stop components while the block runs, then start them again with the same arguments."""
        self.stop(*names)
        try:
            yield
        finally:
            for name in names:
                self.start(*self.commands[name], log_name=name)

    def logs(self, tail: int = 3000, match: str = "") -> str:
        """The end of every log under ``AIRFLOW_HOME`` (components, DAG processor, tasks) whose path
        holds ``match`` (e.g. ``dag_id=...``), for a failing test to print."""
        parts = []
        for path in sorted(p for p in self.home.rglob("*.log") if match in str(p)):
            text = path.read_text(errors="replace")
            parts.append(f"==> {path.relative_to(self.home)} <==\n{text[-tail:]}")
        return "\n".join(parts)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)


class Api:
    """Airflow 3's REST API (``/api/v2``) of a stack whose API server lets every caller act as admin."""

    def __init__(self, base: str) -> None:
        self.base = base

    def get(self, path: str, **params: Any) -> Any:
        response = requests.get(f"{self.base}/api/v2{path}", params=params, timeout=30)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        # A write the API server's SQLite refused ("database is locked") is rolled back: send it again.
        for _ in range(5):
            response = requests.post(f"{self.base}/api/v2{path}", json=body, timeout=30)
            if response.status_code < 500:
                break
            time.sleep(2)
        response.raise_for_status()
        return response.json()

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        response = requests.patch(f"{self.base}/api/v2{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def has_dag(self, dag_id: str) -> bool:
        """Whether the DAG processor has stored ``dag_id`` yet."""
        return requests.get(f"{self.base}/api/v2/dags/{dag_id}", timeout=30).ok

    def runs(self, dag_id: str, run_type: str | None = None) -> list[dict[str, Any]]:
        """The DAG's runs (the API's page limit is 100), of ``run_type`` when given."""
        runs = self.get(f"/dags/{dag_id}/dagRuns", limit=100)["dag_runs"]
        return [r for r in runs if run_type is None or r["run_type"] == run_type]

    def tis(self, state: str) -> list[dict[str, Any]]:
        """Task instances of every DAG in ``state``."""
        return list(self.get("/dags/~/dagRuns/~/taskInstances", state=state, limit=100)["task_instances"])

    @staticmethod
    def finished(runs: list[dict[str, Any]]) -> bool:
        """Whether every run succeeded (and there is one); a failed run fails the test at once."""
        failed = [r for r in runs if r["state"] == "failed"]
        assert not failed, f"runs failed: {failed}"
        return bool(runs) and all(r["state"] == "success" for r in runs)


def api_server_env(port: int) -> dict[str, str]:
    """Settings of an Airflow 3 stack whose API server listens on 127.0.0.1:``port`` and lets
    every caller act as admin (loopback only)."""
    return {
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
    }


@contextmanager
def serving(stack: AirflowStack, servers: Iterable[Any] = ()) -> Iterator[None]:
    """A test fixture's block against ``stack``: the stack's logs printed if the block fails; the
    stack and ``servers`` (anything with ``stop()``: Prometheus, Redis, Postgres...) stopped at the
    end. ``servers`` is read then, so a list the block appends to is stopped whole."""
    try:
        yield
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.cleanup()
        for server in servers:
            server.stop()


def wait_for(stack: AirflowStack, what: str, check: Callable[[], Any], timeout: float = 300, every: float = 2) -> Any:
    """Poll ``check`` until it returns something true; on timeout fail with the stack's logs."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}\n{stack.logs()}")
        time.sleep(every)
