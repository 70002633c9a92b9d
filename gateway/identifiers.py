"""Identifier kinds and normalisation for ONE ID (ARCHITECTURE §4).

An identifier is ``(kind, scope, value)``. Values are comparable only within one kind and scope:
a WeChat openid means nothing outside its appid, a Tmall ouid nothing outside its shop. Global
kinds (phone, email, tmall_omid) use the scope ``"*"``.

Kinds are data, not an enum: :func:`register_kind` lets a connector add the identifiers of a new
channel without touching the core. A *strong* kind identifies one person and merges members that
share it; a *weak* kind (per-app openids, a parcel's receiver phone) attaches to whoever a record
resolves to but never merges people on its own.

Personal data never reaches the database in clear: phones are normalised to E.164 and stored as
``HMAC-SHA256(tenant key, e164)`` for matching plus a masked form for display; emails likewise.
The tenant key is derived from the master secret and the tenant id, so there is no key to store
and two tenants' hashes of the same phone differ (no cross-brand linking).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass

import phonenumbers

from gateway.errors import InvalidInput

GLOBAL_SCOPE = "*"
MAX_VALUE_LENGTH = 128
_NAME = re.compile(r"^[a-z][a-z0-9_]{1,31}$")
_SCOPE = re.compile(r"^[A-Za-z0-9_.:@/+=-]{1,64}$")
# Platform ids are opaque tokens; this set covers openids, unionids, ouids, card numbers and
# JD xids (which contain "*")
# while refusing whitespace, quotes and control characters.
_OPAQUE = re.compile(r"^[A-Za-z0-9_.:@/+=*-]{1,128}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


@dataclass(frozen=True)
class IdentifierKind:
    """One kind of identifier.

    ``default_scope`` is ``"*"`` for global kinds; for scoped kinds it is ``""`` and every
    identifier must name its platform scope (appid, shop, brand).
    """

    name: str
    strong: bool
    pii: bool
    default_scope: str
    description: str
    resolves: bool = True
    """Whether the identifier may *find* a member. ``False`` for ids that are not the person's
    own (a parcel receiver's phone): they are attached to whoever the rest of the record
    resolves to, but never decide who that is."""

    @property
    def is_global(self) -> bool:
        return self.default_scope == GLOBAL_SCOPE


KINDS: dict[str, IdentifierKind] = {}


def register_kind(kind: IdentifierKind) -> IdentifierKind:
    """Add an identifier kind. Re-registering an identical kind is a no-op; redefining one
    (say, turning a weak kind strong) is refused, because it would change who gets merged."""
    if not _NAME.match(kind.name):
        raise ValueError(f"identifier kind name {kind.name!r} must match {_NAME.pattern}")
    if kind.default_scope not in (GLOBAL_SCOPE, ""):
        raise ValueError("default_scope must be '*' (global) or '' (scope required)")
    existing = KINDS.get(kind.name)
    if existing is not None and existing != kind:
        raise ValueError(f"identifier kind {kind.name!r} is already registered differently")
    KINDS[kind.name] = kind
    return kind


for _kind in (
    IdentifierKind("phone", True, True, GLOBAL_SCOPE, "Mobile phone, E.164, keyed hash"),
    IdentifierKind("email", True, True, GLOBAL_SCOPE, "Email address, lower-cased, keyed hash"),
    IdentifierKind("wechat_unionid", True, False, "", "WeChat unionid within an open platform"),
    IdentifierKind("tmall_ouid", True, False, "", "Tmall shop-scoped buyer id (ouid)"),
    IdentifierKind("tmall_omid", True, False, GLOBAL_SCOPE, "Tmall brand-wide member id (omid)"),
    IdentifierKind("douyin_union_id", True, False, "", "Douyin union id within a shop"),
    IdentifierKind("youzan_open_id", True, False, "", "Youzan buyer open id within a shop"),
    IdentifierKind("pos_card", True, False, "", "Membership card number within a brand's POS"),
    IdentifierKind("wechat_openid", False, False, "", "WeChat openid within one appid"),
    IdentifierKind("douyin_open_id", False, False, "", "Douyin open id within one app"),
    IdentifierKind("jd_open_id", False, False, "", "JD buyer open id within one shop"),
    IdentifierKind(
        "receiver_phone", False, True, "", "Parcel receiver phone (may be a gift)", resolves=False
    ),
):
    register_kind(_kind)

_PHONE_KINDS = frozenset({"phone", "receiver_phone"})
_EMAIL_KINDS = frozenset({"email"})


@dataclass(frozen=True)
class NormalisedIdentifier:
    """An identifier ready to store: ``value`` is the match key, ``display`` the safe form."""

    kind: str
    scope: str
    value: str
    display: str
    strong: bool


def tenant_key(master: bytes, tenant_id: uuid.UUID) -> bytes:
    """The tenant's hashing key, derived on demand so that no key material is stored."""
    return hmac.new(master, b"memberhub/identity/v1/" + tenant_id.bytes, hashlib.sha256).digest()


def _keyed_hash(key: bytes, kind_family: str, value: str) -> str:
    return hmac.new(key, f"{kind_family}:{value}".encode(), hashlib.sha256).hexdigest()


def normalise_phone(raw: str, default_region: str = "CN") -> str:
    """E.164 form of a phone number; numbers without a country code are read as ``default_region``.

    ``13800138000``, ``+86 138-0013-8000`` and ``008613800138000`` all give ``+8613800138000``.
    """
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 32:
        raise InvalidInput("phone must be a non-empty string of at most 32 characters", "value")
    try:
        number = phonenumbers.parse(raw.strip(), default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidInput(f"not a phone number: {exc}", field="value") from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidInput("not a valid phone number", field="value")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask_phone(e164: str) -> str:
    """``+8613800000000`` → ``138****0000``; other countries keep their ``+cc `` prefix."""
    number = phonenumbers.parse(e164, None)
    national = phonenumbers.national_significant_number(number)
    if len(national) >= 8:
        masked = f"{national[:3]}****{national[-4:]}"
    else:
        masked = f"{national[:1]}****{national[-2:]}"
    return masked if number.country_code == 86 else f"+{number.country_code} {masked}"


def normalise_email(raw: str) -> str:
    if not isinstance(raw, str):
        raise InvalidInput("email must be a string", field="value")
    email = raw.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise InvalidInput("not a valid email address", field="value")
    return email


def mask_email(email: str) -> str:
    """``alice@example.com`` → ``a***@example.com``."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def _scope(kind: IdentifierKind, scope: str | None) -> str:
    if kind.is_global:
        if scope not in (None, "", GLOBAL_SCOPE):
            raise InvalidInput(f"{kind.name} is global; its scope must be '*'", field="scope")
        return GLOBAL_SCOPE
    if not isinstance(scope, str) or not _SCOPE.match(scope.strip()) or scope.strip() == "*":
        raise InvalidInput(
            f"{kind.name} needs its platform scope (appid, shop or brand): 1-64 characters "
            "of letters, digits and _.:@/+=-",
            field="scope",
        )
    return scope.strip()


def normalise(kind: str, scope: str | None, raw_value: str, *, key: bytes) -> NormalisedIdentifier:
    """Validate and normalise one identifier; any problem is an :class:`InvalidInput`."""
    spec = KINDS.get(kind) if isinstance(kind, str) else None
    if spec is None:
        raise InvalidInput(f"unknown identifier kind {kind!r}", field="kind")
    sc = _scope(spec, scope)
    if not isinstance(raw_value, str) or not raw_value.strip():
        raise InvalidInput("identifier value must be a non-empty string", field="value")
    if len(raw_value) > MAX_VALUE_LENGTH:
        raise InvalidInput(f"identifier value exceeds {MAX_VALUE_LENGTH} characters", "value")
    if kind in _PHONE_KINDS:
        e164 = normalise_phone(raw_value)
        # One hash family for every phone kind: a receiver phone and a member phone with the
        # same number share a match key (matching across kinds stays an explicit decision).
        return NormalisedIdentifier(
            kind, sc, _keyed_hash(key, "phone", e164), mask_phone(e164), spec.strong
        )
    if kind in _EMAIL_KINDS:
        email = normalise_email(raw_value)
        return NormalisedIdentifier(
            kind, sc, _keyed_hash(key, "email", email), mask_email(email), spec.strong
        )
    value = raw_value.strip()
    if not _OPAQUE.match(value):
        raise InvalidInput(
            f"{kind} value may hold only letters, digits and _.:@/+=-", field="value"
        )
    # A connector-registered PII kind without a dedicated normaliser is still never shown whole.
    display = f"{value[:2]}***{value[-2:]}" if spec.pii else value
    return NormalisedIdentifier(kind, sc, value, display, spec.strong)


def resolves(kind: str) -> bool:
    """May this kind find a member (see :attr:`IdentifierKind.resolves`)?"""
    k = KINDS.get(kind)
    return k is not None and k.resolves


def is_strong(kind: str) -> bool:
    """Unknown kinds (say, rows written by a connector that is no longer installed) are weak."""
    spec = KINDS.get(kind)
    return bool(spec and spec.strong)
