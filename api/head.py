"""HEAD on every GET route (RFC 9110 § 9.3.2): FastAPI answers a HEAD with 405. This runs the GET and sends its
status and headers only; a stream's HEAD ends as soon as its headers are out."""

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        ended = False

        async def headers_only(message: Message) -> None:
            nonlocal ended
            if ended:
                return
            if message["type"] == "http.response.start":
                await send(message)
                # The server (uvicorn, which knows the request was a HEAD) writes no body: this ends the response,
                # and the GET's own body, a stream's too, is dropped (its server-side reader sees a disconnect).
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                ended = True

        await self.app({**scope, "method": "GET"}, receive, headers_only)
