"""Identifier normalisation: one phone, however typed, is one match key; PII never shown whole."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import InvalidInput
from gateway.identifiers import (
    KINDS,
    IdentifierKind,
    mask_email,
    mask_phone,
    normalise,
    normalise_phone,
    register_kind,
    tenant_key,
)
from tests.conftest import TEST_SECRET

KEY = tenant_key(TEST_SECRET, uuid.UUID(int=1))
OTHER_KEY = tenant_key(TEST_SECRET, uuid.UUID(int=2))


def test_phone_forms_normalise_to_one_e164_and_one_key() -> None:
    forms = ["13800138000", "+86 138-0013-8000", "008613800138000", " +86 (138) 0013 8000 "]
    assert {normalise_phone(f) for f in forms} == {"+8613800138000"}
    idents = {normalise("phone", "*", f, key=KEY) for f in forms}
    assert len(idents) == 1
    ident = idents.pop()
    assert ident.display == "138****8000" and ident.strong and ident.scope == "*"
    assert "13800138000" not in ident.value and len(ident.value) == 64


def test_tenant_keys_differ_so_hashes_do_not_link_brands() -> None:
    a = normalise("phone", None, "13800138000", key=KEY)
    b = normalise("phone", None, "13800138000", key=OTHER_KEY)
    assert a.value != b.value and a.display == b.display


def test_masks() -> None:
    assert mask_phone("+8613800000000") == "138****0000"
    assert mask_phone("+16502530000") == "+1 650****0000"
    assert mask_email("alice@example.com") == "a***@example.com"
    e = normalise("email", "*", "  Alice@Example.COM ", key=KEY)
    assert e.display == "a***@example.com"
    assert e.value == normalise("email", "*", "alice@example.com", key=KEY).value


@pytest.mark.parametrize(
    ("kind", "scope", "value", "field"),
    [
        ("phone", "*", "12345", "value"),
        ("phone", "*", "not a phone", "value"),
        ("phone", "*", "1" * 40, "value"),
        ("email", "*", "no-at-sign", "value"),
        ("fax", "*", "123", "kind"),
        ("wechat_openid", "*", "o123", "scope"),
        ("wechat_openid", "", "o123", "scope"),
        ("wechat_openid", "wx1", "", "value"),
        ("wechat_openid", "wx1", "x" * 129, "value"),
        ("wechat_openid", "wx1", "has space", "value"),
        ("wechat_openid", "wx1", "quote'", "value"),
        ("tmall_omid", "shop1", "m1", "scope"),
    ],
)
def test_invalid_identifiers_are_rejected(kind: str, scope: str, value: str, field: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        normalise(kind, scope, value, key=KEY)
    assert exc.value.field == field


def test_kinds_strong_and_weak_and_registration() -> None:
    strong = {k for k, v in KINDS.items() if v.strong}
    assert {"phone", "email", "wechat_unionid", "tmall_ouid", "tmall_omid", "pos_card"} <= strong
    assert not KINDS["wechat_openid"].strong and not KINDS["receiver_phone"].strong
    kind = IdentifierKind("kuaishou_open_id", False, False, "", "Kuaishou open id")
    register_kind(kind)
    register_kind(kind)  # idempotent
    assert normalise("kuaishou_open_id", "app1", "ks-1", key=KEY).strong is False
    with pytest.raises(ValueError):
        register_kind(IdentifierKind("kuaishou_open_id", True, False, "", "now strong?"))
    pii = register_kind(IdentifierKind("id_card_hash", True, True, "", "hashed id card"))
    assert normalise(pii.name, "gov", "abcdef123", key=KEY).display == "ab***23"


@given(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True))
def test_cn_mobile_any_spelling_same_key(national: str) -> None:
    try:
        base = normalise("phone", "*", national, key=KEY)
    except InvalidInput:
        return  # an unallocated prefix; the property is about valid numbers
    spaced = f"+86 {national[:3]} {national[3:7]} {national[7:]}"
    for spelling in (f"+86{national}", f"0086{national}", spaced, f"86-{national}"):
        try:
            other = normalise("phone", "*", spelling, key=KEY)
        except InvalidInput:
            continue  # "86-…" is ambiguous for some prefixes; never a different key though
        assert other == base
    assert base.display == f"{national[:3]}****{national[-4:]}"
    assert national not in base.value


@given(st.text(min_size=1, max_size=200))
def test_normalise_never_crashes_and_never_leaks(raw: str) -> None:
    for kind, scope in (("phone", "*"), ("email", "*"), ("wechat_openid", "wx1")):
        try:
            ident = normalise(kind, scope, raw, key=KEY)
        except InvalidInput:
            continue
        assert 1 <= len(ident.value) <= 128 and ident.kind == kind
        if kind != "wechat_openid":
            assert len(ident.value) == 64 and raw.strip() not in ident.display
        else:
            assert ident.value == raw.strip()
        # Normalising the normalised form is stable for opaque ids.
        if kind == "wechat_openid":
            assert normalise(kind, scope, ident.value, key=KEY) == ident
