"""One failure policy for every task of the generated DAG: a fault a retry cannot fix (a missing
bucket, denied access, a refused role, a Prometheus answering 401, an unknown connection, a bad
setting, a rejected query) fails the task in one try, naming the cluster and what to change; a task
the fault does not touch completes.

Each task is the one the DAG file builds (``dag.get_task``, a mapped instance unmapped with a
window as the plan hands it over), executed as a run executes it; the whole run is also tried with
``dag.test()`` for the faults a first run meets most."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from devtools.faults import FaultServer, Seen, reply
from devtools.history import HistorySpec, PrometheusServer
from finout_provider.s3.folder import PROVEN
from finout_provider.s3.layout import build_key
from tests.conftest import BUCKET, PREFIX, set_connection
from tests.dag.conftest import ClusterDag, on, scheduled_run, task_of

pytestmark = [pytest.mark.dag, pytest.mark.af2]
H = 3600
METRICS = ["cpu_requests", "pod_info"]
ROLE = "arn:aws:iam::123456789012:role/finout-exporter"
UNAUTHORIZED = b'{"status":"error","errorType":"unauthorized","error":"authentication required"}'


@dataclass(frozen=True)
class Fault:
    """A permanent fault: the clusters file entry that meets it, whether S3 refuses under IAM, the
    tasks it reaches, and what the failure must say."""

    entry: dict[str, Any]
    cause: str
    reaches: frozenset[str]
    iam: str = ""  # "": no IAM enforcement; "none": a user with no policy; "s3": a user allowed S3 only
    defaults: dict[str, Any] = field(default_factory=dict)


S3_TASKS = frozenset({"plan_windows", "preflight", "export_window", "validate_export", "validate_export (triggerer)",
                      "check_freshness", "retention_cleanup"})  # fmt: skip
PROMETHEUS_TASKS = frozenset({"plan_windows", "preflight", "export_window"})
QUERY_TASKS = frozenset({"preflight", "export_window"})
FAULTS = {
    "missing bucket": Fault({}, "bucket 'no-such-bucket' does not exist", S3_TASKS, defaults={"S3_BUCKET": "no-such-bucket"}),
    "access denied": Fault({"AWS_CONN_ID": "aws_exporter"}, "was denied (AccessDenied)", S3_TASKS, iam="none"),
    "refused role": Fault({"AWS_CONN_ID": "aws_exporter", "ROLE_ARN": ROLE, "ROLE_EXTERNAL_ID": "wrong-id"},
                          "assuming ROLE_ARN was refused (AccessDenied)", S3_TASKS, iam="s3"),
    "prometheus 401": Fault({"PORT": "unauthorized"}, "HTTP 401", PROMETHEUS_TASKS),
    "unknown connection": Fault({"PROMETHEUS_CONN_ID": "prometheus_nowhere"}, "prometheus_nowhere", PROMETHEUS_TASKS),
    "bad setting": Fault({"PROMETHEUS_CONN_ID": "prometheus_ftp"}, "scheme 'ftp' must be http or https",
                         PROMETHEUS_TASKS),
    "rejected query": Fault({"EXTRA_QUERIES": [{"name": "broken", "query": "sum(kube_node_info"}]}, "bad_data",
                            QUERY_TASKS),
}  # fmt: skip
TASKS = sorted(S3_TASKS)


@pytest.fixture(scope="module")
def unauthorized() -> Iterator[FaultServer]:
    """A Prometheus behind a proxy that wants credentials it was not given."""

    def refuse(seen: Seen, handler: Any) -> None:
        reply(handler, 401, UNAUTHORIZED, {"WWW-Authenticate": "Basic"})

    with FaultServer(refuse) as server:
        yield server


def entry_for(fault: Fault, name: str, prometheus: PrometheusServer, unauthorized: FaultServer) -> dict[str, Any]:
    """The cluster's entry as a user would type it, meeting ``fault``."""
    entry: dict[str, Any] = {"CLUSTER_NAME": name, "METRICS": METRICS, "CLUSTER_LABEL": "cluster", **fault.entry}
    if entry.get("PORT") == "unauthorized":
        entry["PORT"] = unauthorized.port
    if "PROMETHEUS_CONN_ID" not in entry:
        entry = on(prometheus, **entry) | {k: v for k, v in entry.items() if k == "PORT"}
    set_connection("prometheus_ftp", conn_type="prometheus", host="127.0.0.1", port=prometheus.port, schema="ftp")
    return entry


def iam_user(policy: str) -> None:
    """An IAM user for AWS_CONN_ID ``aws_exporter``: no policy, or S3 only (no sts:AssumeRole)."""
    import boto3

    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_user(UserName="finout-exporter")
    if policy == "s3":
        document = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="finout-exporter", PolicyName="s3", PolicyDocument=json.dumps(document))
    key = iam.create_access_key(UserName="finout-exporter")["AccessKey"]
    set_connection("aws_exporter", conn_type="aws", login=key["AccessKeyId"], password=key["SecretAccessKey"],
                   extra={"region_name": "us-east-1"})  # fmt: skip


