"""An S3 endpoint on loopback: moto's server in a child process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from devtools.history import free_port, stop_process, wait_http


@dataclass
class S3Server:
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        self.port = self.port or free_port()
        # The environment's own moto (the version pyproject.toml holds), not one elsewhere on PATH.
        own = Path(sys.executable).parent / "moto_server"
        binary = str(own) if own.exists() else shutil.which("moto_server") or str(own)
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        self.process = subprocess.Popen(
            [binary, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        wait_http(f"{self.url}/moto-api/")
        return self

    def client(self) -> object:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def connection(self) -> dict[str, object]:
        """An Airflow AWS connection (JSON form) pointing at this endpoint."""
        return {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": self.url, "region_name": "us-east-1"},
        }

    def stop(self) -> None:
        stop_process(self.process)
