"""The current tenant and caller scopes, carried in a ContextVar.

The tenant is set only from a verified credential (API key) or explicitly by an operator command
(CLI ``--tenant``); there is no default tenant and no header that can choose one.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum


class Scope(StrEnum):
    ADMIN = "admin"
    READ = "read"
    POS = "pos"
    CONNECTOR = "connector"


# What each scope may do. ``admin`` implies everything.
WRITE_SCOPES = {Scope.ADMIN, Scope.POS, Scope.CONNECTOR}


@dataclass(frozen=True)
class Principal:
    tenant_id: uuid.UUID
    scopes: frozenset[Scope]
    api_key_id: uuid.UUID | None = None
    timezone: str = "Asia/Shanghai"

    def can(self, *needed: Scope) -> bool:
        return Scope.ADMIN in self.scopes or any(s in self.scopes for s in needed)


current_principal: ContextVar[Principal | None] = ContextVar("memberhub_principal", default=None)
