"""Each process's metrics and health endpoints.

Every process keeps its metrics in a registry of its own (prometheus_client), which also holds the library's
process metrics: resident memory, CPU seconds, open file descriptors (`process_*`), and the interpreter's
(`python_*`). Every process serves it with `serve` on a port of its own, apart from its work (so it answers while
PostgreSQL or Kafka is down, and needs no key): `/metrics`, `/healthz` (the process is alive) and `/readyz` (it
can do its work: 200 or 503, with the details as JSON)."""

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

log = logging.getLogger(__name__)
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
REQUEST_TIMEOUT_S = 5.0

# Without this every counter and histogram has a second series, `…_created`, which nothing here reads.
disable_created_metrics()  # type: ignore[no-untyped-call]

Readiness = Callable[[], tuple[bool, dict[str, object]] | Awaitable[tuple[bool, dict[str, object]]]]
"""Whether the process can do its work now, and the details /readyz shows (a function, or a coroutine's)."""


def new_registry() -> CollectorRegistry:
    """A process's registry, with the library's process, platform and garbage-collector metrics in it."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus text format."""
    return generate_latest(registry)


async def serve(registry: CollectorRegistry, readiness: Readiness, host: str, port: int) -> asyncio.Server:
    """/metrics, /healthz and /readyz on host:port (HTTP/1.1, GET and HEAD, one request per connection)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT_S)
            while (await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT_S)) not in (b"\r\n", b"\n", b""):
                pass  # headers: not needed
            parts = request.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
                status, body, ctype = "405 Method Not Allowed", b"only GET\n", "text/plain"
            elif path == "/metrics":
                status, body, ctype = "200 OK", exposition(registry), CONTENT_TYPE
            elif path == "/healthz":
                status, body, ctype = "200 OK", b"ok\n", "text/plain"
            elif path == "/readyz":
                try:
                    answer = readiness()
                    ready, detail = await answer if inspect.isawaitable(answer) else answer
                except Exception:
                    log.exception("the readiness check failed")
                    ready, detail = False, {"error": "the readiness check failed; the error is in the log"}
                status = "200 OK" if ready else "503 Service Unavailable"
                body, ctype = json.dumps(detail).encode() + b"\n", "application/json"
            else:
                status, body, ctype = "404 Not Found", b"try /metrics, /healthz or /readyz\n", "text/plain"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n".encode()
                + (body if parts[:1] != ["HEAD"] else b"")
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError) as e:
            log.debug("metrics request dropped: %s", e)
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
