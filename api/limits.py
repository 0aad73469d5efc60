"""What a request body may be: JSON (else 415), and at most 64 KiB (else 413), refused before the app reads it; the
writes of many lines (a document, an inventory count: up to 10,000) take up to 2 MiB."""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import BodyTooLarge, UnsupportedMediaType, answer

MAX_BODY_BYTES = 64 * 1024  # a body of one operation, transfer or product is a few hundred bytes
LARGE_BODIES = {"/documents": 2 * 1024 * 1024, "/inventory-counts": 2 * 1024 * 1024}  # 10,000 lines, ≈ 100 bytes each
_DRAIN_LIMIT = 16


class BodyLimitMiddleware:
    """A body whose Content-Type is not JSON (`application/json`, or `application/…+json`): 415, unread. (FastAPI
    would read any type as JSON, or answer 422.) Content-Length over the limit: refused unread. No Content-Length
    (a chunked body): read up to the limit first, then handed on. (FastAPI's own limit answers in text/plain, or
    as a 400 for a chunked body.)"""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES, larger: dict[str, int] = LARGE_BODIES) -> None:
        self.app = app
        self.default_limit = limit
        self.larger = larger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope["path"], self.default_limit)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        has_body = (length is not None and length != b"0") or b"transfer-encoding" in headers
        if has_body and not _is_json(headers.get(b"content-type", b"")):
            got = headers.get(b"content-type", b"").decode("latin-1")[:100] or "none"
            detail = f"a request body must be JSON, Content-Type: application/json (got: {got})"
            await answer(scope, receive, send, UnsupportedMediaType(detail))  # the body, unread, is skipped
            return
        if length is not None:
            if not length.isdigit() or int(length) > limit:
                await self._refuse(scope, receive, send, limit)
                return
            await self.app(scope, receive, send)
            return
        if b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
            if size > limit:
                # Read on (and drop) a while, so the client sees the 413, not a connection reset mid-upload.
                while size <= _DRAIN_LIMIT * limit and message.get("more_body", False):
                    message = await receive()
                    size += len(message.get("body", b""))
                await self._refuse(scope, receive, send, limit)
                return
        if size > limit:
            await self._refuse(scope, receive, send, limit)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        too_large = BodyTooLarge(f"a request body here is at most {limit:,} bytes", headers={"Connection": "close"})
        await answer(scope, receive, send, too_large)


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))
