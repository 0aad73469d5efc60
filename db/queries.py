"""Named SQL queries, kept in db/sql/*.sql under `-- name: <query>` headers and loaded once."""

import re
from functools import cache
from pathlib import Path

SQL_DIR = Path(__file__).parent / "sql"
_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.M)


def parse_queries(text: str) -> dict[str, str]:
    parts = _HEADER.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    queries = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body.strip()
    return queries


@cache
def queries(module: str) -> dict[str, str]:
    """The named queries of db/sql/<module>.sql."""
    return parse_queries((SQL_DIR / f"{module}.sql").read_text(encoding="utf-8"))
