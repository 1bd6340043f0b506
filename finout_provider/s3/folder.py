"""What S3 holds of one cluster's export: the planner, the sensor, its trigger, retention, the CLI
and the fleet page all read it from here.

:class:`ClusterFolder` walks one cluster's folder of the key layout with delimited listings
(``Delimiter="/"``, as the seed's IAM policy requires) through the store, and states each expected
object: ``ok``, ``missing``, ``empty``, or what is wrong with its body.

An object is proven whole when the export wrote it: an upload happens only after its answer was
validated in full, and carries :data:`PROVEN` as user metadata (one HEAD reads it). Any other object
(written by an older version, or by anything else) is read whole and validated before it counts.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from finout_provider.checks.completeness import Measured, data_begins
from finout_provider.plan.windows import iter_days
from finout_provider.prometheus.answer import AnswerCheck
from finout_provider.prometheus.errors import PrometheusError
from finout_provider.s3.layout import LayoutKey, build_key, cluster_root, day_of_folder, metric_folder, parse_key

if TYPE_CHECKING:
    from finout_provider.s3.store import S3Store

EMPTY_GZIP = 20  # bytes of a gzip stream holding nothing
# User metadata of an object whose answer was proven whole before it was written.
PROVEN = {"finout-answer": "whole"}


def body_problem(chunks: Iterable[bytes]) -> str | None:
    """``None`` if ``chunks`` are a whole gzip of a whole successful Prometheus answer (its JSON
    validated in full), else what is wrong. Streams: memory stays at one chunk whatever the size."""
    inflater = zlib.decompressobj(31)
    check = AnswerCheck()
    try:
        for chunk in chunks:
            check.feed(inflater.decompress(chunk))
            if inflater.eof:
                break
    except zlib.error as err:
        return f"not gzip ({err})"
    except PrometheusError as err:
        return f"not a whole answer ({err})"
    if not inflater.eof:
        return "truncated gzip"
    try:
        check.finish()
    except PrometheusError as err:
        return f"not a whole answer ({err})"
    return None


# S3 requests of one survey in flight together (within botocore's pool of 10 connections).
REQUESTS_AT_ONCE = 8


@dataclass(frozen=True)
class Survey:
    """What S3 holds of some windows: each expected key's state, the measures of the whole objects
    (by key), and where the cluster's data begins, as the objects' runs found it."""

    states: dict[str, str]
    measures: dict[str, Measured]
    begins: int | None = None


@dataclass(frozen=True)
class ClusterFolder:
    """``s3://<bucket>/<prefix>/<cluster>/``, walked along the key layout."""

    s3: S3Store
    bucket: str
    prefix: str
    cluster: str

    def has_any(self) -> bool:
        """Whether anything exists in the folder (one delimited listing)."""
        folders, objects = self.s3.list_level(self.bucket, cluster_root(self.prefix, self.cluster))
        return bool(folders or objects)

    def objects(self, metrics: Iterable[str], start: int, end: int) -> dict[LayoutKey, dict[str, Any]]:
        """Layout objects (their listing: Size, LastModified) of ``metrics`` for windows starting in
        ``[start, end)``: one listing per day and metric, :data:`REQUESTS_AT_ONCE` at a time."""
        folders = [
            (m, metric_folder(self.prefix, self.cluster, m, day)) for day in iter_days(start, end) for m in metrics
        ]
        with ThreadPoolExecutor(max_workers=REQUESTS_AT_ONCE) as pool:
            listings = pool.map(lambda folder: self.s3.list_level(self.bucket, folder[1])[1], folders)
            found: dict[LayoutKey, dict[str, Any]] = {}
            for (metric, _), listed in zip(folders, listings, strict=True):
                for obj in listed:
                    parsed = parse_key(obj["Key"], self.prefix, self.cluster)
                    if parsed is not None and parsed.metric == metric and start <= parsed.start < end:
                        found[parsed] = obj
        return found

    def day_folders(self) -> Iterator[tuple[int, str]]:
        """``(midnight, folder)`` of every ``end=.../day=.../`` folder, oldest first; folders
        outside the layout are passed over."""
        for end_folder in sorted(self.s3.list_level(self.bucket, cluster_root(self.prefix, self.cluster))[0]):
            days = [(day_of_folder(f), f) for f in self.s3.list_level(self.bucket, end_folder)[0]]
            yield from sorted((d, f) for d, f in days if d is not None)

    def keys_before(self, cutoff: int) -> list[str]:
        """Layout keys whose window starts before ``cutoff`` (any metric, also retired ones)."""
        keys: list[str] = []
        for day, folder in self.day_folders():
            if day >= cutoff:
                break  # oldest first: nothing newer starts before the cutoff
            for metric_folder_ in self.s3.list_level(self.bucket, folder)[0]:
                for obj in self.s3.list_level(self.bucket, metric_folder_)[1]:
                    parsed = parse_key(obj["Key"], self.prefix, self.cluster)
                    if parsed is not None and parsed.start < cutoff:
                        keys.append(obj["Key"])
        return keys

    def states(
        self, metrics: Sequence[str], starts: Sequence[int], window: int, *, deep: bool = False
    ) -> dict[str, str]:
        """State of every expected key of windows ``starts``: ``ok``, ``missing``, ``empty`` or
        what :meth:`inspect` finds (``deep``: every object read whole)."""
        return self.survey(metrics, starts, window, deep=deep).states

    def survey(self, metrics: Sequence[str], starts: Sequence[int], window: int, *, deep: bool = False) -> Survey:
        """:meth:`states`, the measures each whole object carries, and where the data begins."""
        if not starts:
            return Survey({}, {})
        listed = self.objects(metrics, min(starts), max(starts) + window)
        found = {k.key: int(obj["Size"]) for k, obj in listed.items()}
        expected = sorted(build_key(self.prefix, self.cluster, m, s) for s in set(starts) for m in metrics)
        states = {k: "missing" if k not in found else "empty" if found[k] <= EMPTY_GZIP else "ok" for k in expected}
        seen = self.inspect([k for k, state in states.items() if state == "ok"], deep=deep)
        measures = {k: m for k, (problem, meta) in seen.items() if not problem and (m := Measured.from_metadata(meta))}
        begins = [b for problem, meta in seen.values() if not problem and (b := data_begins(meta)) is not None]
        problems = {k: problem for k, (problem, _) in seen.items() if problem}
        return Survey(states | problems, measures, min(begins, default=None))

    def problems_of(self, keys: Sequence[str], *, deep: bool = False) -> dict[str, str]:
        """What is wrong with each of ``keys`` (objects that exist), for those not whole."""
        return {key: problem for key, (problem, _) in self.inspect(keys, deep=deep).items() if problem}

    def inspect(self, keys: Sequence[str], *, deep: bool = False) -> dict[str, tuple[str | None, dict[str, str]]]:
        """Each of ``keys`` (objects that exist): what is wrong with it (``None`` if whole) and its
        user metadata. An object the export marked :data:`PROVEN` is whole (a HEAD); any other is
        read whole and validated; ``deep`` reads every one whole."""

        def one(key: str) -> tuple[str | None, dict[str, str]]:
            metadata = self.s3.object_metadata(self.bucket, key)
            if not deep and metadata.items() >= PROVEN.items():
                return None, metadata
            return body_problem(self.s3.iter_object(self.bucket, key)), metadata

        with ThreadPoolExecutor(max_workers=REQUESTS_AT_ONCE) as pool:
            return dict(zip(keys, pool.map(one, keys), strict=True))

    def problems(self, metrics: Sequence[str], starts: Sequence[int], window: int) -> list[str]:
        """What is wrong with the objects of windows ``starts``: one line per missing or bad key."""
        states = self.states(metrics, starts, window)
        return [f"{state}: s3://{self.bucket}/{key}" for key, state in states.items() if state != "ok"]
