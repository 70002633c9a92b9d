"""Connector secrets at rest: Fernet-encrypted per tenant, or references resolved at use.

A secret field's value is either the secret itself (encrypted with a key derived from the master
secret and the tenant id — so there is no key to store, and one tenant's ciphertext is useless
under another's key) or a reference ``env:NAME`` that is stored as given and resolved from the
process environment when the connector is built (for operators who keep secrets in a vault or a
Kubernetes Secret). Plaintext never reaches the database, the API or the logs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import uuid
from collections.abc import Mapping
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from gateway.sync.errors import ConfigError

REFERENCE_PREFIX = "env:"


def tenant_fernet(master: bytes, tenant_id: uuid.UUID) -> Fernet:
    key = hmac.new(master, b"memberhub/secrets/v1/" + tenant_id.bytes, hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def seal(master: bytes, tenant_id: uuid.UUID, secrets: Mapping[str, Any]) -> str:
    """Encrypt a mapping of secret fields (an empty mapping seals to ``""``)."""
    if not secrets:
        return ""
    payload = json.dumps(dict(secrets), sort_keys=True).encode()
    return tenant_fernet(master, tenant_id).encrypt(payload).decode()


def unseal(master: bytes, tenant_id: uuid.UUID, token: str) -> dict[str, Any]:
    if not token:
        return {}
    try:
        raw = tenant_fernet(master, tenant_id).decrypt(token.encode())
    except InvalidToken as exc:
        raise ConfigError(
            "stored channel secrets cannot be decrypted (was MEMBERHUB_SECRET_KEY changed?)"
        ) from exc
    return dict(json.loads(raw))


def resolve(secrets: Mapping[str, Any], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Replace ``env:NAME`` references by the environment's value."""
    env = os.environ if env is None else env
    out: dict[str, Any] = {}
    for key, value in secrets.items():
        if isinstance(value, str) and value.startswith(REFERENCE_PREFIX):
            name = value[len(REFERENCE_PREFIX) :]
            if name not in env:
                raise ConfigError(f"secret {key!r} refers to ${name}, which is not set")
            out[key] = env[name]
        else:
            out[key] = value
    return out


def describe(secrets: Mapping[str, Any]) -> dict[str, str]:
    """What the API may show about secrets: which are set, and references by name."""
    return {
        k: (v if isinstance(v, str) and v.startswith(REFERENCE_PREFIX) else "set")
        for k, v in secrets.items()
    }
