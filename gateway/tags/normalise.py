"""Tag text: one normal form, so ``VIP``, `` vip `` and ``vip`` are one tag.

Normal form: surrounding spaces trimmed, ASCII letters lower-cased, at most 64 characters, no
control characters or commas (a comma separates tags on the CLI). Non-ASCII text (Chinese
category names) is kept as is: the same rule is expressible in SQL on both backends, which the
set-based behaviour derivation needs (see :func:`sql_normal`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func

from gateway.errors import InvalidInput

MAX_TAG = 64
MAX_TAGS_PER_CALL = 100
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = _UPPER.lower()
_ASCII_LOWER = str.maketrans(_UPPER, _LOWER)


def normal(text: str) -> str:
    """The normal form of a tag (no length check)."""
    return text.strip(" ").translate(_ASCII_LOWER)


def tag(value: object, field: str = "tag") -> str:
    """A validated, normalised tag; ``InvalidInput(field)`` says what is wrong."""
    if not isinstance(value, str):
        raise InvalidInput("a tag must be text", field=field)
    t = normal(value)
    if not t:
        raise InvalidInput("a tag must not be empty", field=field)
    if len(t) > MAX_TAG:
        raise InvalidInput(f"a tag is at most {MAX_TAG} characters", field=field)
    if "," in t or any(ord(c) < 32 or ord(c) == 127 for c in t):
        raise InvalidInput("a tag must not contain commas or control characters", field=field)
    return t


def tags(values: object, field: str = "tags") -> list[str]:
    """1..100 validated tags, de-duplicated, in first-seen order."""
    if isinstance(values, str) or not isinstance(values, list | tuple):
        raise InvalidInput("tags must be a list", field=field)
    if not 1 <= len(values) <= MAX_TAGS_PER_CALL:
        raise InvalidInput(f"give 1-{MAX_TAGS_PER_CALL} tags", field=field)
    return list(dict.fromkeys(tag(v, f"{field}[{i}]") for i, v in enumerate(values)))


def sql_normal(dialect: str, prefix: str, expr: Any) -> Any:
    """``prefix || normal(expr)`` cut to 64 characters, in SQL (what :func:`normal` does).

    SQLite's ``lower`` only folds ASCII; PostgreSQL's folds everything, so it uses ``translate``
    with the ASCII alphabet instead. ``trim`` removes spaces only on both."""
    trimmed = func.trim(expr)
    folded = (
        func.translate(trimmed, _UPPER, _LOWER) if dialect == "postgresql" else func.lower(trimmed)
    )
    return func.substr(prefix + folded, 1, MAX_TAG)
