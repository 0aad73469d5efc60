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
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.config import ApiSettings
from api.problems import PROBLEM_JSON, ApiError, RequestTimeout, TooManyConnections, problem_body


def _raw(error: ApiError) -> bytes:
    """`error` as a whole HTTP response, for the protocol to write itself (no app runs for it)."""
    body = json.dumps(problem_body(error.status, error.type, error.title, error.detail)).encode()
    head = [f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}", f"content-type: {PROBLEM_JSON}",
            f"content-length: {len(body)}", *(f"{k}: {v}" for k, v in (error.headers or {}).items())]  # fmt: skip
    return "\r\n".join([*head, "connection: close", "", ""]).encode() + body


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the time and connection limits above (set by `protocol()`). One deadline
    at a time: "headers" (a new connection's first request), "next headers" (after a response, on a kept-alive
    connection: closed without an answer, as uvicorn's keep-alive timer would) or "body"."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1000
    cut: Callable[[str], None] = staticmethod(lambda reason: None)  # counts a connection closed here, by why
    HANG_UP_S = 1.0  # after a refusal: what the client still sends is read and dropped, so it gets the answer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._what = ""
        self._answering: Any = None  # the request cycle the app is answering (a pipelined one waits behind it)
        self._hung_up = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            detail = f"the API holds {self.max_connections} connections (API_MAX_CONNECTIONS); try again"
            self._hang_up(_raw(TooManyConnections(detail, headers={"retry-after": "1"})))
            self.cut("too_many")
            return
        self._arm(self.header_timeout, "headers")

    def data_received(self, data: bytes) -> None:
        if not self._hung_up:
            super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        self._answering = cycle
        super()._start_asgi_task(cycle, app)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.cycle is self._answering:
            self._arm(self.body_timeout, "body")  # disarmed at once by on_message_complete when there is no body
        else:  # pipelined behind a response in progress: uvicorn reads no more until that one is done
            self._disarm()

    def on_message_complete(self) -> None:
        if self._what == "body":
            self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # idle, waiting for the next request on this connection
            self._arm(self.header_timeout, "next headers")
        elif self._answering is not None and self._answering.more_body and not self.transport.is_closing():
            self._arm(self.body_timeout, "body")  # a pipelined request started: its body is due now

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        super().handle_websocket_upgrade()

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._what = what
        self._deadline = self.loop.call_later(seconds, self._expired, seconds, what)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._what = ""

    def _expired(self, seconds: float, what: str) -> None:
        self._deadline, self._what = None, ""
        if self.transport.is_closing():
            return
        cycle = self._answering
        if what == "body" and cycle is not None and cycle.waiting_for_100_continue:
            self._arm(seconds, what)  # the client waits for the server's 100 Continue: the body is not due yet
            return
        self.cut("body" if what == "body" else "headers")
        answering = cycle is not None and cycle.response_started and not cycle.response_complete
        if what == "next headers" or answering:  # no 408 into a kept-alive silence, nor into a response
            self.transport.close()
            return
        setting = "API_HEADER_TIMEOUT" if what == "headers" else "API_BODY_TIMEOUT"
        detail = f"the request's {what} did not arrive within {seconds:g} s ({setting})"
        self._hang_up(_raw(RequestTimeout(detail)))

    def _hang_up(self, answer: bytes) -> None:
        """Sends `answer` and closes: at once for writing, for reading after HANG_UP_S (closing a socket with
        unread data resets it, and the client might never read the answer). The app, if it waits for the body,
        sees the client gone."""
        self._hung_up = True
        self.transport.write(answer)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.loop.call_later(self.HANG_UP_S, self.transport.close)


def protocol(settings: ApiSettings, cut: Callable[[str], None]) -> type[GuardedProtocol]:
    limits = {
        "header_timeout": settings.api_header_timeout,
        "body_timeout": settings.api_body_timeout,
        "max_connections": settings.api_max_connections,
        "cut": staticmethod(cut),
    }
    return type("GuardedProtocol", (GuardedProtocol,), limits)


def config(app: Any, settings: ApiSettings, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for `app` (api.app.create_app's) under `settings` (the process and the tests'
    harness share it)."""
    return uvicorn.Config(
        app, http=protocol(settings, app.state.metrics.cut), host=settings.api_host, port=settings.api_port,
        access_log=settings.api_access_log, **options,
    )  # fmt: skip
