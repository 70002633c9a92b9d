"""TOP (Taobao Open Platform) request signing and time formats.

Rule (official "API调用方法详解", docId 101617, and the official Java/C# SDKs'
``TaobaoUtils.signTopRequest``):

1. take every request parameter, system and application, except ``sign`` (and file params);
   parameters with an empty value are skipped (``areNotEmpty(key, value)`` in the SDKs);
2. sort them by name in ASCII order and concatenate ``name + value`` with no separator;
3. for batch/SPI calls whose payload is a raw body, append the body string after the params;
4. digest the UTF-8 bytes: ``md5`` → ``MD5(secret + s + secret)``; ``hmac`` →
   ``HMAC-MD5(secret, s)``; ``hmac-sha256`` → ``HMAC-SHA256(secret, s)``;
5. hex-encode in upper case.

Values are signed raw (before URL encoding) and exactly as sent: timestamps as
``yyyy-MM-dd HH:mm:ss`` in GMT+8, booleans as ``true``/``false``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone

SIGN_METHODS = ("md5", "hmac", "hmac-sha256")
CST = timezone(timedelta(hours=8), "GMT+8")
"""TOP's wall clock: every ``yyyy-MM-dd HH:mm:ss`` value on the wire is GMT+8."""
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def string_to_sign(params: Mapping[str, str], body: str | None = None) -> str:
    """The concatenation TOP signs: sorted ``name + value`` of non-empty params except
    ``sign``, then the raw ``body`` (SPI / batch requests) if any."""
    parts = [
        f"{k}{v}" for k, v in sorted(params.items()) if k and k != "sign" and v not in (None, "")
    ]
    if body:
        parts.append(body)
    return "".join(parts)


def digest(data: str, secret: str, sign_method: str) -> str:
    """Sign an already concatenated string with one of TOP's three methods (upper-case hex)."""
    raw = data.encode("utf-8")
    key = secret.encode("utf-8")
    if sign_method == "md5":
        return hashlib.md5(key + raw + key).hexdigest().upper()
    if sign_method == "hmac":
        return hmac.new(key, raw, hashlib.md5).hexdigest().upper()
    if sign_method == "hmac-sha256":
        return hmac.new(key, raw, hashlib.sha256).hexdigest().upper()
    raise ValueError(f"unknown TOP sign_method {sign_method!r}; use one of {SIGN_METHODS}")


def sign(params: Mapping[str, str], secret: str, sign_method: str, body: str | None = None) -> str:
    """``sign`` for a TOP request (or an SPI callback when ``body`` is given).

    ``sign_method`` is passed separately from ``params`` on purpose: the signature covers the
    ``sign_method`` *parameter* like any other, and the algorithm is whatever the caller says
    (one published HMAC vector carries ``sign_method=md5`` inside the signed string).
    """
    return digest(string_to_sign(params, body), secret, sign_method)


def verify(
    params: Mapping[str, str], secret: str, sign_method: str, given: str, body: str | None = None
) -> bool:
    """Constant-time check of a received ``sign`` (case-insensitive hex)."""
    try:
        expected = sign(params, secret, sign_method, body)
    except ValueError:
        return False
    return hmac.compare_digest(expected, (given or "").strip().upper())


def format_time(value: datetime) -> str:
    """An aware instant as TOP's ``yyyy-MM-dd HH:mm:ss`` (GMT+8, truncated to the second)."""
    if value.tzinfo is None:
        raise ValueError("TOP times must be formatted from aware datetimes")
    return value.astimezone(CST).strftime(TIME_FORMAT)


def parse_time(value: str) -> datetime:
    """TOP's ``yyyy-MM-dd HH:mm:ss`` (GMT+8) as an aware UTC datetime."""
    return datetime.strptime(value.strip(), TIME_FORMAT).replace(tzinfo=CST).astimezone(UTC)


def parse_timestamp_param(value: str) -> datetime:
    """The ``timestamp`` request parameter in either form the gateway accepts: the documented
    ``yyyy-MM-dd HH:mm:ss`` (GMT+8) or epoch milliseconds (what the official Python SDK sends)."""
    value = value.strip()
    if value.isdigit():
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    return parse_time(value)
