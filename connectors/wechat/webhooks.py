"""WeChat pushes: the mini-program login relay and the official-account / member-card callback.

``login`` — the brand's mini-program backend forwards what ``wx.login`` and the
``getPhoneNumber`` button gave the client, as JSON ``{"js_code": "…", "phone_code": "…"}``. The
codes are the proof: WeChat validates them (single use, ~5 minutes) in ``code2Session`` and
``getuserphonenumber``, so the endpoint needs no signature of its own. The answer is
``{"member_id": "…", "openid": "…"}``; ``session_key`` never leaves the connector. Errors answer
``{"error": <code>, "message": …}`` with 400 (invalid or used code), 403 (WeChat blocked the user,
40226), 429 (rate limited), 502 (the channel's credentials are refused) or 503 (WeChat busy).

``events`` — the server URL configured in the official account (服务器配置):

- ``GET ?signature&timestamp&nonce&echostr``: URL verification; answers ``echostr`` when
  ``sha1(sorted(token, timestamp, nonce))`` matches, else 403.
- ``POST`` XML, plaintext mode (``signature`` as above) or encrypted mode (``encrypt_type=aes``,
  ``msg_signature`` over the ``Encrypt`` element too, AES-256-CBC; the decrypted appid must be one
  of ours). When an EncodingAESKey is configured, plaintext posts are refused: the plaintext
  signature does not cover the body. A timestamp more than 5 minutes away from now is refused
  (403), which bounds the replay of a captured request.
- Events: ``subscribe`` → member (openid); ``user_get_card`` → member (openid, ``UnionId``, card
  code); ``update_member_card`` with ``ModifyBonus`` → points event (when
  ``import_card_bonus_changes``); everything else is acknowledged and ignored. WeChat retries a
  push it got no answer for; the records' ids are stable so a retry changes nothing. The answer is
  ``success`` (text/plain), which WeChat accepts in both modes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree

from connectors.wechat.client import INVALID_CODE_CODES
from connectors.wechat.mapping import (
    card_member_record,
    card_points_event,
    from_unix,
    login_record,
    openid_identifiers,
    phone_from_info,
)
from connectors.wechat.signing import (
    CryptoError,
    callback_signature,
    decrypt_message,
    msg_signature,
    signature_ok,
)
from gateway.sync import MemberRecord, Webhook, WebhookReply, WebhookRequest
from gateway.sync.errors import (
    AuthFailed,
    ConnectorError,
    RateLimited,
    TransientError,
)

if TYPE_CHECKING:
    from connectors.wechat.connector import WechatConnector
    from gateway.sync import PushContext, Record

log = logging.getLogger("memberhub.connectors.wechat")

MAX_BODY = 64 * 1024
MAX_SKEW = 300
BLOCKED_USER = "40226"


def _json(status: int, payload: Mapping[str, Any]) -> WebhookReply:
    return WebhookReply(status, json.dumps(payload, ensure_ascii=False).encode())


def _error(status: int, error: str, message: str) -> WebhookReply:
    return _json(status, {"error": error, "message": message})


def _text(status: int, text: str) -> WebhookReply:
    return WebhookReply(status, text.encode(), content_type="text/plain")


def _platform_reply(exc: ConnectorError, invalid: str) -> WebhookReply:
    if isinstance(exc, RateLimited):
        return _error(429, "rate_limited", str(exc))
    if isinstance(exc, TransientError):
        return _error(503, "wechat_unavailable", str(exc))
    if isinstance(exc, AuthFailed):
        return _error(502, "channel_misconfigured", str(exc))
    if exc.code is not None and exc.code.isdigit() and int(exc.code) in INVALID_CODE_CODES:
        return _error(400, invalid, f"{exc} (codes are single-use and live 5 minutes)")
    if exc.code == BLOCKED_USER:
        return _error(403, "user_blocked", str(exc))
    return _error(502, "wechat_error", str(exc))


def _code(value: Any) -> str | None:
    if isinstance(value, str) and 1 <= len(value.strip()) <= 256:
        return value.strip()
    return None


async def handle_login(
    connector: WechatConnector, request: WebhookRequest, push: PushContext
) -> WebhookReply:
    if request.method.upper() != "POST":
        return _error(405, "method_not_allowed", "POST a JSON body")
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        return _error(400, "bad_request", "the body must be JSON")
    if not isinstance(body, dict) or _code(body.get("js_code")) is None:
        return _error(400, "bad_request", "js_code (from wx.login) is required")
    js_code = _code(body["js_code"])
    phone_code = body.get("phone_code")
    if phone_code is not None and _code(phone_code) is None:
        return _error(400, "bad_request", "phone_code must be a non-empty string")
    try:
        session = await connector.client.code2session(str(js_code))
    except ConnectorError as exc:
        return _platform_reply(exc, "invalid_code")
    openid = session.get("openid")
    if not isinstance(openid, str) or not openid:
        return _error(502, "wechat_error", "code2Session answered without an openid")
    phone = None
    if phone_code is not None:
        try:
            data = await connector.client.phone_number(str(_code(phone_code)))
            phone = phone_from_info(data.get("phone_info") or {}, str(connector.config["appid"]))
        except ConnectorError as exc:
            return _platform_reply(exc, "invalid_phone_code")
        except ValueError as exc:
            return _error(400, "invalid_phone_code", str(exc))
    record = login_record(
        session,
        phone,
        appid=str(connector.config["appid"]),
        open_platform_id=str(connector.config["open_platform_id"]),
        at=connector.now(),
    )
    outcomes = await push.apply([record])
    outcome = outcomes[0] if outcomes else None
    if outcome is None or outcome.action == "rejected" or outcome.member_id is None:
        reason = outcome.error if outcome is not None else "nothing applied"
        return _error(422, "rejected", str(reason))
    return _json(200, {"member_id": str(outcome.member_id), "openid": openid})


def parse_xml(body: bytes) -> dict[str, str]:
    """A WeChat XML message → ``{tag: text}`` of the root's children. Refuses DTDs (WeChat
    never sends one; refusing them rules out entity-expansion attacks)."""
    if len(body) > MAX_BODY:
        raise ValueError("body too large")
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise ValueError("DTDs are not accepted")
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise ValueError(f"not XML: {exc}") from exc
    return {child.tag: (child.text or "").strip() for child in root}


def _fresh(timestamp: str, now: float) -> bool:
    return timestamp.isdigit() and abs(int(timestamp) - now) <= MAX_SKEW


def _event_records(
    connector: WechatConnector, event: Mapping[str, str], appid: str
) -> list[Record]:
    if event.get("MsgType") != "event":
        return []
    kind = event.get("Event", "")
    scope = str(connector.config["open_platform_id"])
    records: list[Record] = []
    if kind == "subscribe":
        openid, at = event.get("FromUserName"), from_unix(event.get("CreateTime"))
        if openid and at is not None:
            ids = openid_identifiers(openid, appid, None, scope)
            records.append(MemberRecord(external_id=openid, identifiers=tuple(ids), updated_at=at))
    elif kind == "user_get_card":
        rec = card_member_record(event, appid=appid, open_platform_id=scope)
        if rec is not None:
            records.append(rec)
    elif kind == "update_member_card" and connector.config.get("import_card_bonus_changes", True):
        points = card_points_event(event, appid=appid)
        if points is not None:
            records.append(points)
    return records


async def handle_events(
    connector: WechatConnector, request: WebhookRequest, push: PushContext
) -> WebhookReply:
    cfg = connector.config
    token = str(cfg["token"])
    q = request.query
    timestamp, nonce = str(q.get("timestamp") or ""), str(q.get("nonce") or "")
    if not _fresh(timestamp, connector.now().timestamp()):
        return _text(403, "stale or missing timestamp")
    if request.method.upper() == "GET":
        if not signature_ok(callback_signature(token, timestamp, nonce), q.get("signature")):
            return _text(403, "invalid signature")
        return _text(200, str(q.get("echostr") or ""))
    if request.method.upper() != "POST":
        return _text(405, "method not allowed")

    aes_key = cfg.get("encoding_aes_key")
    ours = {str(a) for a in (cfg.get("oa_appid"), cfg.get("appid")) if a}
    appid = str(cfg.get("oa_appid") or cfg["appid"])
    try:
        if q.get("encrypt_type") == "aes" or aes_key:
            if not aes_key:
                return _text(403, "encrypted callback but no EncodingAESKey configured")
            if q.get("encrypt_type") != "aes":
                return _text(403, "plaintext callbacks are refused in encrypted mode")
            encrypt = parse_xml(request.body).get("Encrypt", "")
            expected = msg_signature(token, timestamp, nonce, encrypt)
            if not encrypt or not signature_ok(expected, q.get("msg_signature")):
                return _text(403, "invalid msg_signature")
            message, appid = decrypt_message(str(aes_key), encrypt)
            if appid not in ours:
                return _text(403, "message is for another appid")
            event = parse_xml(message)
        else:
            if not signature_ok(callback_signature(token, timestamp, nonce), q.get("signature")):
                return _text(403, "invalid signature")
            event = parse_xml(request.body)
    except CryptoError as exc:
        return _text(403, f"cannot decrypt: {exc}")
    except ValueError as exc:
        return _text(400, str(exc))

    records = _event_records(connector, event, appid)
    if records:
        for outcome in await push.apply(records):
            if outcome.action == "rejected":
                # Retrying cannot fix a malformed event: acknowledge it, keep a trace.
                log.warning("wechat event %s rejected: %s", event.get("Event"), outcome.error)
    return _text(200, "success")


WEBHOOKS = (
    Webhook(
        "wechat",
        "login",
        handle_login,
        "Mini-program login relay: {js_code, phone_code?} → member_id (code2Session, "
        "getuserphonenumber)",
    ),
    Webhook(
        "wechat",
        "events",
        handle_events,
        "Official-account server callback (GET URL verification, POST XML events: subscribe, "
        "user_get_card, update_member_card); plaintext or AES mode",
    ),
)

__all__ = ["WEBHOOKS", "handle_events", "handle_login", "parse_xml"]
