"""PrometheusToS3Operator: one time window of one cluster -> one gzip object per metric."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from finout_provider.catalogue import ExportSpec, Metric, render
from finout_provider.checks.completeness import DATA_BEGINS, Measured
from finout_provider.compat import AirflowException, AirflowFailException, Stats
from finout_provider.failures import RETRY_CANNOT_FIX, all_permanent
from finout_provider.links import S3ExportLink
from finout_provider.operators.base import FinoutPrometheusOperator, prometheus_fields
from finout_provider.plan.windows import Window, check_frame, to_epoch
from finout_provider.prometheus.client import BACKOFF_CAP
from finout_provider.prometheus.connection import ANSWER_TIMEOUT, MAX_RETRIES
from finout_provider.prometheus.errors import HeavyQueryError
from finout_provider.s3.folder import PROVEN
from finout_provider.s3.layout import build_key
from finout_provider.s3.store import GzipSpool
from finout_provider.state import SplitHints

if TYPE_CHECKING:
    from finout_provider.compat import Context
    from finout_provider.prometheus.answer import Answer
    from finout_provider.s3.store import S3Store, Upload
    from finout_provider.target import S3Target


def window_deadline(metrics: int, batch_size: int, delay: float) -> timedelta:
    """How long a window may take when every query uses all its attempts to their deadline
    (answer_timeout, max_retries and backoffs at their defaults): the export task's
    ``execution_timeout`` unless one is given, so no worker slot is held past it."""
    batches = -(-metrics // max(batch_size, 1))
    per_query = ANSWER_TIMEOUT * (MAX_RETRIES + 1) + BACKOFF_CAP * MAX_RETRIES
    return timedelta(seconds=batches * (per_query + delay))


@dataclass(frozen=True)
class Exported:
    """One metric's window: what was written, and what was read."""

    upload: Upload
    answer: Answer


