"""The API's HTTP server: uvicorn, with its HTTP protocol (httptools) guarded against slow and idle clients.

uvicorn has no time limit on receiving a request: a connection that never sends, or sends its headers or body a
byte at a time, stays open for ever (its keep-alive timer only runs between requests, and any byte stops it), and
its `limit_concurrency` counts connections only once one has sent its headers, and answers in plain text. So the
protocol here, a subclass of uvicorn's own, adds: the request's headers within API_HEADER_TIMEOUT of the
connection (or of the previous response), its body within API_BODY_TIMEOUT of its headers, else a 408 and the
connection closed; and at most API_MAX_CONNECTIONS open connections (streams included), a new one beyond that
answered 503 and closed at once. Another server (hypercorn has read timeouts) would mean a second stack of
HTTP and WebSocket code to learn and test; this is one class over the parser uvicorn already runs."""

import asyncio
import json
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.config import ApiSettings
from api.problems import PROBLEM_JSON


def _problem(status: int, reason: str, type_: str, title: str, detail: str, *headers: str) -> bytes:
    body = json.dumps({"type": type_, "title": title, "status": status, "detail": detail}).encode()
    head = [f"HTTP/1.1 {status} {reason}", f"content-type: {PROBLEM_JSON}", f"content-length: {len(body)}", *headers]
    return "\r\n".join([*head, "connection: close", "", ""]).encode() + body


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the time and connection limits above (set by `protocol()`)."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            detail = f"the API holds {self.max_connections} connections (API_MAX_CONNECTIONS); try again"
            too_many = ("/problems/too-many-connections", "Too many connections", detail, "retry-after: 1")
            transport.write(_problem(503, "Service Unavailable", *too_many))
            transport.close()
            return
        self._arm(self.header_timeout, "headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_timeout, "body")  # disarmed at once by on_message_complete when there is no body

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # idle, waiting for the next request on this connection
            self._arm(self.header_timeout, "next headers")

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        super().handle_websocket_upgrade()

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, seconds, what)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, seconds: float, what: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        # A 408 for a request that is late; none for the next one on a kept-alive connection (closed as uvicorn's
        # keep-alive timer closes it), nor inside a response being written.
        answering = self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete
        if what != "next headers" and not answering:
            setting = "API_HEADER_TIMEOUT" if what == "headers" else "API_BODY_TIMEOUT"
            detail = f"the request's {what} did not arrive within {seconds:g} s ({setting})"
            self.transport.write(
                _problem(408, "Request Timeout", "/problems/request-timeout", "Request timeout", detail)
            )
        self.transport.close()


def protocol(settings: ApiSettings) -> type[GuardedProtocol]:
    return type(
        "GuardedProtocol",
        (GuardedProtocol,),
        {
            "header_timeout": settings.api_header_timeout,
            "body_timeout": settings.api_body_timeout,
            "max_connections": settings.api_max_connections,
        },
    )


def config(app: Any, settings: ApiSettings, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for `app` under `settings` (the process and the tests' harness share it)."""
    return uvicorn.Config(
        app, http=protocol(settings), host=settings.api_host, port=settings.api_port,
        access_log=settings.api_access_log, **options,
    )  # fmt: skip
