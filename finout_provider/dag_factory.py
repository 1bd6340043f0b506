"""Build one DAG per cluster from the clusters file.

    plan_windows -> [preflight] -> export_window[one mapped instance per window] -> validate_export
        -> check_freshness, retention_cleanup

Every task gets the cluster's one :class:`~finout_provider.target.S3Target` and
:class:`~finout_provider.catalogue.ExportSpec`, built once from its entry of the clusters file.
plan_windows has no upstream: Airflow 2's BackfillJob expands a mapped task only when its mapping
source was scheduled at the run's start (a source queued later is tracked under a stale key and
the run deadlocks). Preflight follows the plan, so it judges the windows the run exports.

With MODE ``kubernetes_pod`` the export is the official image run by KubernetesPodOperator;
planning, validation and retention still run in Airflow.
"""

from __future__ import annotations

import functools
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from finout_provider.checks.status import freshness_limit
from finout_provider.compat import DAG, Asset, BaseOperator, Param, mask_secret
from finout_provider.config import exporter_env
from finout_provider.config.clusters import (
    DAG_ID_PREFIX,
    ClusterConfig,
    ClustersFile,
    ConfigError,
    default_path,
    load_file,
)
from finout_provider.connections import export_connection
from finout_provider.operators.freshness import FinoutFreshnessOperator
from finout_provider.operators.plan import PlanWindowsOperator
from finout_provider.operators.preflight import PrometheusPreflightOperator
from finout_provider.operators.retention import FinoutRetentionOperator
from finout_provider.plan.windows import SETTLE_SECONDS, default_cron
from finout_provider.sensors.export import FinoutExportSensor
from finout_provider.transfers.prometheus_to_s3 import PrometheusToS3Operator

log = logging.getLogger(__name__)

START_DATE = datetime(2024, 1, 1, tzinfo=UTC)


class FinoutConfigError(Exception):
    """Raised by the error-report DAG file so Airflow shows bad cluster entries as import errors."""


def _timetable(config: ClusterConfig) -> Any:
    """An interval timetable (runs cover a data interval), never a zero-width cron trigger."""
    try:
        return _cron_timetable(config.schedule or default_cron(config.time_frame))
    except Exception as err:  # noqa: BLE001 - AirflowTimetableInvalid moved between versions
        raise ConfigError(
            config.cluster_name, "SCHEDULE", f"{config.schedule!r} is not a cron expression ({err}); e.g. '0 * * * *'"
        ) from None


@functools.lru_cache(maxsize=256)
def _cron_timetable(expression: str) -> Any:
    """One validated timetable per cron expression, shared by the clusters that use it (it holds
    no state; building one parses and describes the expression, which costs a fleet seconds)."""
    from airflow.timetables.interval import CronDataIntervalTimetable

    timetable = CronDataIntervalTimetable(expression, timezone="UTC")
    timetable.validate()
    return timetable


def register_inline_connection(config: ClusterConfig) -> None:
    """Expose HOSTNAME/PORT/... of the file as the connection ``finout_prometheus_<cluster>``.

    The connection lives only in this process's environment (``AIRFLOW_CONN_<ID>``), which every
    Airflow component that parses the DAG file (scheduler, worker, triggerer) reads first.
    Credentials written in the file are registered with the secrets masker.
    """
    conn = config.inline_connection()
    if conn is None:
        return
    for secret in config.secrets:
        mask_secret(secret)
    export_connection(config.effective_conn_id, conn)


def export_asset(config: ClusterConfig) -> Asset:
    """The cluster's export folder as an Asset: the export task's outlet, so a downstream DAG can be
    scheduled on ``schedule=[export_asset(...)]`` (or the same URI) and run on fresh data."""
    return Asset(config.target.uri)


