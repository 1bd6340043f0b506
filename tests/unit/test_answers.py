"""The answer check: every byte validated as it streams, partial signals told from annotations."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from finout_provider.prometheus.answer import AnswerCheck, Measures
from finout_provider.prometheus.errors import HeavyQueryError, IncompleteBodyError, PrometheusError, judge_refusal


def series(n: int, points: int = 5, start: int = 1_700_000_000, gap: int | None = None) -> list[dict[str, Any]]:
    values = [[start + 60 * k, "1.5"] for k in range(points) if gap is None or k != gap]
    return [{"metric": {"pod": f'p-{i}"é', "ns": "a\\b"}, "values": values} for i in range(n)]


def answer(result: list[Any], **extra: Any) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "matrix", "result": result}} | extra


def compact(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def check(body: bytes, chunk: int = 7, **options: Any) -> AnswerCheck:
    checker = AnswerCheck(60, **options)
    for i in range(0, len(body), chunk):
        checker.feed(body[i : i + chunk])
    checker.finish()
    return checker


@pytest.mark.parametrize("chunk", [1, 2, 3, 11, 4096, 1 << 20])
def test_a_compact_answer_is_measured_whatever_the_chunking(chunk: int) -> None:
    body = compact(answer(series(3) + series(1, points=6, gap=2)))
    measures = check(body, chunk).measures
    assert measures == Measures(series=4, samples=20, expected=21, first=1_700_000_000, last=1_700_000_300)


def test_an_answer_in_another_shape_is_validated_and_counted() -> None:
    body = json.dumps(answer(series(3), stats={"a": [1, 2.5e3, None, True]}), indent=2).encode()
    measures = check(body, 5).measures
    assert (measures.series, measures.unmeasured) == (3, 3)


def test_no_cut_of_an_answer_passes() -> None:
    for body in (compact(answer(series(2))), json.dumps(answer(series(2)), indent=1).encode()):
        for cut in range(len(body) - 1):
            with pytest.raises(IncompleteBodyError):
                check(body[: cut + 1].rstrip(), 4)


def test_a_body_that_json_rejects_is_rejected_and_one_it_accepts_is_accepted() -> None:
    """Differential check against :func:`json.loads` on random one- and two-byte mutations."""
    rng = random.Random(20)
    docs = [answer(series(2)), answer(series(1), isPartial=False, stats={"a": [1, 2.5e3, None, True]})]
    for _ in range(4000):
        body = bytearray(compact(rng.choice(docs)) if rng.random() < 0.8 else json.dumps(rng.choice(docs)).encode())
        for _ in range(rng.randint(1, 2)):
            i = rng.randrange(len(body))
            if rng.random() < 0.5:
                body[i] = rng.choice(b'{}[],:"\\0123456789.eE+-tfnul xa\n')
            else:
                del body[i]
        try:
            doc = json.loads(bytes(body))
            valid = isinstance(doc["data"]["result"], list) and all(isinstance(s, dict) for s in doc["data"]["result"])
            expected = valid and doc == answer(doc["data"]["result"], **{k: v for k, v in doc.items() if k != "data"})
            expected = expected and doc.get("status") == "success" and doc["data"].get("resultType") == "matrix"
            expected = expected and not doc.get("isPartial")
        except (ValueError, KeyError, TypeError):
            expected = False
        try:
            check(bytes(body), rng.choice([1, 3, 64, 4096]))
            accepted = True
        except PrometheusError:
            accepted = False
        assert accepted == expected, bytes(body)


@pytest.mark.parametrize(
    "doc",
    [
        answer(series(1), isPartial=True),  # VictoriaMetrics
        answer(series(1), warnings=["No StoreAPIs matched for this query"]),  # Thanos
        {"warnings": ["receive series from store: rpc error"], **answer(series(1))},  # warnings first
    ],
    ids=["isPartial", "warnings-after", "warnings-before"],
)
def test_partial_answers_are_refused_and_retryable(doc: dict[str, Any]) -> None:
    with pytest.raises(IncompleteBodyError, match="partial") as caught:
        check(compact(doc))
    assert caught.value.retryable


def test_partial_warnings_before_a_large_answer_are_found() -> None:
    body = compact({"warnings": ["partial response: store down"], **answer(series(4000, points=60))})
    assert len(body) > 2 << 20
    with pytest.raises(IncompleteBodyError, match="store down"):
        check(body, 1 << 20)


def test_promql_annotations_do_not_fail_a_window() -> None:
    doc = answer(
        series(2),
        warnings=["PromQL warning: metric might not be a counter, name does not end in _total: x"],
        infos=["PromQL info: metric might not be a histogram"],
    )
    checker = check(compact(doc))
    assert checker.measures.series == 2
    assert checker.annotations == [doc["warnings"][0], doc["infos"][0]]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1, 2]", "JSON list"),
        (b'{"status":"error","errorType":"bad_data","error":"parse error"}', "bad_data: parse error"),
        (compact({"status": "success", "data": {"resultType": "vector", "result": []}}), "vector"),
    ],
)
def test_answers_that_are_not_a_success_matrix_fail_and_are_not_retried(body: bytes, message: str) -> None:
    with pytest.raises(PrometheusError, match=message) as caught:
        check(body)
    assert not caught.value.retryable


@pytest.mark.parametrize(
    "body", [b"<html><body>Sign in</body></html>", compact(answer(series(1))) + b"{}", b'{"a":"\xff"}']
)
def test_what_is_not_json_is_refused(body: bytes) -> None:
    with pytest.raises(IncompleteBodyError, match=r"not valid JSON|not UTF-8"):
        check(body)


def test_refusals_are_judged_in_one_place() -> None:
    heavy = judge_refusal(422, "execution: query would load too many samples into memory")
    assert isinstance(heavy, HeavyQueryError) and heavy.refusal.splittable
    assert judge_refusal(503, "overloaded", "7").retryable and judge_refusal(503, "x", "7").retry_after == 7
    assert judge_refusal(400, '{"__type":"ThrottlingException"}').retryable
    assert not judge_refusal(400, "bad_data: parse error at char 3").retryable
