"""``finout-provider`` (also ``python -m finout_provider``): tools around the clusters file.

- ``import-cronjob cronjob.yaml``: Finout's CronJob manifest -> a clusters file entry, with
  credentials moved to a connection definition (``airflow connections import`` format);
- ``preflight --cluster NAME``: every metric query once, as an instant query, with the reason
  when one returns nothing (exit 1 when the export would write empty files);
- ``coverage --cluster NAME --from ... --to ...``: which windows and metrics are present, missing
  or corrupt in S3, as a table and with ``--png FILE`` as a heatmap (exit 1 when any is not);
- ``plan --cluster NAME``: the windows the next scheduled run would export.

Connections resolve as in Airflow (environment, secrets backend, metadata database); a cluster
described by HOSTNAME/PORT in the file gets its connection from the file, as in the DAG.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import yaml

from finout_provider.config.clusters import CLUSTERS_FILE_ENV, ClusterConfig, load_file
from finout_provider.connections import airflow_home, airflow_option, export_connection
from finout_provider.plan.windows import (
    DAY,
    SETTLE_SECONDS,
    WindowError,
    closed_before,
    iso,
    iter_days,
    to_epoch,
    windows_between,
)

if TYPE_CHECKING:
    from finout_provider.prometheus.client import PrometheusClient
    from finout_provider.s3.store import S3Store

    pass


class CliError(Exception):
    """A problem the user can fix; printed without a traceback, exit code 2."""


def _progress(stream: TextIO, what: str) -> Any:
    def report(number: int, total: int, item: str) -> None:
        stream.write(f"{what}: {number}/{total} {item}\n")
        stream.flush()

    return report


def _clusters_file(value: str | None) -> Path:
    if value:
        return Path(value)
    if os.environ.get(CLUSTERS_FILE_ENV):
        return Path(os.environ[CLUSTERS_FILE_ENV])
    try:
        dags = airflow_option("core", "dags_folder") or str(airflow_home() / "dags")
    except ValueError as error:
        raise CliError(f"{error}: give the clusters file with --clusters-file") from None
    return Path(dags).expanduser() / "clusters.yaml"


def _cluster(args: argparse.Namespace) -> ClusterConfig:
    path = _clusters_file(args.clusters_file)
    try:
        clusters = load_file(path)
    except ValueError as error:
        raise CliError(str(error)) from None
    for config in clusters.clusters:
        if config.cluster_name == args.cluster:
            inline = config.inline_connection()
            if inline is not None:  # where Airflow's hooks look for it, as in the DAG
                export_connection(config.effective_conn_id, inline)
            return config
    for problem in clusters.errors:
        if problem.cluster == args.cluster:
            raise CliError(f"{path}: {problem}")
    names = ", ".join(c.cluster_name for c in clusters.clusters) or "none"
    raise CliError(f"{path} has no cluster {args.cluster!r} (valid clusters: {names})")


def _time(value: str, option: str) -> int:
    try:
        return to_epoch(value)
    except WindowError as err:
        raise CliError(f"{option}: {err}") from None


def _s3(config: ClusterConfig) -> S3Store:
    from finout_provider.connections import s3_of

    return s3_of(config)


# --- commands ---------------------------------------------------------------------------------


def _write_atomically(files: Sequence[tuple[Path, str, int | None]]) -> None:
    """Write every ``(path, text, mode)`` or none: all go to temporary files first, then each is
    moved over its target. A ``None`` mode keeps an existing file's, or is what ``open`` would give
    (0666 less the umask), so an Airflow running as another user can read the file."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, text, wanted in files:
            handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, renamed after all are written
                "w", encoding="utf-8", dir=path.parent or Path("."), prefix=f".{path.name}.", delete=False
            )
            staged.append((Path(handle.name), path))
            with handle:
                handle.write(text)
            kept = path.stat().st_mode & 0o7777 if path.exists() else _umask_mode()
            Path(handle.name).chmod(kept if wanted is None else wanted)
        for temporary, path in staged:
            os.replace(temporary, path)
    finally:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)


