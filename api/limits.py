"""The largest request body the API reads: a bigger one is refused with a 413 problem before the app reads it."""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem_response

MAX_BODY_BYTES = 64 * 1024  # the largest body of this API is a few hundred bytes
_DRAIN_LIMIT = 16


class BodyLimitMiddleware:
    """Content-Length over the limit: refused unread. No Content-Length (a chunked body): read up to the limit
    first, then handed on. (FastAPI's own limit answers in text/plain, or as a 400 for a chunked body.)"""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.limit:
                await self._refuse(scope, receive, send)
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
            if size > self.limit:
                # Read on (and drop) a while, so the client sees the 413, not a connection reset mid-upload.
                while size <= _DRAIN_LIMIT * self.limit and message.get("more_body", False):
                    message = await receive()
                    size += len(message.get("body", b""))
                await self._refuse(scope, receive, send)
                return
        if size > self.limit:
            await self._refuse(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413, "/problems/body-too-large", "Request body too large",
            f"a request body is at most {self.limit:,} bytes", {"Connection": "close"},
        )  # fmt: skip
        await response(scope, receive, send)
