"""Runtime settings, read once from ``MEMBERHUB_*`` environment variables.

Everything has a zero-setup default (SQLite in the working directory) so that the demo runs from one
command; production overrides the database URL and the secret key.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./memberhub.db"


def _bool(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(value: str | None, default: int) -> int:
    return default if value in (None, "") else int(value)


def _secret_key(explicit: str | None, database_url: str) -> bytes:
    """The master key for keyed phone hashes and per-tenant derived keys.

    Production must set ``MEMBERHUB_SECRET_KEY``. For the embedded SQLite default we create a random
    key once and keep it in ``.memberhub-secret`` beside the database, so hashes stay stable across
    restarts without any set-up.
    """
    if explicit:
        return explicit.encode()
    if database_url.startswith("sqlite"):
        path = Path(".memberhub-secret")
        if not path.exists():
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        return path.read_text().strip().encode()
    raise RuntimeError("MEMBERHUB_SECRET_KEY must be set unless the database is the SQLite default")


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    secret_key: bytes = field(default=b"", repr=False)
    pool_size: int = 8
    introspection: bool = True
    graphiql: bool = True
    max_query_depth: int = 10
    max_query_tokens: int = 2000
    max_aliases: int = 30
    default_points_ttl_days: int = 365
    hold_ttl_seconds_max: int = 24 * 3600

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        url = env.get("MEMBERHUB_DATABASE_URL") or DEFAULT_DATABASE_URL
        return cls(
            database_url=url,
            secret_key=_secret_key(env.get("MEMBERHUB_SECRET_KEY"), url),
            pool_size=_int(env.get("MEMBERHUB_DB_POOL_SIZE"), 8),
            introspection=_bool(env.get("MEMBERHUB_INTROSPECTION"), True),
            graphiql=_bool(env.get("MEMBERHUB_GRAPHIQL"), True),
            max_query_depth=_int(env.get("MEMBERHUB_MAX_QUERY_DEPTH"), 10),
            max_query_tokens=_int(env.get("MEMBERHUB_MAX_QUERY_TOKENS"), 2000),
            max_aliases=_int(env.get("MEMBERHUB_MAX_ALIASES"), 30),
            default_points_ttl_days=_int(env.get("MEMBERHUB_POINTS_TTL_DAYS"), 365),
        )
