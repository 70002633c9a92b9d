"""Coupon codes: unguessable, typo-proof, short enough to read out at a till.

A code is 12 random Crockford base32 symbols (60 bits from :mod:`secrets`) plus one check symbol,
shown in groups: ``K7QX-9M2P-4D8R-T``. The alphabet ``0-9 A-Z`` without ``I L O U`` has no
look-alikes; on input, case, spaces and dashes are ignored and ``O`` reads as ``0``, ``I``/``L``
as ``1`` (Crockford's decoding rules), so a clerk typing what they see still matches.

**Check symbol.** The 13 symbols ``x_0 … x_12`` (``x_12`` the check) are elements of GF(32)
(polynomial ``x⁵ + x² + 1``, primitive, so α has order 31) and a code is valid iff
``Σ x_i · α^i = 0``. A single wrong symbol adds ``e · α^k ≠ 0``; swapping two adjacent
different symbols ``a, b`` adds ``(a ⊕ b) · α^k · (1 ⊕ α) ≠ 0`` — so **every** single-symbol
typo and **every** adjacent transposition is rejected by :func:`parse` before any lookup (the
check symbol is itself covered; 13 positions < 31 keeps the weights distinct). A random string
passes with probability 1/32.

**Collision math.** Codes are drawn uniformly from N = 2⁶⁰ ≈ 1.15·10¹⁸. With n = 10⁷ codes in
one tenant, a new code collides with an existing one with probability n/N ≈ 8.7·10⁻¹², and the
chance that *any* two of the 10⁷ ever collided is about n²/2N ≈ 4.3·10⁻⁵. The unique index on
``(tenant_id, code)`` makes a collision harmless: issuance draws again (:data:`MAX_ATTEMPTS`).
The same numbers bound guessing: with 10⁷ live codes, a guessed well-formed code is real with
probability ≈ 8.7·10⁻¹², i.e. ~10¹¹ attempts per expected hit.
"""

from __future__ import annotations

import secrets

from gateway.errors import InvalidInput

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
BODY = 12
"""Random symbols per code: 12 × 5 = 60 bits."""
MAX_ATTEMPTS = 8
"""Draws before issuance gives up on collisions (each fails with probability < 10⁻¹⁰)."""

_VALUE = {c: i for i, c in enumerate(ALPHABET)}
_VALUE.update({"O": 0, "I": 1, "L": 1})
_POLY = 0b100101  # x^5 + x^2 + 1


def _mul(a: int, b: int) -> int:
    r = 0
    while b:
        if b & 1:
            r ^= a
        b >>= 1
        a <<= 1
        if a & 0b100000:
            a ^= _POLY
    return r


_POW = [1]
for _ in range(40):
    _POW.append(_mul(_POW[-1], 2))
_INV_POW_BODY = _POW[31 - BODY]  # α^-12 = α^19
_TABLE = [[_mul(v, _POW[i]) for v in range(32)] for i in range(BODY + 1)]


def _syndrome(values: list[int]) -> int:
    s = 0
    for i, v in enumerate(values):
        s ^= _TABLE[i][v]
    return s


def check_symbol(body: str) -> str:
    """The check symbol of a 12-symbol body (canonical alphabet)."""
    values = [_VALUE[c] for c in body]
    return ALPHABET[_mul(_syndrome(values), _INV_POW_BODY)]


def format_code(symbols: str) -> str:
    """``K7QX9M2P4D8RT`` → ``K7QX-9M2P-4D8R-T``."""
    return "-".join(symbols[i : i + 4] for i in range(0, len(symbols), 4))


_CHECK = [ALPHABET[_mul(s, _INV_POW_BODY)] for s in range(32)]
"""Check symbol by syndrome of the body (bulk issuance draws 10⁵ codes at a time)."""


def generate() -> str:
    """A new random code, grouped, with its check symbol."""
    n = secrets.randbits(5 * BODY)
    values = [(n >> (5 * i)) & 31 for i in range(BODY)]
    s = 0
    for row, x in zip(_TABLE, values, strict=False):
        s ^= row[x]
    b = "".join([ALPHABET[x] for x in values])
    return f"{b[0:4]}-{b[4:8]}-{b[8:12]}-{_CHECK[s]}"


def parse(text: object) -> str:
    """The canonical grouped form of a typed code, or ``InvalidInput(field="code")`` when it is
    malformed or its check symbol does not match (a typo) — before anything is looked up."""
    if not isinstance(text, str) or len(text) > 40:
        raise InvalidInput("code must be a coupon code like K7QX-9M2P-4D8R-T", field="code")
    raw = text.replace("-", "").replace(" ", "").upper()
    if len(raw) != BODY + 1 or any(c not in _VALUE for c in raw):
        raise InvalidInput("code must be a coupon code like K7QX-9M2P-4D8R-T", field="code")
    values = [_VALUE[c] for c in raw]
    if _syndrome(values) != 0:
        raise InvalidInput("code is mistyped (check symbol does not match)", field="code")
    return format_code("".join(ALPHABET[v] for v in values))


def is_valid(text: object) -> bool:
    try:
        parse(text)
    except InvalidInput:
        return False
    return True
