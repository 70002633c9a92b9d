"""Tmall 品牌会员通 (brand member connect) SPI callbacks: Tmall calls the brand.

Three endpoints, served at ``POST /channels/{tenant}/{channel}/hooks/{name}``:

- ``member_query`` — the member-query SPI (PLATFORMS.md §1.5). Body
  ``{seller_name, nick, open_id, union_id, mobile, omid, ouid}``; answer
  ``{"query_code": "SUC", "member": {"point", "level", "mobile", "extend"}}``, or ``E01`` (no
  brand member with that mobile) / ``E02`` (this Tmall account is not bound to a member), or
  ``E04`` (system error; Tmall retries).
- ``member_bind`` (``tmall.mei.crm.bind``) and ``member_register``
  (``tmall.mei.crm.member.register``) — body ``{omid, ouid, mobile, nick, …}``; we apply a
  :class:`MemberRecord` (``tmall_omid`` strong/global, ``tmall_ouid`` strong/shop, ``phone``)
  and answer ``SUC`` with the member's card, or ``E04``. **Assumption:** the exact bind/register
  schemas are an open question (PLATFORMS.md §11); we accept the fields the glossary names and
  ignore the rest, and a ``mix_mobile`` (platform-obfuscated) is never used as a phone.

Signature: the SPI request is modelled as a TOP-signed call — the query carries ``app_key``,
``timestamp``, ``sign_method``, ``method``… and ``sign``; the signature covers the sorted query
parameters (without ``sign``) with the **raw body appended**, exactly the official
``TaobaoUtils.signTopRequest(params, body, secret, signMethod)`` rule, keyed with the app secret.
The ``app_key`` must be ours and the timestamp within TOP's 10-minute window (replay guard).
A request that fails verification is answered ``E05`` (a non-retryable failure code; the SPI
doc says "E05, E06 … all mean failure") and nothing is read from its body.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

from connectors.tmall.signing import parse_timestamp_param, verify
from gateway.identity.model import IdentifierInput
from gateway.sync.contract import Connector
from gateway.sync.hookspecs import Webhook, WebhookReply, WebhookRequest
from gateway.sync.push import PushContext
from gateway.sync.records import Identifier, MemberRecord

SKEW = timedelta(minutes=10)
_PHONE = re.compile(r"^\+?[0-9][0-9 -]{6,19}$")


def _reply(payload: dict[str, Any]) -> WebhookReply:
    return WebhookReply(
        status=200,
        body=json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
        content_type="application/json",
    )


def _failure(code: str, message: str) -> WebhookReply:
    return _reply({"query_code": code, "error_msg": message})


def verify_spi(connector: Connector, request: WebhookRequest) -> str | None:
    """``None`` when the callback is authentic, else why it is not."""
    query = {str(k): str(v) for k, v in request.query.items()}
    given = query.get("sign")
    if not given:
        return "missing sign"
    if query.get("app_key") and query["app_key"] != str(connector.config.get("app_key")):
        return "app_key mismatch"
    try:
        sent = parse_timestamp_param(query.get("timestamp", ""))
    except ValueError:
        return "missing or malformed timestamp"
    if abs(sent - connector.now()) > SKEW:
        return "timestamp outside the 10-minute window"
    try:
        body = request.body.decode("utf-8")
    except UnicodeDecodeError:
        return "body is not UTF-8"
    sign_method = query.get("sign_method") or "md5"
    if not verify(query, str(connector.config["app_secret"]), sign_method, given, body):
        return "signature mismatch"
    return None


def _body(request: WebhookRequest) -> dict[str, Any] | None:
    try:
        data = json.loads(request.body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _phone(value: Any) -> str | None:
    """A plaintext mobile, or ``None`` (absent, masked ``138****0000`` or not a number)."""
    if not isinstance(value, str) or "*" in value or not _PHONE.match(value.strip()):
        return None
    return value.strip()


def spi_identifiers(connector: Connector, data: dict[str, Any]) -> list[IdentifierInput]:
    """Platform ids first (they name the Tmall account), then the phone."""
    shop_id = str(connector.config["shop_id"])
    app_key = str(connector.config["app_key"])
    out: list[IdentifierInput] = []
    if data.get("ouid"):
        out.append(Identifier("tmall_ouid", shop_id, str(data["ouid"])))
    if data.get("omid"):
        out.append(Identifier("tmall_omid", None, str(data["omid"])))
    if data.get("open_id"):
        out.append(Identifier("taobao_open_uid", app_key, str(data["open_id"])))
    phone = _phone(data.get("mobile"))
    if phone:
        out.append(Identifier("phone", None, phone))
    return out


def _member_json(view: Any, mobile: str | None) -> dict[str, Any]:
    member: dict[str, Any] = {
        "point": str(view.points),
        "level": view.level or "",
        "extend": json.dumps({"card_no": str(view.member_id)}, separators=(",", ":")),
    }
    if mobile:
        member["mobile"] = mobile
    return member


async def member_query(
    connector: Connector, request: WebhookRequest, push: PushContext
) -> WebhookReply:
    problem = verify_spi(connector, request)
    if problem:
        return _failure("E05", f"sign-check-failure: {problem}")
    data = _body(request)
    if data is None:
        return _failure("E05", "body is not a JSON object")
    identifiers = spi_identifiers(connector, data)
    mobile = _phone(data.get("mobile"))
    try:
        view = await push.lookup(identifiers) if identifiers else None
    except Exception as exc:
        return _failure("E04", f"lookup failed: {exc.__class__.__name__}")
    if view is None:
        if mobile:
            return _failure("E01", "no brand member with this mobile")
        return _failure("E02", "this Tmall account is not bound to a brand member")
    return _reply({"query_code": "SUC", "member": _member_json(view, mobile)})


async def _bind(
    connector: Connector, request: WebhookRequest, push: PushContext, *, register: bool
) -> WebhookReply:
    problem = verify_spi(connector, request)
    if problem:
        return _failure("E05", f"sign-check-failure: {problem}")
    data = _body(request)
    if data is None:
        return _failure("E05", "body is not a JSON object")
    identifiers = [i for i in spi_identifiers(connector, data) if i.kind != "taobao_open_uid"]
    key = data.get("ouid") or data.get("omid")
    if not key:
        return _failure("E05", "omid or ouid is required")
    now: datetime = connector.now()
    try:
        record = MemberRecord(
            external_id=str(key),
            identifiers=tuple(identifiers),
            updated_at=now,
            joined_at=now if register else None,
        )
    except ValueError as exc:
        return _failure("E05", f"invalid member: {exc}")
    try:
        outcomes = await push.apply([record])
        rejected = [o for o in outcomes if o.action == "rejected"]
        if rejected:
            return _failure("E04", f"member not saved: {rejected[0].error}")
        view = await push.lookup(identifiers)
    except Exception as exc:
        return _failure("E04", f"system error: {exc.__class__.__name__}")
    if view is None:
        return _failure("E04", "member saved but not found")
    return _reply({"query_code": "SUC", "member": _member_json(view, _phone(data.get("mobile")))})


async def member_bind(
    connector: Connector, request: WebhookRequest, push: PushContext
) -> WebhookReply:
    return await _bind(connector, request, push, register=False)


async def member_register(
    connector: Connector, request: WebhookRequest, push: PushContext
) -> WebhookReply:
    return await _bind(connector, request, push, register=True)


WEBHOOKS = (
    Webhook("tmall", "member_query", member_query, "会员通 member-query SPI"),
    Webhook("tmall", "member_bind", member_bind, "会员通 bind SPI (tmall.mei.crm.bind)"),
    Webhook(
        "tmall",
        "member_register",
        member_register,
        "会员通 register SPI (tmall.mei.crm.member.register)",
    ),
)
