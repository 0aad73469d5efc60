"""Throw-away databases for tests and benchmarks: created (optionally from a template) and dropped by name."""

import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg


def with_database(url: str, name: str) -> str:
    """The same server URL, naming another database."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def create_database(admin_url: str, prefix: str, template: str | None = None) -> str:
    """Create a database with a fresh name starting with `prefix`; return the name."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    clause = f" TEMPLATE {_quoted(template)}" if template else ""
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f"CREATE DATABASE {_quoted(name)}{clause}")
    finally:
        await admin.close()
    return name


async def drop_database(admin_url: str, name: str) -> None:
    admin = await asyncpg.connect(admin_url)
    try:
        # Plain DROP stops autovacuum by itself; FORCE (for a leftover session) needs pg_signal_backend.
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {_quoted(name)}")
        except asyncpg.ObjectInUseError:
            await admin.execute(f"DROP DATABASE IF EXISTS {_quoted(name)} WITH (FORCE)")
    finally:
        await admin.close()
