"""The join of a split answer's pieces: exact, in Prometheus' order, as written, whatever the
buffer boundaries."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from finout_provider.prometheus.split import JoinedBody, _objects


def answer(*series: str) -> bytes:
    return ('{"status":"success","data":{"resultType":"matrix","result":[' + ",".join(series) + "]}}").encode()


A1 = '{"metric":{"__name__":"up","pod":"a\\u003cb"},"values":[[1767225600,"1"],[1767225660,"NaN"]]}'
A2 = '{"metric":{"__name__":"up","pod":"a\\u003cb"},"values":[[1767225720,"+Inf"]]}'
B1 = '{"metric":{"__name__":"up","pod":"é"},"values":[[1767225600,"2"]]}'
C2 = '{"metric":{"__name__":"up","pod":"z"},"values":[[1767225720,"3.5e-07"]]}'
H1 = '{"metric":{"__name__":"up","pod":"h"},"histograms":[[1767225600,{"count":"1","buckets":[[0,"a","b","1"]]}]]}'


def join(tmp_path: Path, *pieces: bytes) -> bytes:
    paths = []
    for number, piece in enumerate(pieces):
        paths.append(tmp_path / f"{number}.json")
        paths[-1].write_bytes(piece)
    return b"".join(JoinedBody(paths))


def test_series_are_merged_in_label_order_with_values_copied_as_written(tmp_path: Path) -> None:
    joined = join(tmp_path, answer(A1, B1), answer(A2, C2))
    assert joined == answer(
        '{"metric":{"__name__":"up","pod":"a\\u003cb"},"values":[[1767225600,"1"],[1767225660,"NaN"],[1767225720,"+Inf"]]}',
        C2,  # "z" before "é": label values compare as bytes, as Prometheus compares them
        B1,
    )
    assert json.loads(joined)["data"]["result"][0]["metric"]["pod"] == "a<b"


@pytest.mark.parametrize("block", [1, 2, 3, 7, 64, 1 << 20])
def test_any_buffer_boundary_reads_the_same_series(block: int) -> None:
    body = answer(A1, B1, H1, '{"metric":{},"values":[]}')
    got = [(labels, metric, values) for labels, _, metric, values in _objects(io.BytesIO(body), block)]
    assert [labels for labels, _, _ in got] == [
        (("__name__", "up"), ("pod", "a<b")),
        (("__name__", "up"), ("pod", "é")),
        (("__name__", "up"), ("pod", "h")),
        (),
    ]
    assert got[0][1:] == ('{"__name__":"up","pod":"a\\u003cb"}', '[1767225600,"1"],[1767225660,"NaN"]')
    assert got[3][2] == ""


def test_a_cut_piece_is_refused(tmp_path: Path) -> None:
    whole = answer(A1, B1)
    with pytest.raises(ValueError, match=r"not whole JSON|no whole result"):
        join(tmp_path, whole[: len(whole) // 2])


def test_a_piece_out_of_label_order_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not sorted by label set"):
        join(tmp_path, answer(B1, A1))


def as_data(body: bytes) -> Any:
    return json.loads(body)["data"]["result"]


def test_a_series_of_one_piece_keeps_only_its_points(tmp_path: Path) -> None:
    result = as_data(join(tmp_path, answer(A1), answer(A2, C2)))
    assert [len(s["values"]) for s in result] == [3, 1]
    assert result[1] == json.loads(C2)
