"""What every task of a cluster shares: its S3 target, declared once, and the one failure policy
(:mod:`finout_provider.failures`), inherited so a task added later cannot forget it."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from finout_provider.compat import BaseOperator, BaseSensorOperator
from finout_provider.failures import failing_fast

if TYPE_CHECKING:
    from finout_provider.hooks.s3 import FinoutS3Hook
    from finout_provider.prometheus.client import PrometheusClient
    from finout_provider.s3.folder import ClusterFolder
    from finout_provider.target import S3Target

# The methods Airflow calls to run a task: each runs under the failure policy.
POLICY_METHODS = ("execute", "execute_complete", "poke")


def run_type(context: Any) -> str:
    """``scheduled``, ``manual``, ``backfill``, ... of the task's DAG run ("" outside a run)."""
    run = context.get("dag_run")
    kind = getattr(run, "run_type", "") if run is not None else ""
    return str(getattr(kind, "value", kind))


def is_scheduled(context: Any) -> bool:
    """Whether the task runs in a scheduled run (or outside a run: an operator executed by hand),
    where the schedule's promises (freshness, INCOMPLETE: fail) are checked."""
    return run_type(context) in ("", "scheduled")


def target_fields(*fields: str) -> tuple[str, ...]:
    """``template_fields`` of a cluster's task: its target's (rendered in place) and ``fields``."""
    return ("target", *fields)


class FinoutBaseOperator(BaseOperator):
    """
    Base of a cluster's tasks: where its export lives in S3, and the failure policy.

    :param target: the cluster's S3 target (:class:`~finout_provider.target.S3Target`); its fields
        are templated.
    """

    template_fields: Sequence[str] = target_fields()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in POLICY_METHODS:
            if name in cls.__dict__:
                setattr(cls, name, failing_fast(cls.__dict__[name]))

    def __init__(self, *, target: S3Target, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target

    @cached_property
    def s3_hook(self) -> FinoutS3Hook:
        """The target's S3 hook (its templated fields as rendered)."""
        return self.target.hook()

    @property
    def cluster_folder(self) -> ClusterFolder:
        """The cluster's folder in S3, read through :attr:`s3_hook`."""
        return self.target.folder(self.s3_hook.store)


def prometheus_fields(*fields: str) -> tuple[str, ...]:
    """``template_fields`` of a task that also reads the cluster's Prometheus."""
    return target_fields("prometheus_conn_id", "cluster_label", *fields)


class FinoutPrometheusOperator(FinoutBaseOperator):
    """
    Base of a cluster's tasks that read its Prometheus (the arguments of :class:`FinoutBaseOperator`,
    and these, shared as ``AwsBaseOperator`` shares the AWS connection's).

    :param prometheus_conn_id: connection of type ``prometheus``. (templated)
    :param cluster_label: CLUSTER_LABEL, the label naming the cluster in a shared Prometheus;
        queries are then narrowed to ``<label>="<cluster>"``. (templated)
    """

    template_fields: Sequence[str] = prometheus_fields()

    def __init__(
        self, *, prometheus_conn_id: str = "prometheus_default", cluster_label: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.prometheus_conn_id = prometheus_conn_id
        self.cluster_label = cluster_label

    @property
    def pool_size(self) -> int:
        """HTTP connections kept to the server: one per query in flight."""
        return 10

    @cached_property
    def prometheus(self) -> PrometheusClient:
        """The connection's Prometheus client."""
        from finout_provider.hooks.prometheus import PrometheusHook

        return PrometheusHook(self.prometheus_conn_id, pool_size=self.pool_size).get_conn()


class FinoutBaseSensor(FinoutBaseOperator, BaseSensorOperator):
    """A sensor of a cluster's S3 target (the arguments of :class:`FinoutBaseOperator`)."""
