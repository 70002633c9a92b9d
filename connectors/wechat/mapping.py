"""WeChat payloads → canonical records.

- Follower (``user/info/batchget``) → :class:`MemberRecord` keyed by the official-account openid:
  ``wechat_openid`` (weak, scope = the official account's appid) and, when WeChat returns it,
  ``wechat_unionid`` (strong, scope = the brand's Open Platform account). Since 2021-12 WeChat no
  longer returns nickname, sex or city, so there is no profile. ``updated_at`` = ``subscribe_time``
  (unix seconds → aware UTC); a user who unfollowed between the list and the batch call
  (``subscribe == 0``) is skipped.
- Mini-program login (code2Session + getuserphonenumber) → :class:`MemberRecord` keyed by the
  mini-program openid with ``wechat_openid`` (scope = the mini-program appid), ``wechat_unionid``
  and the consented phone as the global strong ``phone`` kind (``+<countryCode><purePhoneNumber>``).
- Member-card events → ``wechat_card_code`` (strong, scope = ``CardId``) on a member record
  (``user_get_card``) or a :class:`PointsEventRecord` (``update_member_card`` with ``ModifyBonus``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.errors import InvalidInput
from gateway.identity.model import IdentifierInput
from gateway.sync import Identifier, JoinScene, MemberRecord, PointsEventRecord

CARD_CODE_KIND = "wechat_card_code"


def from_unix(value: Any) -> datetime | None:
    """Unix seconds (int or digit string) → aware UTC datetime; ``None`` when absent/zero."""
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        return None
    if seconds <= 0:
        return None
    return datetime.fromtimestamp(seconds, UTC)


def openid_identifiers(
    openid: str, appid: str, unionid: str | None, open_platform_id: str
) -> list[IdentifierInput]:
    ids = [Identifier("wechat_openid", appid, openid)]
    if unionid:
        ids.append(Identifier("wechat_unionid", open_platform_id, unionid))
    return ids


_QR_PREFIXES = {"store": "store_qr", "guide": "guide", "live": "live", "campaign": "campaign"}


def join_scene(info: Mapping[str, Any]) -> JoinScene | None:
    """The join scene of a follower: a parametric QR code (``ADD_SCENE_QR_CODE``) whose
    ``qr_scene_str`` follows the brand convention ``store:<code>`` / ``guide:<code>`` /
    ``live:<room>`` / ``campaign:<code>`` maps to that scene (any other string to ``other``);
    ``ADD_SCENE_LIVESTREAM`` is ``live``. Search, profile cards and the like are no brand scene."""
    scene = str(info.get("subscribe_scene") or "")
    if scene == "ADD_SCENE_LIVESTREAM":
        return JoinScene("live")
    qr = str(info.get("qr_scene_str") or "").strip()
    if scene != "ADD_SCENE_QR_CODE" or not qr:
        return None
    prefix, _, ref = qr.partition(":")
    try:
        if prefix.lower() in _QR_PREFIXES and ref.strip():
            return JoinScene(_QR_PREFIXES[prefix.lower()], ref.strip())
        return JoinScene("other", qr)
    except InvalidInput:  # too long or odd characters: the scene kind still says something
        return JoinScene(_QR_PREFIXES.get(prefix.lower(), "other"))


def follower_record(
    info: Mapping[str, Any], *, oa_appid: str, open_platform_id: str
) -> MemberRecord | None:
    """One ``user_info_list`` entry → a member record, or ``None`` for a non-follower."""
    openid = info.get("openid")
    if not openid or int(info.get("subscribe") or 0) != 1:
        return None
    subscribed = from_unix(info.get("subscribe_time"))
    if subscribed is None:
        return None
    return MemberRecord(
        external_id=str(openid),
        identifiers=tuple(
            openid_identifiers(str(openid), oa_appid, info.get("unionid"), open_platform_id)
        ),
        updated_at=subscribed,
        joined_at=subscribed,
        scene=join_scene(info),
    )


def login_record(
    session: Mapping[str, Any],
    phone: str | None,
    *,
    appid: str,
    open_platform_id: str,
    at: datetime,
) -> MemberRecord:
    """A code2Session answer (plus the consented phone) → a member record. ``session_key`` is
    deliberately not read: it never leaves the connector."""
    openid = str(session["openid"])
    ids = openid_identifiers(openid, appid, session.get("unionid"), open_platform_id)
    if phone:
        ids.append(Identifier("phone", None, phone))
    return MemberRecord(external_id=openid, identifiers=tuple(ids), updated_at=at)


def phone_from_info(info: Mapping[str, Any], appid: str) -> str:
    """``phone_info`` → ``+<countryCode><purePhoneNumber>``; refuses another app's watermark."""
    watermark = info.get("watermark") or {}
    if str(watermark.get("appid") or "") != appid:
        raise ValueError("phone_info watermark is for another appid")
    pure = str(info.get("purePhoneNumber") or "").strip()
    country = str(info.get("countryCode") or "86").strip().lstrip("+")
    if not pure.isdigit() or not country.isdigit():
        raise ValueError("phone_info has no usable number")
    return f"+{country}{pure}"


def card_event_id(openid: str, create_time: str, card_id: str, code: str, what: str) -> str:
    """A stable id for one card event, so WeChat's retries (same FromUserName + CreateTime)
    and replays apply once. Hashed to stay within the 64-character record-key limit."""
    raw = f"{openid}|{create_time}|{card_id}|{code}|{what}"
    return "wxcard:" + hashlib.sha256(raw.encode()).hexdigest()[:40]


def card_member_record(
    event: Mapping[str, str], *, appid: str, open_platform_id: str
) -> MemberRecord | None:
    """``user_get_card``: the openid that received the card, its unionid and the card code."""
    openid = event.get("FromUserName")
    at = from_unix(event.get("CreateTime"))
    if not openid or at is None:
        return None
    ids = openid_identifiers(openid, appid, event.get("UnionId") or None, open_platform_id)
    card_id, code = event.get("CardId"), event.get("UserCardCode")
    if card_id and code:
        ids.append(Identifier(CARD_CODE_KIND, card_id, code))
    return MemberRecord(external_id=openid, identifiers=tuple(ids), updated_at=at)


def card_points_event(event: Mapping[str, str], *, appid: str) -> PointsEventRecord | None:
    """``update_member_card`` with a non-zero ``ModifyBonus`` → a points event."""
    openid = event.get("FromUserName")
    at = from_unix(event.get("CreateTime"))
    card_id, code = event.get("CardId"), event.get("UserCardCode")
    try:
        delta = int(event.get("ModifyBonus") or 0)
    except ValueError:
        return None
    if not openid or at is None or not card_id or not code or delta == 0:
        return None
    balance: int | None
    try:
        balance = int(event["Bonus"]) if event.get("Bonus") not in (None, "") else None
    except ValueError:
        balance = None
    return PointsEventRecord(
        event_id=card_event_id(openid, str(event.get("CreateTime")), card_id, code, "bonus"),
        identifiers=(
            Identifier(CARD_CODE_KIND, card_id, code),
            Identifier("wechat_openid", appid, openid),
        ),
        delta=delta,
        occurred_at=at,
        reason="WeChat member card bonus change",
        balance=balance,
    )
