"""Postgres and Redis as the project's own processes: own data folder, free loopback port, started
and stopped here (never a system service). Debian's `postgresql` and `redis-server` packages
provide the binaries; as root, Postgres runs as the `postgres` user, which refuses root.

    python -m devtools.services        # start both, print the settings, wait for Ctrl-C
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from devtools.history import free_port, stop_process


def _pg_bin() -> Path:
    """Debian's PostgreSQL binaries (the newest major version installed), or ``$PG_BIN``."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()


def _as_postgres(command: list[str]) -> list[str]:
    """Postgres refuses to run as root: run its tools as the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@dataclass
class PostgresServer:
    """A throwaway Postgres cluster on 127.0.0.1 with a database and user ``airflow`` (trust auth,
    loopback only)."""

    port: int = 0
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="finout-pg-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://airflow@127.0.0.1:{self.port}/airflow"

    @property
    def result_backend(self) -> str:
        return f"db+postgresql://airflow@127.0.0.1:{self.port}/airflow"

    def start(self) -> PostgresServer:
        self.port = self.port or free_port()
        data, sockets = self.folder / "data", self.folder / "sockets"
        sockets.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
            shutil.chown(sockets, "postgres")
        subprocess.run(
            _as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
            check=True,
            capture_output=True,
        )
        options = f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={sockets}"
        options += " -c max_connections=200 -c fsync=off -c synchronous_commit=off"
        log = (self.folder / "postgres.log").open("ab")
        self.process = subprocess.Popen(
            _as_postgres([str(PG_BIN / "postgres"), "-D", str(data), *options.split()]), stdout=log, stderr=log
        )
        deadline = time.monotonic() + 60
        while subprocess.run([str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                             capture_output=True, check=False).returncode:  # fmt: skip
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError((self.folder / "postgres.log").read_text()[-2000:])
            time.sleep(0.3)
        self.sql("CREATE USER airflow")
        self.sql("CREATE DATABASE airflow OWNER airflow")
        return self

    def sql(self, statement: str, database: str = "postgres", user: str = "postgres") -> str:
        result = subprocess.run(
            [str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", user, "-d", database,
             "-tAc", statement],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        return result.stdout.strip()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()  # the postmaster's "smart" shutdown; it owns its children
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class RedisServer:
    """A throwaway Redis on 127.0.0.1, no persistence."""

    port: int = 0
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="finout-redis-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.port = self.port or free_port()
        log = (self.folder / "redis.log").open("ab")
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder),
             "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
            stdout=log, stderr=log,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while (
            subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True, check=False).stdout.strip()
            != b"PONG"
        ):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError((self.folder / "redis.log").read_text()[-2000:])
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.folder, ignore_errors=True)


def celery_settings(postgres: PostgresServer, redis: RedisServer) -> dict[str, str]:
    """Airflow's settings for CeleryExecutor on these servers, as docker-compose.yaml sets them
    (tests/unit/test_compose.py keeps the two in step)."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url,
        "AIRFLOW__CELERY__RESULT_BACKEND": postgres.result_backend,
        "AIRFLOW__CELERY__BROKER_URL": redis.url,
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "true",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
        # The scheduler's health check listens on loopback only here.
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "true",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
    }


def main() -> None:
    postgres, redis = PostgresServer().start(), RedisServer().start()
    try:
        for name, value in celery_settings(postgres, redis).items():
            print(f"export {name}='{value}'")
        print("# Ctrl-C stops both", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        redis.stop()
        postgres.stop()


if __name__ == "__main__":
    main()
