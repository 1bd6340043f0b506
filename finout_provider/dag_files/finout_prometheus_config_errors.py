"""Reports invalid entries of the Finout clusters file as an Airflow DAG import error.

Valid clusters get their DAGs from ``finout_prometheus.py``; this file defines no dag, builds
none, and only raises when some entry is wrong, naming each cluster, key and fix.
"""

from __future__ import annotations

from pathlib import Path

from finout_provider.dag_factory import FinoutConfigError, config_errors, error_report, load

_clusters = load(dag_folder=str(Path(__file__).parent))
_errors = config_errors(_clusters)
if _errors:
    raise FinoutConfigError(error_report(_errors, _clusters.path))