def _umask_mode() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _clusters_text(path: Path, entry: dict[str, Any]) -> str:
    """The clusters file at ``path`` with ``entry`` added; refused unless the file parses as one."""
    from finout_provider.config.clusters import parse_document
    from finout_provider.config.cronjob import CronJobError, append_entry_text, merge_entry
    from finout_provider.config.yamltext import YamlTextError, load

    old = path.read_text(encoding="utf-8") if path.exists() else ""
    try:
        document = merge_entry(load(old), entry)
    except (YamlTextError, CronJobError) as error:
        raise CliError(f"{path}: {error}") from None
    name = entry["CLUSTER_NAME"]
    problems = [e for e in parse_document(document).errors if e.cluster == name]
    if problems:
        raise CliError("the imported entry is not valid:\n" + "\n".join(f"- {e}" for e in problems))
    text = append_entry_text(old, entry) if old.strip() else None
    if text is None or load(text) != document:  # keep the file's comments where the entry can be appended
        text = yaml.safe_dump(document, sort_keys=False)
    return text


def _connections_text(path: Path, connections: dict[str, Any]) -> str:
    try:
        known = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError) as error:
        raise CliError(f"{path}: cannot read it as a connections file ({error}); nothing was written") from None
    if not isinstance(known, dict):
        raise CliError(f"{path}: is not a connections file (a JSON object by connection id); nothing was written")
    clash = sorted(set(known) & set(connections))
    if clash:
        raise CliError(f"{path}: already defines connection {', '.join(clash)}; nothing was written")
    return json.dumps({**known, **connections}, indent=2) + "\n"


