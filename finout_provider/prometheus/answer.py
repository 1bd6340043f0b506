"""Whether a Prometheus answer is whole (pure; no I/O).

:class:`AnswerCheck` reads a ``query_range`` answer as it streams and validates its JSON in full,
every byte: a body that ends before its JSON does is cut, whatever the HTTP framing said. Series
in the common compact shape (``{"metric":{...},"values":[[t,"v"],...]}``, what Prometheus, Thanos,
Mimir and VictoriaMetrics write) are checked by one regular expression each and measured on the way
(samples, first and last timestamps); anything else goes through a general JSON tokenizer. The rest
of the answer (its envelope: status, warnings, infos, isPartial...) is kept, small, and judged at
the end by :func:`judge_envelope`: partial-data signals fail the answer, PromQL annotations do not.
What a non-200 answer is (too heavy, overload, final) is :mod:`finout_provider.prometheus.errors`'.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from finout_provider.prometheus.errors import IncompleteBodyError, PrometheusError

# Prometheus' own annotations (util/annotations): about the query, not about missing data.
ANNOTATION_PREFIXES = ("PromQL warning:", "PromQL info:")
ENVELOPE_LIMIT = 4 << 20  # bytes of an answer outside its series
TOKEN_LIMIT = 1 << 20  # the longest single JSON token (a label value) awaited across chunks
SERIES_WAIT = 8 << 20  # a series not yet whole after this many bytes is read token by token


def is_annotation(warning: Any) -> bool:
    """Whether a ``warnings`` entry is a PromQL annotation (the data is all there)."""
    return isinstance(warning, str) and warning.startswith(ANNOTATION_PREFIXES)


def judge_envelope(doc: Any, *, allow_warnings: bool = False, matrix: bool = True) -> list[str]:
    """Raise unless ``doc`` (an answer, its series elided) is a whole successful answer; return
    its PromQL annotations. ``status`` other than success is final; partial-data signals
    (VictoriaMetrics' ``isPartial``, Thanos/Cortex/Mimir ``warnings`` that are not PromQL
    annotations) are retryable."""
    if not isinstance(doc, dict):
        raise PrometheusError(f"the answer is a JSON {type(doc).__name__}, not a Prometheus API object")
    if doc.get("status") != "success":
        error = f"{doc.get('errorType') or 'error'}: {doc.get('error')}" if doc.get("error") else "no error text"
        raise PrometheusError(f"the answer's status is {doc.get('status')!r} ({error})")
    data = doc.get("data")
    if matrix and (not isinstance(data, dict) or data.get("resultType") != "matrix" or "result" not in data):
        kind = data.get("resultType") if isinstance(data, dict) else type(data).__name__
        raise PrometheusError(f"the answer holds no matrix result (data.resultType {kind!r})")
    if doc.get("isPartial") is True:
        raise IncompleteBodyError("the answer is partial (isPartial: true): the server lacked some data")
    warnings = doc.get("warnings") or []
    if not isinstance(warnings, list):
        warnings = [warnings]
    partial = [w for w in warnings if not is_annotation(w)]
    if partial and not allow_warnings:
        raise IncompleteBodyError(f"the answer carries warnings of missing data (a partial answer): {partial!r}")
    infos = doc.get("infos") or []
    return [str(w) for w in warnings if is_annotation(w)] + [str(i) for i in infos if isinstance(infos, list)]


# JSON (RFC 8259) as byte patterns; possessive quantifiers keep the engine from backtracking.
_STRING = rb'"[^"\\\x00-\x1f]*+(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*+)*+"'
_NUMBER = rb"-?+(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?+(?:[eE][+-]?+[0-9]++)?+"
_TOKEN = re.compile(rb"[ \t\r\n]*+(?:([{}\[\],:])|(" + _STRING + rb")|(" + _NUMBER + rb")|(true|false|null))")
# A sample's timestamp as servers write one (seconds since 1970, so never 0 or negative); any other
# number is valid JSON too, and such a series goes through the tokenizer.
_TIME = rb"([1-9][0-9]*+(?:\.[0-9]++)?+)"
_VALUE = rb',"[^"\\\x00-\x1f]*+"\]'
_PAIR = _STRING + b":" + _STRING
# Groups: 1 the values, 2 the first timestamp, 3 the last (when more than one), 4 a comma after.
_SERIES = re.compile(
    rb'[ \t\r\n]*+\{"metric":\{(?:' + _PAIR + rb"(?:," + _PAIR + rb')*+)?+\},"values":\[('
    + rb"\[" + _TIME + _VALUE + rb"(?:,\[" + _TIME + _VALUE + rb")*+)\]\}[ \t\r\n]*+(,?)"
)  # fmt: skip
_SPACE = re.compile(rb"[ \t\r\n]*+")
_STARTS = frozenset(b'{}[],:"-0123456789tfn')
# What the tokenizer expects next.
VALUE, VALUE_OR_CLOSE, KEY, KEY_OR_CLOSE, COLON, COMMA_OR_CLOSE, END = range(7)


@dataclass
class Measures:
    """What an answer held: series, samples, and the samples its series' lifetimes imply at the
    step (first to last sample of each series); ``first``/``last`` the earliest and latest sample."""

    series: int = 0
    samples: int = 0
    expected: int = 0
    first: float | None = None
    last: float | None = None
    unmeasured: int = 0  # series of an unusual shape: counted, their samples not


@dataclass(frozen=True)
class Answer:
    """What reading one ``query_range`` answer gave: what it held, its size in bytes, and how it was
    read (failed attempts before it; the pieces, halvings and refusal of a split query)."""

    measures: Measures
    size: int
    retries: int = 0
    pieces: int = 1
    depth: int = 0
    refusal: str = ""

    @property
    def series(self) -> int:
        return self.measures.series


class AnswerCheck:
    """Validate a ``query_range`` answer chunk by chunk (:meth:`feed`, then :meth:`finish`).

    Memory holds the envelope and at most one series (or one token) across chunk boundaries.
    """

    def __init__(self, step: int = 60, *, allow_warnings: bool = False) -> None:
        self.step = max(int(step), 1)
        self.allow_warnings = allow_warnings
        self.size = 0
        self.measures = Measures()
        self.annotations: list[str] = []
        self._buf = bytearray()
        self._pos = 0
        self._stack: list[bytes] = []  # b"{" or b"[" per open container
        self._keys: list[str | None] = []  # the current key of each open object (depth <= 2)
        self._state = VALUE
        self._result_depth = 0  # the stack depth inside data.result, once it is open
        self._envelope = bytearray()
        self._utf8 = _utf8_checker()

    @property
    def series(self) -> int:
        return self.measures.series

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._utf8(chunk, False)
        if self._pos > len(self._buf) // 2:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += chunk
        self._scan(final=False)

    def finish(self) -> Measures:
        """Raise unless the body was a whole successful matrix answer; return its measures."""
        self._utf8(b"", True)
        self._scan(final=True)
        if self._state != END or _SPACE.match(self._buf, self._pos).end() != len(self._buf):  # type: ignore[union-attr]
            raise self._cut()
        self.annotations = judge_envelope(json.loads(self._envelope), allow_warnings=self.allow_warnings)
        return self.measures

    def _cut(self) -> IncompleteBodyError:
        tail = bytes(self._buf[-40:])
        return IncompleteBodyError(f"the answer ends before its JSON does ({self.size} bytes, ends {tail!r})")

    def _invalid(self, what: str) -> IncompleteBodyError:
        near = bytes(self._buf[self._pos : self._pos + 60])
        return IncompleteBodyError(f"the answer is not valid JSON: {what} at byte {self._where()} ({near!r})")

    def _where(self) -> int:
        return self.size - (len(self._buf) - self._pos)

    def _scan(self, final: bool) -> None:
        while self._pos < len(self._buf):
            if self._in_result() and self._state in (VALUE, VALUE_OR_CLOSE):
                outcome = self._fast(final)
                if outcome == "wait":
                    return
                if outcome == "read":
                    continue
            if not self._token(final):
                return

    def _in_result(self) -> bool:
        return self._result_depth > 0 and len(self._stack) == self._result_depth

    def _fast(self, final: bool) -> str:
        """Read the whole compact series at the position: ``read`` some, ``wait`` for more bytes,
        or leave the next one to the general ``token``izer."""
        buf, read = self._buf, False
        while True:
            match = _SERIES.match(buf, self._pos)
            if match is None:
                break
            self._measure(match)
            self._pos, read = match.end(), True
            if not match.group(4):
                self._state = COMMA_OR_CLOSE
                return "read"
            self._state = VALUE
        if read:
            return "read"
        nxt = _SPACE.match(buf, self._pos).end()  # type: ignore[union-attr]
        if nxt == len(buf):
            return "token" if final else "wait"
        unfinished = buf.find(b"]]}", nxt) < 0 and len(buf) - nxt < SERIES_WAIT
        return "wait" if buf[nxt] == 0x7B and unfinished and not final else "token"

    def _measure(self, match: re.Match[bytes]) -> None:
        m = self.measures
        first = float(match[2])
        last = float(match[3]) if match[3] else first
        m.series += 1
        m.samples += self._buf.count(b"],[", match.start(1), match.end(1)) + 1
        m.expected += int((last - first) // self.step) + 1
        if m.first is None or first < m.first:
            m.first = first
        if m.last is None or last > m.last:
            m.last = last

    def _token(self, final: bool) -> bool:
        """Read one token by the general tokenizer; ``False`` when more bytes are needed."""
        buf, pos = self._buf, self._pos
        match = _TOKEN.match(buf, pos)
        # A number that may go on in the next chunk (``12`` of ``12.5e+3``): wait for it.
        at_end = match is not None and match.lastindex in (3, 4) and len(buf) - match.end() < 3
        if match is None or (at_end and not final):
            rest = _SPACE.match(buf, pos).end()  # type: ignore[union-attr]
            if rest == len(buf):
                self._pos = rest
                return False
            if final or buf[rest] not in _STARTS or len(buf) - rest > TOKEN_LIMIT:
                self._pos = rest
                raise self._cut() if final and buf[rest] == 0x22 else self._invalid("unexpected bytes")
            return False
        self._pos = match.end()
        self._grammar(match)
        return True

    def _grammar(self, match: re.Match[bytes]) -> None:
        """Move the expectation on by one token, or raise."""
        punct, state = match.group(1), self._state
        keep = not (self._result_depth > 0 and len(self._stack) >= self._result_depth)
        if state == END:
            raise self._invalid("bytes after the answer")
        if state in (KEY, KEY_OR_CLOSE):
            if punct == b"}" and state == KEY_OR_CLOSE:
                self._close(b"{", match, keep)
                return
            if match.group(2) is None:
                raise self._invalid("an object key must be a string")
            self._keys[-1] = json.loads(match.group(2)) if len(self._stack) <= 2 else None
            self._state = COLON
        elif state == COLON:
            if punct != b":":
                raise self._invalid("':' expected")
            self._state = VALUE
        elif state == COMMA_OR_CLOSE:
            if punct == b",":
                self._state = KEY if self._stack[-1] == b"{" else VALUE
            elif punct in (b"}", b"]"):
                self._close(punct, match, keep)
                return
            else:
                raise self._invalid("',' or a closing bracket expected")
        elif punct == b"]" and state == VALUE_OR_CLOSE:
            self._close(b"]", match, keep)
            return
        else:
            self._value(match, keep)
            return
        if keep:
            self._keep(match)

    def _value(self, match: re.Match[bytes], keep: bool) -> None:
        punct = match.group(1)
        if punct in (b"{", b"["):
            self._stack.append(punct)
            self._keys.append(None)
            self._state = KEY_OR_CLOSE if punct == b"{" else VALUE_OR_CLOSE
            if keep:
                self._keep(match)
            if punct == b"[" and self._keys[:-1] == ["data", "result"] and not self._result_depth:
                self._result_depth = len(self._stack)
            elif self._in_result_element():
                self.measures.series += 1
                self.measures.unmeasured += 1
            return
        if punct is not None:
            raise self._invalid("a value expected")
        if keep:
            self._keep(match)
        if self._in_result_element(opened=False):
            raise self._invalid("a series must be an object")
        self._after_value()

    def _in_result_element(self, opened: bool = True) -> bool:
        return self._result_depth > 0 and len(self._stack) == self._result_depth + (1 if opened else 0)

    def _close(self, bracket: bytes, match: re.Match[bytes], keep: bool) -> None:
        if not self._stack or self._stack[-1] != {b"}": b"{", b"]": b"["}.get(bracket, bracket):
            raise self._invalid("mismatched bracket")
        if len(self._stack) == self._result_depth:
            self._result_depth = -1  # closed: never reopened by a second "result" key
            keep = True
        self._stack.pop()
        self._keys.pop()
        if keep:
            self._keep(match)
        self._after_value()

    def _after_value(self) -> None:
        self._state = COMMA_OR_CLOSE if self._stack else END

    def _keep(self, match: re.Match[bytes]) -> None:
        self._envelope += match.group(0)
        if len(self._envelope) > ENVELOPE_LIMIT:
            raise self._invalid(f"more than {ENVELOPE_LIMIT} bytes outside the series")


def _utf8_checker() -> Any:
    """A function of ``(chunk, final)`` that raises :class:`IncompleteBodyError` on bytes that are not UTF-8."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()

    def check(chunk: bytes, final: bool) -> None:
        try:
            decoder.decode(chunk, final)
        except UnicodeDecodeError as err:
            raise IncompleteBodyError(f"the answer is not UTF-8 ({err.reason})") from None

    return check