def under(fault: Fault, run: Callable[[], Any]) -> Any:
    """``run()`` with moto refusing what IAM would refuse (for the faults that need it)."""
    if not fault.iam:
        return run()
    from moto.core import set_initial_no_auth_action_count

    return set_initial_no_auth_action_count(0)(run)()


def populate(s3: Any, cluster: str, metrics: list[str], start: int) -> None:
    """Whole objects of the window, as an earlier export left them (for the checks that read S3)."""
    body = gzip.compress(b'{"status":"success","data":{"resultType":"matrix","result":[]}}', mtime=0)
    for metric in metrics:
        s3.put_object(Bucket=BUCKET, Key=build_key(PREFIX, cluster, metric, start), Body=body, Metadata=PROVEN)


def execute(task_id: str, task: Any, start: int) -> Any:
    """Run the task as Airflow does: ``execute``; for the triggerer's part of a deferred
    validation, the sensor's trigger until its event, then ``execute_complete``."""
    context = scheduled_run(start)
    if not task_id.endswith("(triggerer)"):
        return task.execute(context)
    trigger = task.trigger()

    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("the trigger ended without an event")

    return task.execute_complete(context, asyncio.run(first_event()))


@pytest.mark.parametrize("task_id", TASKS)
@pytest.mark.parametrize("fault_name", sorted(FAULTS))
def test_each_task_under_each_permanent_fault(
    fault_name: str, task_id: str, cluster_dag: Callable[..., ClusterDag], s3: Any, prometheus: PrometheusServer,
    unauthorized: FaultServer, history: HistorySpec,
) -> None:  # fmt: skip
    from finout_provider.compat import AirflowFailException

    fault, cluster = FAULTS[fault_name], "prod-eu"
    start = history.end - H
    if fault.iam:
        iam_user(fault.iam)
    dag = cluster_dag(entry_for(fault, cluster, prometheus, unauthorized), **fault.defaults).dag
    task = task_of(dag, task_id, start)
    if task_id.startswith(("validate_export", "check_freshness")) and "S3_BUCKET" not in fault.defaults:
        populate(s3, cluster, task.spec.names, start)
    began = time.monotonic()
    if task_id not in fault.reaches:
        under(fault, lambda: execute(task_id, task, start))  # the fault does not touch it: it completes
        return
    with pytest.raises(AirflowFailException) as failed:
        under(fault, lambda: execute(task_id, task, start))
    message = str(failed.value)
    assert f"cluster {cluster!r}" in message and fault.cause in message, message
    assert "a retry cannot fix this" in message, message
    assert time.monotonic() - began < 30, "a permanent fault is not waited for"


@pytest.mark.timeout(300)  # a fault taken for transient keeps the run waiting for its retries (300 s)
@pytest.mark.parametrize("fault_name", ["missing bucket", "refused role", "prometheus 401"])
def test_a_first_run_meeting_a_permanent_fault_fails_in_one_try_within_a_minute(
    fault_name: str, cluster_dag: Callable[..., ClusterDag], s3: Any, prometheus: PrometheusServer,
    unauthorized: FaultServer, history: HistorySpec, capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Through ``dag.test()`` with the retries the DAG passes (3, backoff from 5 minutes): the run
    fails in one try of the task that meets the fault, naming it."""
    fault = FAULTS[fault_name]
    cluster = "first-" + fault_name.replace(" ", "-")
    if fault.iam:
        iam_user(fault.iam)
    dag = cluster_dag(entry_for(fault, cluster, prometheus, unauthorized), **fault.defaults)
    outcome = under(fault, lambda: dag.test(capfd, history.end))
    assert outcome.state == "failed", (outcome.state, outcome.states(), outcome.output[-3000:])
    states = outcome.states()
    failed = [ti for (task_id, _), ti in outcome.tis.items() if states[task_id] == {"failed"}]
    assert failed and all(ti.try_number == 1 for ti in failed), (states, [ti.try_number for ti in failed])
    assert not [t for t, s in states.items() if s & {"up_for_retry", "up_for_reschedule"}], states
    assert outcome.seconds < 60, outcome.seconds
    assert fault.cause in outcome.output and f"cluster {cluster!r}" in outcome.output, outcome.output[-5000:]


@pytest.mark.parametrize("fault_name", ["missing bucket", "refused role", "prometheus 401", "unknown connection",
                                        "bad setting"])  # fmt: skip
def test_the_cli_says_the_same_faults_in_one_line(
    fault_name: str, cluster_dag: Callable[..., ClusterDag], s3: Any, prometheus: PrometheusServer,
    unauthorized: FaultServer,
) -> None:  # fmt: skip
    """``finout-provider plan`` reads S3 and Prometheus as the plan task does: the same faults are
    one line naming the cluster and what to change, exit code 2, no traceback."""
    from tests.integration.test_cli import cli

    fault = FAULTS[fault_name]
    if fault.iam:
        iam_user(fault.iam)
    cluster_dag(entry_for(fault, "prod-eu", prometheus, unauthorized), **fault.defaults)
    code, _, err = under(fault, lambda: cli("plan", "--cluster", "prod-eu"))
    assert code == 2 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("finout-provider plan (cluster prod-eu): ") and fault.cause in last, err