class PrometheusToS3Operator(FinoutPrometheusOperator):
    """
    Export one time window of a cluster's Prometheus metrics to S3 in Finout's layout.

    For each metric, ``query_range`` runs from ``window_start`` to ``window_end - step`` (both
    inclusive); its answer is read whole, every byte checked, into a deterministic gzip on disk (a
    cut answer is read again), then written to
    ``<prefix>/<cluster>/end=YYYYMMDD/day=D/metric=NAME/<START>_NAME.json.gz`` in one upload that
    carries its measures. Nothing is written under a metric's key unless Prometheus answered
    ``success`` in full.

    :param target: the cluster's S3 target. (templated)
    :param spec: what the cluster exports: its metrics, STEP_SECONDS and EXPECT_EMPTY. When every
        metric but those of EXPECT_EMPTY came back empty, the return value says so (``all_empty``)
        with preflight's diagnosis, and the validation task fails the run: Finout would receive
        files with nothing in them.
    :param window_start: window start: Unix seconds, ISO-8601 or datetime. (templated)
    :param window_end: window end, exclusive. (templated)
    :param queries_batch_size: queries in flight at once (QUERIES_BATCH_SIZE).
    :param query_delay_seconds: pause between batches (QUERY_DELAY_SECONDS).
    :param compresslevel: gzip level, 1-9.
    :param allow_warnings: write answers that carry ``warnings`` (partial answers) too.
    :param split: when the server refuses a query as too heavy, run it as shorter pieces and join
        them (SPLIT ``auto``); ``False`` fails as the server did (SPLIT ``off``).
    :param min_split_seconds: the shortest piece (MIN_SPLIT_SECONDS; never below one step).
    :param data_begins: where the cluster's data begins in Prometheus (the plan's finding), kept
        with each object so ``status`` tells the windows before it from missing ones.

    Without an ``execution_timeout``, the task gets :func:`window_deadline`'s.
    """

    template_fields: Sequence[str] = prometheus_fields("window_start", "window_end")
    ui_color = "#e6522c"
    operator_extra_links = (S3ExportLink(),)

    def __init__(
        self,
        *,
        spec: ExportSpec,
        window_start: Any,
        window_end: Any,
        queries_batch_size: int = 5,
        query_delay_seconds: float = 5.0,
        compresslevel: int = 6,
        allow_warnings: bool = False,
        split: bool = True,
        min_split_seconds: int = 60,
        data_begins: int | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("execution_timeout") is None:
            kwargs["execution_timeout"] = window_deadline(len(spec.metrics), queries_batch_size, query_delay_seconds)
        super().__init__(**kwargs)
        self.spec = spec
        self.window_start = window_start
        self.window_end = window_end
        self.queries_batch_size = queries_batch_size
        self.query_delay_seconds = query_delay_seconds
        self.compresslevel = compresslevel
        self.allow_warnings = allow_warnings
        self.split = split
        self.min_split_seconds = min_split_seconds
        self.data_begins = data_begins
        self._uploads: list[Upload] = []

    @property
    def pool_size(self) -> int:
        return self.queries_batch_size

    @cached_property
    def split_hints(self) -> SplitHints:
        return SplitHints(self.target.cluster)

    @property
    def window(self) -> Window:
        return Window(to_epoch(self.window_start), to_epoch(self.window_end))

    def execute(self, context: Context) -> dict[str, Any]:
        window, target = self.window, self.target.checked()
        check_frame(window.end - window.start, self.spec.step)
        context["window_label"] = window.label  # type: ignore[typeddict-unknown-key]  # map_index_template
        S3ExportLink.persist(context, self)
        where = f"cluster {target.cluster!r} window {window.label}"
        self.log.info(
            "%s: exporting %d metrics to s3://%s/%s", where, len(self.spec.metrics), target.bucket, target.root
        )
        exported, failures = self._export_all(window, target, where)
        if failures:
            message = (
                f"{where}: {len(failures)} of {len(self.spec.metrics)} metrics failed; nothing was written under "
                "their keys. Fix the cause and clear this task to export the window again.\n"
                + "\n".join(f"metric {name!r}: {err}" for name, err in failures.items())
            )
            if all_permanent(failures.values()):
                raise AirflowFailException(f"{message}\n({RETRY_CANNOT_FIX})")
            raise AirflowException(message)
        return self._summarize(window, exported, where)

    def _export_metric(self, window: Window, target: S3Target, metric: Metric) -> Exported:
        """One metric's window: read Prometheus' whole answer (retried until it is whole), then
        write it to S3 (S3's own retries)."""
        key = build_key(target.prefix, target.cluster, metric.name, window.start)
        start, end = window.query_range(self.spec.step)
        began = time.monotonic()
        with GzipSpool(self.compresslevel) as spool:
            answer = self._read(metric, start, end, spool)
            upload = self.store.put_file(spool, target.bucket, key, PROVEN | self._metadata(answer))
        seconds = time.monotonic() - began
        emit_stats(target.cluster, metric.name, upload, answer, seconds)
        if answer.pieces > 1:
            self.log.warning(
                "metric %s: the server refused the whole window (%s); exported as %d pieces (split depth %d)",
                metric.name,
                answer.refusal,
                answer.pieces,
                answer.depth,
            )
        self.log.info(
            "metric %s: %d series, %d bytes -> %d gzip in %.2fs -> s3://%s/%s",
            metric.name,
            answer.series,
            upload.raw_bytes,
            upload.gzip_bytes,
            seconds,
            target.bucket,
            key,
        )
        return Exported(upload, answer)

    def _read(self, metric: Metric, start: int, end: int, spool: GzipSpool) -> Answer:
        """The metric's whole answer, gzipped into ``spool`` (a refused split named with the fix)."""
        try:
            return self.prometheus.read_range(
                self.render_query(metric.query),
                start,
                end,
                self.spec.step,
                spool.write,
                allow_warnings=self.allow_warnings,
                split=self.split,
                min_split_seconds=self.min_split_seconds,
                pieces=self.split_hints.pieces(metric.name, start),
            )
        except HeavyQueryError as err:
            raise HeavyQueryError(
                f"{err}. Nothing was written for this metric; change the server's limit, export a METRICS subset"
                " or set CLUSTER_LABEL on a shared server",
                err.refusal,
                err.status,
            ) from None

    def _metadata(self, answer: Answer) -> dict[str, str]:
        """What an object carries besides the proof it is whole: its answer's measures, and where the
        cluster's data begins when the plan found it."""
        begins = {} if self.data_begins is None else {DATA_BEGINS: str(int(self.data_begins))}
        return Measured.of(answer.measures).as_metadata() | begins

    @property
    def store(self) -> S3Store:
        return self.s3_hook.store

    def _export_all(
        self, window: Window, target: S3Target, where: str
    ) -> tuple[dict[str, Exported], dict[str, Exception]]:
        """Every metric's export, QUERIES_BATCH_SIZE at a time (batches QUERY_DELAY_SECONDS apart),
        and what failed."""
        exported: dict[str, Exported] = {}
        failures: dict[str, Exception] = {}
        metrics, size = self.spec.metrics, max(1, self.queries_batch_size)
        batches = (
            [metrics[i : i + size] for i in range(0, len(metrics), size)] if self.query_delay_seconds else [metrics]
        )
        self._resolve_before_threads()
        with ThreadPoolExecutor(max_workers=size, thread_name_prefix="finout-export") as pool:
            for number, batch in enumerate(batches):
                if number:
                    time.sleep(self.query_delay_seconds)
                futures = [(m.name, pool.submit(self._export_metric, window, target, m)) for m in batch]
                for name, future in futures:
                    try:
                        exported[name] = future.result()
                    except Exception as err:  # noqa: BLE001 - every metric is reported by the caller
                        failures[name] = err
                        self.log.error("%s metric %r failed: %s", where, name, err)
        self._uploads = [done.upload for done in exported.values()]
        return exported, failures

    def _summarize(self, window: Window, exported: dict[str, Exported], where: str) -> dict[str, Any]:
        """The task's return value; keeps the split hints; says when every required metric was empty."""
        result = summary(self.target.cluster, window, exported)
        self.split_hints.save({name: done.answer.pieces for name, done in exported.items()}, window.start, self.log)
        series = result["series"]
        required = [name for name in series if name not in self.spec.expect_empty]
        if required and not any(series[name] for name in required):
            result |= {"all_empty": True, "diagnosis": self._diagnose(window)}
            self.log.error("%s: every metric came back empty:\n%s", where, "\n".join(result["diagnosis"]))
        return result

    def _resolve_before_threads(self) -> None:
        """Read the connections and split hints now, in the task's own thread: Airflow 3 serves them
        through one channel to the task's supervisor, which the query threads must not share (two
        threads asking at once get each other's answers: "The conn_id ... isn't defined")."""
        self.prometheus.endpoint.session  # noqa: B018 - resolves the Prometheus connection
        self.store.client  # noqa: B018 - resolves the AWS connection (and assumes ROLE_ARN)
        self.split_hints.load()

    def _diagnose(self, window: Window) -> list[str]:
        """Preflight's reasons why the window's answers are empty (at its last step)."""
        from finout_provider.checks.preflight import Preflight

        check = Preflight(self.prometheus.instant, self.target.cluster, self.spec, self.cluster_label)
        try:
            report = check.run(window.query_range(self.spec.step)[1])
        except Exception as err:  # noqa: BLE001 - the diagnosis is a help; the empty answers are the finding
            return [f"(preflight could not run: {err})"]
        return [f"{f.metric}: {f.reason}" for f in report.findings if f.level != "ok" and f.reason]

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: each metric's query on the Prometheus endpoint in, the objects written out."""
        from airflow.providers.common.compat.openlineage.facet import Dataset, DocumentationDatasetFacet
        from airflow.providers.openlineage.extractors import OperatorLineage

        endpoint = self.prometheus.base_url
        inputs = [
            Dataset(
                namespace=endpoint,
                name=m.name,
                facets={"documentation": DocumentationDatasetFacet(description=self.render_query(m.query))},
            )
            for m in self.spec.metrics
        ]
        outputs = [Dataset(namespace=f"s3://{self.target.bucket}", name=u.key) for u in self._uploads]
        return OperatorLineage(inputs=inputs, outputs=outputs)

    def render_query(self, query: str) -> str:
        return render(query, self.cluster_label, self.target.cluster if self.cluster_label else None)


def summary(cluster: str, window: Window, exported: dict[str, Exported]) -> dict[str, Any]:
    """What a window's export wrote, as the task returns it (XCom)."""
    uploads = [done.upload for done in exported.values()]
    splits = {
        name: {"pieces": a.pieces, "depth": a.depth, "refused_by": a.refusal}
        for name, done in exported.items()
        if (a := done.answer).pieces > 1
    }
    return {
        "cluster": cluster,
        "window_start": window.start,
        "window_end": window.end,
        "objects": len(uploads),
        "raw_bytes": sum(u.raw_bytes for u in uploads),
        "gzip_bytes": sum(u.gzip_bytes for u in uploads),
        "keys": sorted(u.key for u in uploads),
        "series": dict(sorted((name, done.answer.series) for name, done in exported.items())),
        "split": dict(sorted(splits.items())),
    }


def emit_stats(cluster: str, metric: str, upload: Upload, answer: Answer, seconds: float) -> None:
    """Per window and metric, through Airflow's metrics (StatsD or OpenTelemetry as configured):
    ``finout.export.{bytes,gzip_bytes,series,retries,split_pieces,duration}.<cluster>.<metric>``."""
    tags, name = {"cluster": cluster, "metric": metric}, f"{cluster}.{metric}"
    measured = {
        "bytes": upload.raw_bytes,
        "gzip_bytes": upload.gzip_bytes,
        "series": answer.series,
        "retries": answer.retries,
        "split_pieces": answer.pieces,
    }
    for what, value in measured.items():
        Stats.gauge(f"finout.export.{what}.{name}", value, tags=tags)
    Stats.timing(f"finout.export.duration.{name}", timedelta(seconds=seconds), tags=tags)
