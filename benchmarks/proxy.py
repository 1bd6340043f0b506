"""A recording loopback proxy in front of Prometheus: queries, points per series, concurrency."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

from devtools.faults import FaultServer, Seen, forward


@dataclass
class Recorder:
    upstream_port: int
    queries: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: FaultServer | None = None

    def __enter__(self) -> Recorder:
        upstream = forward(f"http://127.0.0.1:{self.upstream_port}")

        def record(seen: Seen, request: BaseHTTPRequestHandler) -> None:
            form = {k: v[0] for k, v in parse_qs(seen.body.decode()).items()}
            with self.lock:
                if seen.path.endswith("/query_range"):
                    points = (float(form["end"]) - float(form["start"])) / float(form["step"]) + 1
                    self.queries.append({"query": form["query"], "points_per_series": int(points)})
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                upstream(seen, request)
            finally:
                with self.lock:
                    self.in_flight -= 1

        self.server = FaultServer(record).__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.__exit__(*exc)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}"
