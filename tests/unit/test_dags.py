"""The DAG files over a clusters file with valid and invalid entries (Airflow's own DagBag)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.stack import airflow_major
from finout_provider.dag_factory import MAX_ACTIVE_RUNS
from tests.conftest import ROOT

pytestmark = pytest.mark.af2

GOOD = [
    {"CLUSTER_NAME": "prod-eu", "HOSTNAME": "prometheus-server.monitoring.svc.cluster.local", "PORT": 9090},
    {"CLUSTER_NAME": "staging.us_1", "PROMETHEUS_CONN_ID": "prometheus_staging", "TIME_FRAME": 900},
    {"CLUSTER_NAME": "central", "CLUSTER_LABEL": "cluster", "SCHEDULE": "*/30 * * * *"},
]
BAD = {
    "bad/name": ({"CLUSTER_NAME": "bad/name"}, "CLUSTER_NAME"),
    "badframe": ({"CLUSTER_NAME": "badframe", "TIME_FRAME": 7000}, "TIME_FRAME"),
    "typo": ({"CLUSTER_NAME": "typo", "HOSTNAM": "x"}, "did you mean HOSTNAME"),
    "badbucket": ({"CLUSTER_NAME": "badbucket", "S3_BUCKET": "s3://b/k8s"}, "S3_BUCKET"),
    "badcron": ({"CLUSTER_NAME": "badcron", "SCHEDULE": "every hour"}, "every hour"),
    "badport": ({"CLUSTER_NAME": "badport", "PORT": 0}, "PORT"),
}


def dagbag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clusters: list[dict[str, Any]], folder: Path = ROOT / "dags"
) -> Any:
    from airflow.models import DagBag

    path = tmp_path / "clusters.yaml"
    path.write_text(
        yaml.safe_dump(
            {"defaults": {"S3_BUCKET": "finout-metrics", "S3_PREFIX": "k8s/prometheus"}, "clusters": clusters}
        )
    )
    monkeypatch.setenv("FINOUT_CLUSTERS_FILE", str(path))
    return (
        DagBag(dag_folder=str(folder), include_examples=False)
        if _has_examples_arg()
        else DagBag(dag_folder=str(folder))
    )


def _has_examples_arg() -> bool:
    import inspect

    from airflow.models import DagBag

    return "include_examples" in inspect.signature(DagBag.__init__).parameters


def test_valid_clusters_load_and_each_invalid_entry_gives_one_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bag = dagbag(tmp_path, monkeypatch, [GOOD[0], *(entry for entry, _ in BAD.values()), GOOD[1], GOOD[2]])
    assert sorted(bag.dags) == sorted(f"finout_prometheus_{c['CLUSTER_NAME']}" for c in GOOD)
    for dag in bag.dags.values():
        graph = {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks}
        # plan_windows is a root: Airflow 2's BackfillJob expands export_window only then. Preflight
        # follows it, to judge the windows the run exports.
        assert graph == {
            "preflight": ["export_window"],
            "plan_windows": ["export_window", "preflight", "validate_export"],
            "export_window": ["validate_export"],
            "validate_export": ["check_freshness", "retention_cleanup"],
            "check_freshness": [],
            "retention_cleanup": [],
        }
        # A task lost with its worker (killed, evicted) runs again; verdicts fail without retries.
        assert {t.task_id: t.retries for t in dag.tasks} == dict.fromkeys(graph, 3)
        assert dag.max_active_runs == MAX_ACTIVE_RUNS > 1 and not dag.catchup  # manual ranges start at once
        assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
        assert set(dag.params) >= {"start", "end"}
        export = dag.get_task("export_window")
        assert export.max_active_tis_per_dagrun == 1 and not export.max_active_tis_per_dag
        assert [a.uri for a in export.outlets] == [
            f"s3://finout-metrics/k8s/prometheus/{dag.dag_id.removeprefix('finout_prometheus_')}"
        ]
    assert bag.dags["finout_prometheus_prod-eu"].timetable.summary == "0 * * * *"
    assert bag.dags["finout_prometheus_staging.us_1"].timetable.summary == "*/15 * * * *"

    assert list(bag.import_errors) == [str(ROOT / "dags" / "finout_prometheus_config_errors.py")]
    report = next(iter(bag.import_errors.values()))
    lines = [line for line in report.splitlines() if line.startswith("- cluster ")]
    assert len(lines) == len(BAD)
    for name, (_, hint) in BAD.items():
        matching = [line for line in lines if line.startswith(f"- cluster {name!r}")]
        assert len(matching) == 1 and hint in matching[0], (name, lines)


def test_trigger_params_are_the_dags_alone_and_reach_the_plan_from_the_runs_conf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tasks carry no copy of the DAG's params (serializing copies is most of a fleet's parse time);
    the trigger form is the DAG's, and at run time the DAG's params and the run's conf reach every task."""
    try:
        from airflow.sdk.definitions.param import process_params
    except ImportError:  # Airflow 2
        from airflow.models.param import process_params  # type: ignore[no-redef]
    from airflow.serialization import serialized_objects

    serializer = getattr(serialized_objects, "DagSerialization", None) or serialized_objects.SerializedDAG
    dag = dagbag(tmp_path, monkeypatch, [GOOD[0]]).dags["finout_prometheus_prod-eu"]
    serialized = serializer.to_dict(dag)["dag"]
    assert [name for name, _ in serialized["params"]] == ["start", "end"]
    assert "Re-export from" in str(serialized["params"])
    assert [t["__var"]["task_id"] for t in serialized["tasks"] if "params" in t["__var"]] == []

    def run_params(conf: dict[str, str]) -> dict[str, Any]:
        run = conf if airflow_major() >= 3 else type("DagRun", (), {"conf": conf})()  # Airflow 2 takes the run
        return dict(process_params(dag, dag.get_task("plan_windows"), run, suppress_exception=False))

    assert run_params({}) == {"start": None, "end": None}
    conf = {"start": "2025-10-01T00:00:00Z", "end": "2025-10-01T06:00:00Z"}
    assert run_params(conf) == conf


