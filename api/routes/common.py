"""What the route modules share: the store of the running app, and the shape of an id in a path."""

from typing import Annotated

from fastapi import Path, Request

from api.models import MAX_BIGINT
from api.store import Store

PathId = Annotated[int, Path(ge=1, le=MAX_BIGINT)]


def store(request: Request) -> Store:
    """The app's store. Called, not injected: a FastAPI dependency costs more than this whole function."""
    s: Store = request.app.state.store
    return s