def pod_export_task(config: ClusterConfig, dag: DAG) -> BaseOperator:
    """The official exporter image as a KubernetesPodOperator; secrets only as Secret references."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.providers.cncf.kubernetes.secret import Secret

    cluster = config.cluster_name
    secret_name = config.k8s_secret_name or exporter_env.kubernetes_name("finout-prometheus", cluster, 253, dots=True)
    secrets = [Secret("env", name, secret_name, name) for name in exporter_env.SECRETS if config.setting(name)]
    if secrets and not config.k8s_secret_name:
        log.warning(
            "cluster %r: credentials go to the pod from Kubernetes Secret %r (keys %s); create it in the pod's "
            "namespace. Their values in the clusters file are not put into the pod spec.",
            cluster,
            secret_name,
            ", ".join(s.key for s in secrets),
        )
    return KubernetesPodOperator(
        task_id="export_window",
        dag=dag,
        name=exporter_env.kubernetes_name("finout-exporter", cluster, 53),
        image=config.image,
        namespace=config.namespace,
        kubernetes_conn_id=config.kubernetes_conn_id,
        env_vars=exporter_env.pod_env({name: config.setting(name) for name in exporter_env.PLAIN}),
        secrets=secrets,
        labels={
            "app.kubernetes.io/name": "finout-metrics-exporter",
            "finout.io/cluster": exporter_env.kubernetes_label_value(cluster),
        },
        get_logs=True,
        on_finish_action="delete_pod",
        max_active_tis_per_dagrun=1,
        outlets=[export_asset(config)],
    )


def check_buildable(config: ClusterConfig) -> None:
    """Raise :class:`ConfigError` for what only Airflow can judge (the SCHEDULE, the Kubernetes
    provider of MODE kubernetes_pod), without building the DAG."""
    _timetable(config)
    if config.mode == "kubernetes_pod":
        try:
            import airflow.providers.cncf.kubernetes.operators.pod  # noqa: F401
        except ImportError:
            raise ConfigError(
                config.cluster_name,
                "MODE",
                "kubernetes_pod needs the Kubernetes provider: pip install 'airflow-provider-finout[kubernetes]'",
            ) from None


# The trigger form's range. ``format: date-time`` gives the form a picker; the pattern (RFC 3339,
# as the picker writes it) makes the trigger itself (form, REST, CLI) refuse what is not a
# date-time before a run exists: Airflow checks ``format`` only where rfc3339-validator happens to
# be installed, which managed images do not promise. Both or neither, and end after start, are the
# first task's check.
DATE_TIME = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)"
    r"(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
RANGE_PARAMS: dict[str, dict[str, Any]] = {
    "start": {
        "type": ["null", "string"],
        "format": "date-time",
        "pattern": DATE_TIME,
        "title": "Re-export from",
        "description": "First window to re-export, UTC (e.g. 2026-12-01T00:00:00Z). Give both start and end, or "
        "neither for the run's own interval.",
    },
    "end": {
        "type": ["null", "string"],
        "format": "date-time",
        "pattern": DATE_TIME,
        "title": "Re-export until",
        "description": "End of the range, UTC, exclusive: the window starting at end is not exported. Give both "
        "start and end, or neither.",
    },
}


# MODE kubernetes_pod: the official image exports its own window, so a range is refused when the
# run is triggered (JSON Schema: only null); the title, which Airflow's refusal quotes, says why.
POD_PARAMS: dict[str, dict[str, Any]] = {
    name: {
        "type": "null",
        "title": f"{schema['title']}: not with MODE kubernetes_pod (the official image exports its own window)",
        "description": "Leave empty: the official exporter image exports its own window, not a range. Use MODE "
        "airflow to re-export a range.",
    }
    for name, schema in RANGE_PARAMS.items()
}


def _declare_params(dag: DAG, pod_mode: bool) -> None:
    """The trigger form's fields, declared once the tasks exist.

    A task takes a copy of its DAG's params when it is created, and serializing a copy costs a JSON
    Schema check per param and task: most of the DAG processor's time for a fleet. Tasks need no
    copy: at run time Airflow merges the DAG's params, then the run's conf, into every task's
    ``params`` (``process_params``), and the form and the trigger's validation read the DAG's.
    """
    params = POD_PARAMS if pod_mode else RANGE_PARAMS
    dag.params.update({name: Param(None, **schema) for name, schema in params.items()})


MAX_ACTIVE_RUNS = 8


def _new_dag(config: ClusterConfig) -> DAG:
    return DAG(
        dag_id=config.dag_id,
        description=f"Export {config.cluster_name}'s Prometheus metrics to s3://{config.s3_bucket}/{config.s3_prefix}/",
        schedule=_timetable(config),
        start_date=START_DATE,
        catchup=False,
        # Room for manual ranges beside the schedule: a range triggered from the UI starts at once.
        # Scheduled runs do not pile up: one that starts while another runs exports its own
        # interval only (PlanWindowsOperator), and each run exports one window at a time.
        max_active_runs=MAX_ACTIVE_RUNS,
        default_args={
            "owner": "finout",
            # Every task: one lost with its worker runs again. A verdict (preflight, validation,
            # freshness) raises AirflowFailException or AirflowSensorTimeout, which are not retried.
            "retries": 3,  # after [core] default_task_retry_delay, doubling each time
            "retry_exponential_backoff": True,
            "max_retry_delay": timedelta(minutes=30),
        },
        tags=["finout", "prometheus", config.cluster_name],
        doc_md=(
            f"Exports cluster **{config.cluster_name}** to `s3://{config.s3_bucket}/{config.s3_prefix}/"
            f"{config.cluster_name}/` every {config.time_frame}s window ({len(config.metrics)} metrics). "
            "Trigger with params `start`/`end` to re-export a range."
        ),
    )


def _prometheus_args(config: ClusterConfig, *, asks: bool = True) -> dict[str, Any]:
    """What plan, preflight and export share: where the cluster's data lands and how to ask for it
    (``asks`` False: the task never asks Prometheus, as the plan of the official image's pod)."""
    return {
        "target": config.target,
        "spec": config.spec,
        "prometheus_conn_id": config.effective_conn_id if asks else "",
        "cluster_label": config.cluster_label,
    }


def _export_task(config: ClusterConfig, dag: DAG, plan: BaseOperator) -> Any:
    """One mapped export instance per planned window (or the official image's pod)."""
    if config.mode == "kubernetes_pod":
        export = pod_export_task(config, dag)
        plan >> export
        return export
    return PrometheusToS3Operator.partial(
        task_id="export_window",
        dag=dag,
        **_prometheus_args(config),
        queries_batch_size=config.queries_batch_size,
        query_delay_seconds=config.query_delay_seconds,
        split=config.split == "auto",
        min_split_seconds=config.min_split_seconds,
        map_index_template="{{ window_label }}",
        max_active_tis_per_dagrun=1,
        outlets=[export_asset(config)],
    ).expand_kwargs(plan.output)


def _checks(config: ClusterConfig, dag: DAG, plan: BaseOperator, export: Any) -> list[BaseOperator]:
    """Validation of what the run wrote, then freshness and retention."""
    pod_mode = config.mode == "kubernetes_pod"
    target, spec = config.target, config.spec
    validate = FinoutExportSensor(
        task_id="validate_export",
        dag=dag,
        target=target,
        spec=spec,
        windows=plan.output,
        exports=None if pod_mode else export.output,
        poke_interval=30,
        timeout=900,
        mode="reschedule",
        trigger_rule="none_failed",
        on_incomplete=config.incomplete,
    )
    freshness = FinoutFreshnessOperator(
        task_id="check_freshness",
        dag=dag,
        target=target,
        spec=spec,
        limit_seconds=freshness_limit(config, SETTLE_SECONDS),
        settle_seconds=SETTLE_SECONDS,
        trigger_rule="all_done",  # staleness matters most when the exports failed
    )
    retention = FinoutRetentionOperator(
        task_id="retention_cleanup",
        dag=dag,
        target=target,
        retention_days=config.retention_days,
        trigger_rule="none_failed",
    )
    validate >> [freshness, retention]
    return [validate, freshness, retention]


def build_dag(config: ClusterConfig) -> DAG:
    """The DAG ``finout_prometheus_<CLUSTER_NAME>`` of one cluster."""
    register_inline_connection(config)
    for warning in config.warnings:
        log.warning(warning)
    dag = _new_dag(config)
    pod_mode = config.mode == "kubernetes_pod"
    plan = PlanWindowsOperator(
        task_id="plan_windows",
        dag=dag,
        **_prometheus_args(config, asks=not pod_mode),
        backfill_days=config.backfill_days,
        initial_backfill_date=config.initial_backfill_date,
        settle_seconds=SETTLE_SECONDS,
        repair=not pod_mode,  # the official image keeps its own state
        ranges=not pod_mode,
    )
    export = _export_task(config, dag, plan)
    if config.preflight is not False and not pod_mode:
        (
            plan
            >> PrometheusPreflightOperator(
                task_id="preflight",
                dag=dag,
                **_prometheus_args(config),
                windows=plan.output,
                settle_seconds=SETTLE_SECONDS,
                first_run_only=config.preflight is None,
            )
            >> export
        )
    export >> _checks(config, dag, plan, export)[0]
    _declare_params(dag, pod_mode)
    return dag


def load(
    path: str | os.PathLike[str] | None = None, dag_folder: str | None = None, only: str | None = None
) -> ClustersFile:
    return load_file(path or default_path(dag_folder), only=only)


def dags_of_file(dag_folder: str) -> dict[str, DAG]:
    """What the DAG file registers: every cluster's DAG for the DAG processor; for a task start
    (Airflow names its DAG), that DAG alone, from that cluster's entry alone."""
    wanted = requested_dag_id()
    cluster = wanted.removeprefix(DAG_ID_PREFIX) if wanted and wanted.startswith(DAG_ID_PREFIX) else None
    clusters = load(dag_folder=dag_folder, only=cluster)
    if cluster is not None and not clusters.clusters:  # not one of ours after all: build them all
        clusters = load(dag_folder=dag_folder)
    return build_dags(clusters, only=wanted)


def requested_dag_id() -> str | None:
    """The DAG Airflow parses the file for (a task starting), ``None`` when it wants them all."""
    from finout_provider.compat import get_parsing_context

    return get_parsing_context().dag_id


def build_dags(clusters: ClustersFile, only: str | None = None) -> dict[str, DAG]:
    """DAGs of every valid cluster, or (``only``, a DAG id of this file) of that one alone, as a
    task start needs: its cost then does not grow with the number of clusters."""
    chosen = [c for c in clusters.clusters if only in (None, c.dag_id)] or clusters.clusters
    dags: dict[str, DAG] = {}
    for config in chosen:
        try:
            check_buildable(config)
        except ConfigError:
            continue  # reported by config_errors()
        dags[config.dag_id] = build_dag(config)
    return dags


def config_errors(clusters: ClustersFile) -> list[ConfigError]:
    """Every bad entry of the file, without building any DAG (a bad entry hides no other)."""
    errors = list(clusters.errors)
    for config in clusters.clusters:
        try:
            check_buildable(config)
        except ConfigError as err:
            errors.append(err)
    return errors


def error_report(errors: list[ConfigError], path: Path | None) -> str:
    clusters = len({err.cluster for err in errors})
    lines = [f"{clusters} cluster entries in {path or 'the clusters file'} are invalid; their DAGs are not created:"]
    lines += [f"- {err}" for err in errors]
    return "\n".join(lines)
