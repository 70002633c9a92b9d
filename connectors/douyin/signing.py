"""Doudian (抖店 open platform) signatures — pure functions (PLATFORMS.md §3.2).

API requests [OFFICIAL-SDK: the official Go SDK ``utils/sign_util.go`` and the Java SDK
``com.doudian.open.utils.SignUtil``]::

    param_json = canonical JSON of the business params (keys sorted recursively, compact,
                 raw UTF-8, no HTML escaping)
    pattern    = secret + "app_key" + app_key + "method" + method + "param_json" + param_json
                        + "timestamp" + timestamp + "v" + "2" + secret
    sign       = hex_lower(MD5(pattern))                          sign_method=md5
               = hex_lower(HMAC_SHA256(key=secret, msg=pattern))  sign_method=hmac-sha256

Golden vectors T6 (md5) and T7 (hmac-sha256) in ``signing_vectors.json``.

Message push (webhook) [SDK evidence only: PyPI ``doudian`` 0.6 ``core.py`` ``callback()``]: the
``event-sign`` header is ``hex_lower(MD5(app_key + raw_body + app_secret))`` and the ``app-id``
header is the app key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

SIGN_METHODS = ("md5", "hmac-sha256")
API_VERSION = "2"


def canonical_json(params: Any) -> str:
    """The ``param_json`` string: keys sorted at every depth, no whitespace, non-ASCII kept as raw
    UTF-8 (the official Go/Java SDKs; PyPI ``doudian`` escapes to ``\\uXXXX`` and so signs CJK
    payloads differently), and no HTML escaping of ``<>&`` (Go SDK ``utils.Marshal``)."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sign_pattern(app_key: str, secret: str, method: str, param_json: str, timestamp: str) -> str:
    """The exact string that is hashed (the parameter order is fixed: it is alphabetical)."""
    return (
        f"{secret}app_key{app_key}method{method}param_json{param_json}"
        f"timestamp{timestamp}v{API_VERSION}{secret}"
    )


def sign(
    app_key: str,
    secret: str,
    method: str,
    param_json: str,
    timestamp: str,
    sign_method: str = "hmac-sha256",
) -> str:
    """The ``sign`` query parameter for one API call (lower-case hex)."""
    pattern = sign_pattern(app_key, secret, method, param_json, timestamp).encode("utf-8")
    if sign_method == "md5":
        return hashlib.md5(pattern).hexdigest()
    if sign_method == "hmac-sha256":
        return hmac.new(secret.encode("utf-8"), pattern, hashlib.sha256).hexdigest()
    raise ValueError(f"unknown Doudian sign_method {sign_method!r}; use one of {SIGN_METHODS}")


def event_sign(app_key: str, secret: str, raw_body: bytes) -> str:
    """The ``event-sign`` header of a message push: MD5(app_key + raw body + app_secret)."""
    return hashlib.md5(app_key.encode("utf-8") + raw_body + secret.encode("utf-8")).hexdigest()


def verify_event_sign(app_key: str, secret: str, raw_body: bytes, given: str) -> bool:
    """Constant-time check of a push's ``event-sign`` header."""
    expected = event_sign(app_key, secret, raw_body)
    return hmac.compare_digest(expected, (given or "").strip().lower())


def verify_sign(
    app_key: str,
    secret: str,
    method: str,
    param_json: str,
    timestamp: str,
    sign_method: str,
    given: str,
) -> bool:
    """Server side: does ``given`` sign exactly this ``param_json`` (constant time)?"""
    try:
        expected = sign(app_key, secret, method, param_json, timestamp, sign_method)
    except ValueError:
        return False
    return hmac.compare_digest(expected, (given or "").lower())
