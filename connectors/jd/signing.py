"""JD JOS (宙斯) request signing — PLATFORMS.md §2.1.

``sign = UPPER(HEX(MD5(app_secret + Σ sorted(name + value) + app_secret)))`` over every system
parameter *including* ``360buy_param_json`` and excluding ``sign`` itself (the same scheme as TOP
md5; official JOS Python SDK ``jd/api/base.py sign()``). The string is encoded as UTF-8: the PyPI
``jd-sdk`` encodes with latin-1 and fails on Chinese, the platform hashes UTF-8.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

PARAM_JSON = "360buy_param_json"


def param_json(params: Mapping[str, Any]) -> str:
    """The ``360buy_param_json`` value: application params as compact JSON with keys in
    alphabetical order (per the JOS doc), Chinese kept as UTF-8 rather than ``\\u`` escapes."""
    return json.dumps(dict(params), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def signed_string(params: Mapping[str, str], secret: str) -> str:
    """``secret + name1value1name2value2… + secret`` with names sorted, ``sign`` and empty
    values left out (the SDK skips ``None``/empty values)."""
    body = "".join(
        f"{k}{params[k]}" for k in sorted(params) if k != "sign" and params[k] not in (None, "")
    )
    return f"{secret}{body}{secret}"


def sign(params: Mapping[str, str], secret: str) -> str:
    """The JOS md5 signature (upper-case hex) of ``params``."""
    return hashlib.md5(signed_string(params, secret).encode("utf-8")).hexdigest().upper()


def verify(params: Mapping[str, str], secret: str) -> bool:
    """What the gateway does: recompute the signature from the received params."""
    given = params.get("sign")
    return isinstance(given, str) and hmac.compare_digest(given.upper(), sign(params, secret))
