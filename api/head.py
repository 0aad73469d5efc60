"""HEAD on every GET route (RFC 9110 § 9.3.2): FastAPI answers a HEAD with 405. This runs the GET and sends its
status and headers only; a stream's HEAD ends as soon as its headers are out (uvicorn, which knows the request
was a HEAD, writes no body, and tells a reader of the request that the client is gone once the response is
complete: Starlette's streaming response then stops). Routes that would do work for a body nobody reads (the live
stream subscribes to the feed) see `request.state.head` and skip it."""

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
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                ended = True

        as_get = {**scope, "method": "GET"}
        as_get.setdefault("state", {})["head"] = True
        try:
            await self.app(as_get, receive, headers_only)
        finally:
            if "route" in as_get:  # for the metrics, outside: the route the GET took
                scope["route"] = as_get["route"]