def test_all_valid_gives_no_import_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bag = dagbag(tmp_path, monkeypatch, GOOD)
    assert not bag.import_errors and len(bag.dags) == 3


def test_kubernetes_pod_mode_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bag = dagbag(tmp_path, monkeypatch, [{"CLUSTER_NAME": "pods", "MODE": "kubernetes_pod"}])
    dag = bag.dags["finout_prometheus_pods"]
    assert type(dag.get_task("export_window")).__name__ == "KubernetesPodOperator"
    assert sorted(dag.get_task("validate_export").upstream_task_ids) == ["export_window", "plan_windows"]


def test_preflight_runs_on_first_runs_by_default_every_run_or_never(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clusters = [{**GOOD[0], "PREFLIGHT": True}, GOOD[1], {**GOOD[2], "PREFLIGHT": "no"}]
    bag = dagbag(tmp_path, monkeypatch, clusters)
    every_run = bag.dags["finout_prometheus_prod-eu"].get_task("preflight")
    assert sorted(every_run.downstream_task_ids) == ["export_window"]
    assert every_run.prometheus_conn_id == "finout_prometheus_prod-eu" and not every_run.first_run_only
    assert bag.dags["finout_prometheus_staging.us_1"].get_task("preflight").first_run_only
    assert "preflight" not in bag.dags["finout_prometheus_central"].task_ids


def test_a_task_start_builds_only_its_dag_from_its_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from finout_provider.config import clusters as config

    read: list[str] = []
    original = config.parse_entry
    monkeypatch.setattr(config, "parse_entry", lambda label, *a, **k: read.append(label) or original(label, *a, **k))
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "finout_prometheus_staging.us_1")
    # A task start parses the DAG's own file only.
    bag = dagbag(tmp_path, monkeypatch, [*GOOD, BAD["badport"][0]], ROOT / "dags" / "finout_prometheus.py")
    assert list(bag.dags) == ["finout_prometheus_staging.us_1"]
    assert "staging.us_1" in read and "prod-eu" not in read and "central" not in read


def test_every_task_gets_the_clusters_one_target_and_spec_and_the_serialized_dag_stays_small() -> None:
    """What the clusters file says of a cluster reaches each task as one typed value: the
    catalogue's metrics with what each needs (preflight judges by it), EXPECT_EMPTY, one target, the
    thresholds. The queries stay in the DAG file: the serialized DAG carries none."""
    import json

    from airflow.serialization import serialized_objects

    from finout_provider.config.clusters import parse_document
    from finout_provider.dag_factory import build_dag

    entry = {**GOOD[0], "S3_BUCKET": "finout-metrics", "S3_PREFIX": "k8s", "EXPECT_EMPTY": ["gpu_requests"],
             "COMPLETENESS_MIN_SAMPLES": 0.5, "STEP_SECONDS": 300}  # fmt: skip
    config = parse_document({"clusters": [entry]}).clusters[0]
    dag = build_dag(config)
    export = dag.get_task("export_window").partial_kwargs  # type: ignore[attr-defined]
    targets = [dag.get_task(t).target for t in dag.task_ids if t != "export_window"] + [export["target"]]  # type: ignore[attr-defined]
    assert all(target is config.target for target in targets)
    specs = [dag.get_task(t).spec for t in ("plan_windows", "preflight", "validate_export", "check_freshness")]  # type: ignore[attr-defined]
    assert all(spec is config.spec for spec in [*specs, export["spec"]])
    spec = config.spec
    assert spec.expect_empty == {"gpu_requests"} and spec.thresholds.min_samples == 0.5 and spec.step == 300
    assert next(m for m in spec.metrics if m.name == "cpu_limits").needs  # what preflight judges by
    serializer = getattr(serialized_objects, "DagSerialization", None) or serialized_objects.SerializedDAG
    text = json.dumps(serializer.to_dict(dag))
    assert "kube_pod_info" not in text and len(text) < 10_000, len(text)


def test_the_target_stays_templated() -> None:
    """A task's target is one of its template fields: Airflow renders the target's fields in place."""
    from finout_provider.operators.retention import FinoutRetentionOperator
    from finout_provider.target import S3Target

    task = FinoutRetentionOperator(task_id="r", target=S3Target("{{ params.cluster }}", "finout-metrics", "k8s"))
    task.render_template_fields({"params": {"cluster": "prod-eu"}})  # type: ignore[arg-type]
    assert task.target.cluster == "prod-eu" and "target" in task.template_fields
