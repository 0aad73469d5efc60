"""The OpenAPI document's path templates (`/balances/product/{product_id}`), matched against a request's path: the
route a request answered before routing would have reached (for its metrics), and the methods a path has (a 405's
`Allow`)."""

import functools
import re
from typing import Any

_PAGES = frozenset({"/docs", "/openapi.json", "/dashboard"})


@functools.cache
def _templates(app: Any) -> tuple[tuple[re.Pattern[str], str, frozenset[str]], ...]:
    return tuple(
        (re.compile(re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template))), template, frozenset(map(str.upper, ops)))
        for template, ops in app.openapi()["paths"].items()
    )


def template_of(app: Any, path: str) -> str | None:
    """The first template `path` matches, whatever the method; None when none does."""
    return next((template for pattern, template, _ in _templates(app) if pattern.fullmatch(path)), None)


def methods_of(app: Any, path: str) -> list[str]:
    """Every method of every template `path` matches (a path can match several), HEAD wherever GET is."""
    if path in _PAGES:
        return ["GET", "HEAD"]
    found = {m for pattern, _, methods in _templates(app) if pattern.fullmatch(path) for m in methods}
    return sorted(found | {"HEAD"} if "GET" in found else found)