def cmd_import_cronjob(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from finout_provider.config.cronjob import CronJobError, import_cronjob, redacted

    try:
        imported = import_cronjob(Path(args.cronjob).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, CronJobError) as error:
        raise CliError(f"{args.cronjob}: {error}") from None
    name = imported.entry["CLUSTER_NAME"]
    files: list[tuple[Path, str, int | None]] = []
    if args.clusters_file:
        files.append((Path(args.clusters_file), _clusters_text(Path(args.clusters_file), imported.entry), None))
    if imported.connections and args.connections_file:
        path = Path(args.connections_file)
        files.append((path, _connections_text(path, imported.connections), 0o600))
    _write_atomically(files)
    if args.clusters_file:
        out.write(f"added cluster {name!r} to {args.clusters_file}\n")
    else:
        out.write(yaml.safe_dump({"clusters": [imported.entry]}, sort_keys=False))
    if imported.connections and args.connections_file:
        out.write(
            f"wrote connection {', '.join(imported.connections)} to {args.connections_file}: load it with "
            f"`airflow connections import {args.connections_file}` (or your secrets backend), then delete the file\n"
        )
    elif imported.connections:
        # Secrets are not printed: terminals and CI logs keep what they show.
        out.write("# connections, secrets hidden (write them with --connections-file):\n")
        out.write(json.dumps(redacted(imported.connections), indent=2) + "\n")
    for note in imported.notes:
        err.write(f"note: {note}\n")
    return 0


def cmd_preflight(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from finout_provider.checks.preflight import Preflight, default_instant
    from finout_provider.connections import prometheus_of

    config = _cluster(args)
    at = _time(args.at, "--at") if args.at else default_instant(time.time(), SETTLE_SECONDS, config.step_seconds)
    prometheus = prometheus_of(config)
    check = Preflight(prometheus.instant, config.cluster_name, config.spec, config.cluster_label)
    report = check.run(at, progress=_progress(err, "preflight"))
    report.cost = check.cost(at, prometheus.max_samples())
    out.write(report.render() + "\n" + _not_offered(prometheus, ask=True))
    return 1 if report.failed else 0


# The optional pages of the Prometheus API the provider reads, and what goes without each.
OPTIONAL_PAGES = {
    "flags": "the cost estimate knows no sample limit",
    "runtimeinfo": "ranges and history are not checked against the server's retention",
    "buildinfo": "the connection test shows no version",
}


def _not_offered(prometheus: PrometheusClient, ask: bool = False) -> str:
    """A note per optional page the server does not offer (VictoriaMetrics, Thanos, Mimir and proxies
    offer few of Prometheus' status pages) among those asked for (``ask``: every one)."""
    for name in OPTIONAL_PAGES if ask else ():
        if name not in prometheus.not_offered:
            prometheus.status_page(name)
    notes = sorted((name, why) for name, why in prometheus.not_offered.items() if name in OPTIONAL_PAGES)
    return "".join(
        f"note: {prometheus.base_url} does not offer /api/v1/status/{name} ({why}); {OPTIONAL_PAGES[name]}\n"
        for name, why in notes
    )


def cmd_coverage(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from finout_provider.checks.coverage import COMPLETE, Coverage
    from finout_provider.checks.status import by_window, empty_windows

    config = _cluster(args)
    start, end = _time(args.from_, "--from"), _time(args.to, "--to")
    if end <= start:
        raise CliError(f"--to {args.to} is not after --from {args.from_}")

    settled = closed_before(int(time.time()), SETTLE_SECONDS, config.time_frame)
    if end > settled:
        err.write(f"coverage: windows ending after {iso(settled)} have not closed and settled yet: left out\n")
    windows = windows_between(start, min(end, settled), config.time_frame)
    if not windows:
        raise CliError(f"no whole {config.time_frame}s window between --from and --to has closed yet")
    target, spec = config.target.checked(), config.spec
    folder = target.folder(_s3(config))
    days = list(iter_days(windows[0].start, windows[-1].end))
    states: dict[str, str] = {}
    measures: dict[str, Any] = {}
    begins: list[int] = []
    report = _progress(err, "coverage")
    for number, day in enumerate(days, 1):
        report(number, len(days), time.strftime("%Y-%m-%d", time.gmtime(day)))
        starts = [w.start for w in windows if day <= w.start < day + DAY]
        survey = folder.survey(spec.names, starts, spec.time_frame, deep=args.deep)
        states, measures = states | survey.states, measures | survey.measures
        begins += [] if survey.begins is None else [survey.begins]
    coverage = Coverage.from_states(target.cluster, target.prefix, spec.time_frame, windows, states)
    coverage.mark_empty(empty_windows(spec, by_window(target, measures, [w.start for w in windows])))
    coverage.mark_before(min(begins, default=None))
    out.write(coverage.render() + "\n")
    if args.png:
        out.write(f"wrote {coverage.write_png(args.png)}\n")
    return 0 if all(state == COMPLETE for state in coverage.windows.values()) else 1


def cmd_plan(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from finout_provider.checks.status import incomplete_in
    from finout_provider.connections import prometheus_of
    from finout_provider.plan.planner import Planner

    config = _cluster(args)
    if args.limit < 1:
        raise CliError(f"--limit {args.limit}: give Airflow's [core] max_map_length, a positive number")
    now = _time(args.now, "--now") if args.now else int(time.time())
    log = logging.getLogger("finout_provider.plan")
    log.addHandler(logging.StreamHandler(err))
    log.setLevel(logging.INFO)
    prometheus, s3 = prometheus_of(config), _s3(config)
    planner = Planner.from_config(
        config,
        s3,
        prometheus,
        settle_seconds=SETTLE_SECONDS,
        log=log,
        flagged=incomplete_in(s3, config.target, config.spec),
    )
    end = closed_before(now, SETTLE_SECONDS, config.time_frame)
    plan = planner.plan(now, limit=args.limit, interval=(end - config.time_frame, end), repair=config.mode == "airflow")
    out.write(
        f"The next run of {config.dag_id} exports {len(plan.windows)} windows of {config.time_frame}s "
        f"x {len(config.metrics)} metrics to s3://{config.s3_bucket}/{config.s3_prefix}/{config.cluster_name}/\n"
    )
    for window in plan.windows:
        out.write(f"  {window.label}\n")
    if plan.deferred:
        out.write(f"{plan.deferred} older windows exceed the map limit ({args.limit}) and wait for later runs\n")
    if plan.wait_until > now:
        out.write(f"it waits until {iso(plan.wait_until)} for the newest window to settle\n")
    if plan.windows and config.mode == "airflow":
        from finout_provider.checks.preflight import Preflight

        check = Preflight(prometheus.instant, config.cluster_name, config.spec, config.cluster_label)
        at = plan.windows[-1].query_range(config.step_seconds)[1]
        out.write(check.cost(at, prometheus.max_samples()).render() + "\n" + _not_offered(prometheus))
    return 0


def cmd_status(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from finout_provider.checks.coverage import fleet_html, write_fleet_png
    from finout_provider.checks.status import STALE, render, status_of, worst_first

    path = _clusters_file(args.clusters_file)
    try:
        clusters = load_file(path)
    except ValueError as error:
        raise CliError(str(error)) from None
    chosen = [c for c in clusters.clusters if not args.cluster or c.cluster_name in args.cluster]
    unknown = sorted(set(args.cluster or ()) - {c.cluster_name for c in chosen})
    if unknown or not chosen:
        raise CliError(f"{path} has no valid cluster {', '.join(unknown) or '(none at all)'}")
    now, report = int(time.time()), _progress(err, "status")

    def one(config: ClusterConfig) -> Any:
        return status_of(config, now, args.hours)

    statuses = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        for number, status in enumerate(pool.map(one, chosen), 1):
            report(number, len(chosen), status.cluster)
            statuses.append(status)
    ordered = worst_first(statuses)
    if args.json:
        out.write(json.dumps([s.as_dict() for s in ordered], indent=2) + "\n")
    else:
        out.write(render(statuses) + "\n")
    if args.png:
        err.write(f"wrote {write_fleet_png([s.coverage for s in ordered], args.png)}\n")
    if args.html:
        Path(args.html).write_text(fleet_html([s.coverage for s in ordered]), encoding="utf-8")
        err.write(f"wrote {args.html}\n")
    return 1 if any(s.state == STALE or s.problems["missing"] for s in statuses) else 0


def cmd_init(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from importlib import resources

    folder = Path(args.dag_folder)
    if folder.exists() and not folder.is_dir():
        raise CliError(f"{folder} is not a folder: give Airflow's DAG folder ([core] dags_folder)")
    if not folder.exists():
        folder.mkdir(parents=True)
        err.write(f"created the DAG folder {folder}\n")
    files = resources.files("finout_provider.dag_files")
    names = ("finout_prometheus.py", "finout_prometheus_config_errors.py", "clusters.yaml")
    present = [name for name in names if (folder / name).exists()]
    if present and not args.force:
        raise CliError(f"{', '.join(present)} already in {folder}: nothing written (--force overwrites)")
    _write_atomically([(folder / name, files.joinpath(name).read_text(encoding="utf-8"), None) for name in names])
    out.write(
        f"wrote {', '.join(names)} to {folder}\nnext: edit {folder / 'clusters.yaml'}, create the connections "
        "(README: 'Use it on your Airflow'), then `finout-provider preflight --cluster NAME`\n"
    )
    return 0


# --- entry point ------------------------------------------------------------------------------


CLUSTERS_FILE_HELP = f"the clusters file (default ${CLUSTERS_FILE_ENV}, else DAGs folder/clusters.yaml)"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="finout-provider", description="Tools around the Finout clusters file and its exports."
    )
    sub = top.add_subparsers(dest="command", required=True)
    _file_commands(sub)
    _cluster_commands(sub)
    return top


def _file_commands(sub: Any) -> None:
    """The commands over the clusters file (init, import-cronjob) and the whole fleet (status)."""
    init = sub.add_parser("init", help="write the DAG files and a clusters.yaml template into a DAG folder")
    init.add_argument("dag_folder", help="Airflow's DAG folder")
    init.add_argument("--force", action="store_true", help="overwrite files already there")
    init.set_defaults(run=cmd_init)

    imp = sub.add_parser("import-cronjob", help="turn Finout's CronJob manifest into a clusters file entry")
    imp.add_argument("cronjob", help="the CronJob YAML (as in Finout's setup guide)")
    imp.add_argument("--clusters-file", help="add the entry to this clusters file (created if missing)")
    imp.add_argument("--connections-file", help="write credentials here as JSON for `airflow connections import`")
    imp.set_defaults(run=cmd_import_cronjob)

    status = sub.add_parser("status", help="every cluster's newest complete window, its age and its gaps (from S3)")
    status.add_argument("--cluster", action="append", help="only this cluster (repeat for several)")
    status.add_argument("--clusters-file", help=CLUSTERS_FILE_HELP)
    status.add_argument(
        "--hours", type=float, help="how far back to look (default the look-back: BACKFILL_DAYS, at least a day)"
    )
    status.add_argument("--json", action="store_true", help="one JSON entry per cluster")
    status.add_argument("--png", help="also draw clusters x windows as a PNG heatmap")
    status.add_argument("--html", help="also write clusters x windows as one self-contained HTML page")
    status.set_defaults(run=cmd_status)


def _cluster_commands(sub: Any) -> None:
    """The commands about one cluster (``--cluster``): preflight, coverage, plan."""

    def with_cluster(name: str, text: str) -> argparse.ArgumentParser:
        command: argparse.ArgumentParser = sub.add_parser(name, help=text, description=text)
        command.add_argument("--cluster", required=True, help="CLUSTER_NAME of an entry of the clusters file")
        command.add_argument("--clusters-file", help=CLUSTERS_FILE_HELP)
        return command

    pre = with_cluster("preflight", "run every metric query once and explain what returns nothing")
    pre.add_argument("--at", help="the instant to check (ISO-8601, UTC); default now less the settle delay")
    pre.set_defaults(run=cmd_preflight)

    cov = with_cluster("coverage", "show which windows and metrics are present, missing or corrupt in S3")
    cov.add_argument("--from", dest="from_", required=True, help="start (ISO-8601, UTC)")
    cov.add_argument("--to", required=True, help="end, exclusive (ISO-8601, UTC)")
    cov.add_argument("--png", help="also draw the grid (days x windows) as a PNG heatmap")
    cov.add_argument("--deep", action="store_true", help="read every object whole: gzip intact and a successful answer")
    cov.set_defaults(run=cmd_coverage)

    plan = with_cluster("plan", "show what the next scheduled run would export")
    plan.add_argument("--now", help="plan as if it were this time (ISO-8601, UTC)")
    plan.add_argument("--limit", type=int, default=1024, help="Airflow's [core] max_map_length")
    plan.set_defaults(run=cmd_plan)


# Airflow logs to stdout (an INFO line whenever a hook resolves a connection; a traceback when a
# Variable is read without a migrated metadata database), and the command's stdout is its report,
# which `--json` promises to machines. Airflow's lines are dropped, or go to stderr when the user
# asks for them with AIRFLOW__LOGGING__LOGGING_LEVEL. The command's own messages go to stderr.
AIRFLOW_LOGS_WANTED = "AIRFLOW__LOGGING__LOGGING_LEVEL" in os.environ


class _Discard(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


DISCARD = _Discard()


@contextlib.contextmanager
def _environment() -> Iterator[None]:
    """What the command sets in its environment (Airflow's log level, its process context, the
    clusters file's inline connections), undone when it returns, as its process' end would."""
    saved = dict(os.environ)
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    # Connections resolve as Airflow's own CLI resolves them: environment, secrets backends and the
    # metadata database (Airflow 3 reads the database only in a "server" process, as its CLI is).
    os.environ.setdefault("_AIRFLOW_PROCESS_CONTEXT", "server")
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args = parser().parse_args(argv)
    try:
        with _environment(), contextlib.redirect_stdout(err if AIRFLOW_LOGS_WANTED else DISCARD):
            return int(args.run(args, out, err))
    except CliError as error:
        message = str(error)
    except Exception as error:  # noqa: BLE001 - expected failures become one line, see _expected
        message = _expected(error)
    cluster = getattr(args, "cluster", None)
    err.write(f"finout-provider {args.command}{f' (cluster {cluster})' if cluster else ''}: {message}\n")
    return 2


def _expected(error: Exception) -> str:
    """One line for a failure the user can fix (a connection, S3, Prometheus, a setting); re-raise
    others (a defect: its traceback is the report)."""
    from finout_provider.failures import expected, explain

    if not expected(error):
        raise error
    return explain(error)
