"""Doudian message push for members (webhook ``member_join``).

Verification [SDK evidence only — PyPI ``doudian`` 0.6 ``core.py`` ``callback()``; PLATFORMS §3.2
and §11 ask to confirm it against the current official doc]: header ``app-id`` equals the app key
and header ``event-sign`` equals ``md5(app_key + raw_body + app_secret)``. A bad signature is
answered ``{"code": 40041, "msg": "sign error"}`` with HTTP 200 and nothing is applied.

Body: a JSON array of messages ``[{"tag": "…", "msg_id": "…", "data": "<JSON string>"}]``.
Assumed member payload (the 会员通 push schema is not in PLATFORMS.md): ``data`` =
``{"open_id", "union_id", "mobile" | "mix_mobile", "shop_id", "point_cent_delta",
"point_cent_total", "event_time", "msg_id"}``; messages without an ``open_id`` (other tags) are
acknowledged and ignored, as are messages for another shop. Each member message gives a member
record and, when points moved, a points event (``event_id`` = ``msg_id``, ``delta`` and
``balance`` in whole points = pointCent / 100; a fraction of a point refuses the whole push with
``{"code": 40004, …}`` and nothing is applied). Success is ``{"code": 0, "msg": "success"}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from connectors.douyin import mapping
from connectors.douyin.signing import verify_event_sign
from gateway.sync.contract import Connector
from gateway.sync.errors import PlatformError
from gateway.sync.hookspecs import Webhook, WebhookReply, WebhookRequest
from gateway.sync.push import PushContext
from gateway.sync.records import MemberRecord, Record, RecordError

log = logging.getLogger("memberhub.connectors.douyin")


def _reply(code: int, msg: str) -> WebhookReply:
    body = json.dumps({"code": code, "msg": msg}, ensure_ascii=False).encode("utf-8")
    return WebhookReply(status=200, body=body, content_type="application/json")


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return ""


def records_from_push(connector: Connector, body: bytes) -> list[Record]:
    """The records a verified push carries; ``ValueError`` when it is malformed."""
    try:
        messages = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("body is not JSON") from exc
    if isinstance(messages, Mapping):
        messages = [messages]
    if not isinstance(messages, list):
        raise ValueError("body must be a JSON array of messages")
    config = connector.config
    open_scope = str(config["app_id"])
    union_scope = str(config.get("brand_id") or config["shop_id"])
    records: list[Record] = []
    for message in messages:
        if not isinstance(message, Mapping):
            raise ValueError("each message must be an object")
        raw = message.get("data")
        data = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(data, Mapping) or not data.get("open_id"):
            continue  # not a member message
        if str(data.get("shop_id") or config["shop_id"]) != str(config["shop_id"]):
            log.info(
                "douyin push for shop %s ignored by shop %s", data["shop_id"], config["shop_id"]
            )
            continue
        msg_id = str(message.get("msg_id") or data.get("msg_id") or "")
        if not msg_id:
            raise ValueError("member message without msg_id")
        occurred = mapping.parse_time(data.get("event_time"))
        if occurred is None:
            raise ValueError(f"message {msg_id}: event_time missing")
        ids = mapping.buyer_identifiers(
            data.get("open_id"),
            data.get("union_id"),
            data.get("mobile"),
            open_id_scope=open_scope,
            union_id_scope=union_scope,
        )
        total = data.get("point_cent_total")
        balance = mapping.points(total, "point_cent_total") if total not in (None, "") else None
        records.append(
            MemberRecord(
                external_id=str(data["open_id"]),
                identifiers=ids,
                updated_at=occurred,
                points=balance,
            )
        )
        tag = str(message.get("tag") or "member")
        event = mapping.points_event(
            msg_id, data, ids, occurred, f"douyin member push (tag {tag})"[:200]
        )
        if event is not None:
            records.append(event)
    return records


async def handle_member_push(
    connector: Connector, request: WebhookRequest, push: PushContext
) -> WebhookReply:
    """Verify, then apply the member records and points events of a Doudian push."""
    app_key = str(connector.config.get("app_key") or "")
    secret = str(connector.config.get("app_secret") or "")
    if (
        not app_key
        or _header(request.headers, "app-id") != app_key
        or not verify_event_sign(
            app_key, secret, request.body, _header(request.headers, "event-sign")
        )
    ):
        return _reply(40041, "sign error")
    try:
        records = records_from_push(connector, request.body)
    except (ValueError, RecordError, PlatformError) as exc:
        log.warning("douyin member push refused: %s", exc)
        return _reply(40004, f"invalid message: {exc}")
    if records:
        outcomes = await push.apply(records)
        for outcome in outcomes:
            if outcome.action == "rejected":
                log.warning(
                    "douyin push %s %s rejected: %s",
                    outcome.record_type,
                    outcome.key,
                    outcome.error,
                )
    return _reply(0, "success")


def webhooks() -> list[Webhook]:
    return [
        Webhook(
            connector="douyin",
            name="member_join",
            handler=handle_member_push,
            description="抖店会员通 member join / points change push (event-sign verified)",
        )
    ]
