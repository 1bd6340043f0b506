"""A small loopback HTTP server for fault injection and header checks (never the happy path)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Handler = Callable[[Seen, BaseHTTPRequestHandler], None]


@dataclass
class FaultServer:
    """Answers every request with ``handler(seen, request_handler)``; records what it saw."""

    handler: Handler
    requests: list[Seen] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def __enter__(self) -> FaultServer:
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(self.command, self.path, {k: v for k, v in self.headers.items()}, body)
                outer.requests.append(seen)
                outer.handler(seen, self)

            do_GET = do_POST = _any

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])


def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


SUCCESS = b'{"status":"success","data":{"resultType":"matrix","result":[]}}'
