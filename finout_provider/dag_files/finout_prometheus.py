"""Finout export DAGs: one airflow DAG per cluster of the clusters file.

The file is ``$FINOUT_CLUSTERS_FILE`` or ``clusters.yaml`` beside this file. Invalid cluster
entries are reported as import errors of ``finout_prometheus_config_errors.py``; the valid clusters
get their DAGs here regardless. When a task starts, only its own DAG is built.
"""

from __future__ import annotations

from pathlib import Path

from finout_provider.dag_factory import dags_of_file

globals().update(dags_of_file(str(Path(__file__).parent)))
