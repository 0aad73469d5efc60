"""What the route modules share: the store of the running app, and the shape of an id in a path."""

from typing import Annotated

from fastapi import Depends, Path, Request

from api.models import MAX_BIGINT
from api.store import Store


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


Db = Annotated[Store, Depends(_store)]
PathId = Annotated[int, Path(ge=1, le=MAX_BIGINT)]
