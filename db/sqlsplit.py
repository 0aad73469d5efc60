"""Split a SQL script into statements, so a failing migration can say which statement failed.

Understands what PostgreSQL scripts contain: '…' and E'…' strings, "…" identifiers, $tag$…$tag$ bodies,
-- and (nested) /* */ comments. Everything else is passed through untouched.
"""

import re
from dataclasses import dataclass

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$")


@dataclass(frozen=True)
class Statement:
    text: str
    line: int
    """1-based line of the script where the statement starts."""


def _skip_quoted(sql: str, i: int, quote: str, backslash_escapes: bool) -> int:
    """Return the index just past the quoted literal that opens at sql[i]."""
    i += 1
    while i < len(sql):
        c = sql[i]
        if backslash_escapes and c == "\\":
            i += 2
            continue
        if c == quote:
            if i + 1 < len(sql) and sql[i + 1] == quote:  # doubled quote is an escaped quote
                i += 2
                continue
            return i + 1
        i += 1
    return i


def _skip_block_comment(sql: str, i: int) -> int:
    depth, i = 1, i + 2
    while i < len(sql) and depth:
        if sql.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif sql.startswith("*/", i):
            depth, i = depth - 1, i + 2
        else:
            i += 1
    return i


def split_statements(sql: str) -> list[Statement]:
    statements: list[Statement] = []
    start = i = 0
    while i < len(sql):
        c = sql[i]
        if c == "'":
            escapes = i > 0 and sql[i - 1] in "eE" and (i == 1 or not (sql[i - 2].isalnum() or sql[i - 2] == "_"))
            i = _skip_quoted(sql, i, "'", escapes)
        elif c == '"':
            i = _skip_quoted(sql, i, '"', False)
        elif sql.startswith("--", i):
            newline = sql.find("\n", i)
            i = len(sql) if newline < 0 else newline + 1
        elif sql.startswith("/*", i):
            i = _skip_block_comment(sql, i)
        elif (
            c == "$"
            and (m := _DOLLAR_TAG.match(sql, i))
            and not (i > 0 and (sql[i - 1].isalnum() or sql[i - 1] == "_"))
        ):
            end = sql.find(m.group(0), m.end())
            i = len(sql) if end < 0 else end + len(m.group(0))
        elif c == ";":
            _append(statements, sql, start, i + 1)
            start = i = i + 1
        else:
            i += 1
    _append(statements, sql, start, len(sql))
    return statements


def _skip_noise(sql: str, i: int, end: int) -> int:
    """Index of the first character at or after i that is not whitespace or a comment."""
    while i < end:
        if sql[i].isspace():
            i += 1
        elif sql.startswith("--", i):
            newline = sql.find("\n", i, end)
            i = end if newline < 0 else newline + 1
        elif sql.startswith("/*", i):
            i = _skip_block_comment(sql, i)
        else:
            break
    return min(i, end)


def _append(statements: list[Statement], sql: str, start: int, end: int) -> None:
    """Keep sql[start:end] as a statement, minus the comments before it; drop it if nothing is left."""
    code_start = _skip_noise(sql, start, end)
    text = sql[code_start:end].strip()
    if text.rstrip(";").strip():
        statements.append(Statement(text, sql.count("\n", 0, code_start) + 1))
