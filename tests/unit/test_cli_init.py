"""`finout-provider init` into a DAG folder a fresh Airflow has not created yet."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

from finout_provider.cli import main


def test_init_creates_a_missing_folder_and_writes_files_readable_by_another_user(tmp_path: Path) -> None:
    folder = tmp_path / "airflow" / "dags"
    out, err = io.StringIO(), io.StringIO()
    previous = os.umask(0o022)
    try:
        assert main(["init", str(folder)], out, err) == 0, err.getvalue()
    finally:
        os.umask(previous)
    assert f"created the DAG folder {folder}" in err.getvalue()
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["clusters.yaml", "finout_prometheus.py", "finout_prometheus_config_errors.py"]
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert main(["init", str(folder)], out, err) == 2  # never overwrites without --force
    (tmp_path / "file").write_text("x")
    assert main(["init", str(tmp_path / "file")], out, err) == 2 and "is not a folder" in err.getvalue()
