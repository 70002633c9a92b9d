"""POS tickets → canonical records.

All three ways in (pull API, signed push, CSV drop) first become a :class:`Ticket` — the JSON
parser :func:`ticket_from_json` and the CSV reader in :mod:`connectors.pos.csv_format` — and
:func:`ticket_records` is the only place tickets become records, so one receipt arriving by push and
again in a CSV file is byte-for-byte the same :class:`~gateway.sync.OrderRecord`.

Mapping (our documented contract; PLATFORMS.md §8 has no standard):

============================  ==================================================================
ticket                        record
============================  ==================================================================
sale (``SELL``, valid)        ``OrderRecord(status="completed")``: ``external_id`` = receipt no.,
                              ``placed_at = paid_at = updated_at`` = txn time, ``total_fen`` =
                              sum of line amounts (gross), ``paid_fen`` = net amount, lines,
                              ``store_code``, ``guide_code``.
void (``SELL`` + ``invalid``  ``OrderRecord(status="cancelled")``, ``paid_fen=0``, no ``paid_at``.
=1, CSV ``txn_type=void``)    A void is the voided receipt itself (same receipt no.), i.e. a sale
                              that was rung up and never paid / reverse-settled before it counted.
                              Money already taken is given back with a *return*, never a void (the
                              hub's order status is forward-only, so a void after a completed sale
                              is ignored by the runner).
return (``SELL_RETURN``, CSV  ``RefundRecord``: ``refund_id`` = the return's receipt no.,
``txn_type=return``)          ``order_external_id`` = the original receipt no., ``amount_fen`` =
                              abs(net amount). Quantities are negative on returns. A return
                              without an original receipt ("blind return") or a net of 0 (an even
                              exchange) has no refund to record; a voided return is ignored.
============================  ==================================================================

Identifiers (buyer): a member's card number → strong ``pos_card`` in the connection's
``brand_scope``; a *full* mainland mobile → ``phone`` (global). A masked phone (``138****0000``)
is never an identifier. ``customerUid = 0`` (walk-in) carries no identifiers at all.

Money: yuan (JSON numbers or strings) → integer fen with :class:`~decimal.Decimal`, exactly (a
value with fractions of a fen is malformed, never rounded). Times: ``yyyy-MM-dd HH:mm:ss`` store
local time, which is GMT+8 (China has no DST) → aware UTC datetimes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from gateway.sync import Identifier, OrderLineRecord, OrderRecord, Record, RefundRecord

log = logging.getLogger("memberhub.connectors.pos")

CST = timezone(timedelta(hours=8), "GMT+8")
LOCAL_FORMAT = "%Y-%m-%d %H:%M:%S"
SALE, RETURN, VOID, VOID_RETURN = "sale", "return", "void", "void_return"
_PHONE = re.compile(r"^(?:\+?86)?(1[3-9]\d{9})$")
_CARD = re.compile(r"^[A-Za-z0-9_.:@/+=-]{1,64}$")
_RECEIPT = re.compile(r"^[A-Za-z0-9_.:#/@+=-]{1,64}$")


class TicketError(ValueError):
    """A ticket (JSON object or CSV row) that does not satisfy the contract."""


class BlindReturn(TicketError):
    """A return that names no original receipt: there is no order to refund."""


@dataclass(frozen=True)
class TicketLine:
    sku: str
    name: str
    quantity: Decimal
    unit_fen: int
    amount_fen: int


@dataclass(frozen=True)
class Ticket:
    """One receipt, whatever way it arrived."""

    receipt_no: str
    kind: str  # sale / return / void / void_return
    txn_time: datetime
    gross_fen: int
    net_fen: int
    lines: tuple[TicketLine, ...]
    member: bool = False
    card_no: str | None = None
    phone: str | None = None  # raw, possibly masked
    store_code: str | None = None
    guide_code: str | None = None
    original_receipt_no: str | None = None


# -- scalars ----------------------------------------------------------------------------------


def parse_local(value: Any) -> datetime:
    """``"2026-10-03 14:22:05"`` (GMT+8 store time; ``/`` or ``T`` separators tolerated) → UTC."""
    if not isinstance(value, str):
        raise TicketError(f"time must be a 'yyyy-MM-dd HH:mm:ss' string, got {value!r}")
    text = value.strip().replace("/", "-").replace("T", " ")
    try:
        local = datetime.strptime(text, LOCAL_FORMAT)
    except ValueError as exc:
        raise TicketError(f"time {value!r} is not 'yyyy-MM-dd HH:mm:ss'") from exc
    return local.replace(tzinfo=CST).astimezone(UTC)


def format_local(moment: datetime) -> str:
    """An aware instant as Pospal's ``yyyy-MM-dd HH:mm:ss`` in GMT+8."""
    return moment.astimezone(CST).strftime(LOCAL_FORMAT)


def decimal_of(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise TicketError(f"{what} must be a number, got {value!r}")
    try:
        if isinstance(value, float):  # only if a caller parsed JSON without parse_float=Decimal
            number = Decimal(repr(value))
        elif isinstance(value, int | Decimal):
            number = Decimal(value)
        elif isinstance(value, str) and value.strip():
            number = Decimal(value.strip())
        else:
            raise TicketError(f"{what} must be a number, got {value!r}")
    except InvalidOperation as exc:
        raise TicketError(f"{what} {value!r} is not a number") from exc
    if not number.is_finite():
        raise TicketError(f"{what} {value!r} is not a finite number")
    return number


def yuan_to_fen(value: Any, what: str = "amount") -> int:
    """Yuan (``168``, ``"168.00"``, ``Decimal("99.9")``) → integer fen, exactly."""
    fen = decimal_of(value, what) * 100
    if fen != fen.to_integral_value():
        raise TicketError(f"{what} {value!r} has fractions of a fen")
    return int(fen)


def full_phone(raw: str | None) -> str | None:
    """The 11-digit mainland mobile in ``raw``, or ``None`` when it is masked, empty or invalid."""
    if not raw or "*" in raw:
        return None
    match = _PHONE.match(re.sub(r"[\s-]", "", raw))
    return match.group(1) if match else None


def _receipt(value: Any, what: str) -> str:
    text = str(value).strip() if value is not None else ""
    if not _RECEIPT.match(text):
        raise TicketError(f"{what} {value!r} must be 1-64 letters, digits or _.:#/@+=-")
    return text


def _optional_text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _card(value: Any) -> str | None:
    text = _optional_text(value)
    if text is None:
        return None
    text = text.replace(" ", "")
    if not _CARD.match(text):
        raise TicketError(f"member card number {value!r} has characters outside A-Z0-9_.:@/+=-")
    return text


# -- JSON (pull API and push) -----------------------------------------------------------------


def ticket_from_json(obj: Any) -> Ticket:
    """A Pospal-style ticket object (with our additions ``storeCode``, ``guideCode``,
    ``memberCardNo``, ``memberPhone``, ``originalSn``, ``productBarcode``) → :class:`Ticket`.

    Parse the JSON with ``parse_float=Decimal`` so amounts stay exact.
    """
    if not isinstance(obj, Mapping):
        raise TicketError("a ticket must be a JSON object")
    sn = _receipt(obj.get("sn"), "sn")
    try:
        ticket_type = str(obj.get("ticketType") or "").upper()
        if ticket_type not in ("SELL", "SELL_RETURN"):
            raise TicketError(f"ticketType {obj.get('ticketType')!r} is not SELL or SELL_RETURN")
        invalid = int(decimal_of(obj.get("invalid") or 0, "invalid")) == 1
        if ticket_type == "SELL":
            kind = VOID if invalid else SALE
        else:
            kind = VOID_RETURN if invalid else RETURN
        items = obj.get("items") or []
        if not isinstance(items, Sequence) or isinstance(items, str | bytes):
            raise TicketError("items must be a list")
        lines = tuple(_item(item, i) for i, item in enumerate(items))
        card = _card(obj.get("memberCardNo"))
        phone = _optional_text(obj.get("memberPhone"))
        uid = obj.get("customerUid")
        member = bool(card or phone) if uid is None else decimal_of(uid, "customerUid") != 0
        original = _optional_text(obj.get("originalSn"))
        return Ticket(
            receipt_no=sn,
            kind=kind,
            txn_time=parse_local(obj.get("datetime")),
            gross_fen=sum(line.amount_fen for line in lines),
            net_fen=yuan_to_fen(obj.get("totalAmount"), "totalAmount"),
            lines=lines,
            member=member,
            card_no=card if member else None,
            phone=phone if member else None,
            store_code=_optional_text(obj.get("storeCode")),
            guide_code=_optional_text(obj.get("guideCode")),
            original_receipt_no=_receipt(original, "originalSn") if original else None,
        )
    except TicketError as exc:
        raise TicketError(f"ticket {sn}: {exc}") from exc


def _item(item: Any, index: int) -> TicketLine:
    if not isinstance(item, Mapping):
        raise TicketError(f"items[{index}] must be an object")
    sku = _optional_text(item.get("productBarcode")) or _optional_text(item.get("productUid"))
    if not sku:
        raise TicketError(f"items[{index}] has neither productBarcode nor productUid")
    return TicketLine(
        sku=sku,
        name=str(item.get("name") or ""),
        quantity=decimal_of(item.get("quantity"), f"items[{index}].quantity"),
        unit_fen=yuan_to_fen(item.get("sellPrice"), f"items[{index}].sellPrice"),
        amount_fen=yuan_to_fen(item.get("totalAmount"), f"items[{index}].totalAmount"),
    )


# -- records ----------------------------------------------------------------------------------


def buyer_identifiers(ticket: Ticket, brand_scope: str) -> tuple:
    if not ticket.member:
        return ()
    ids = []
    if ticket.card_no:
        ids.append(Identifier("pos_card", brand_scope, ticket.card_no))
    phone = full_phone(ticket.phone)
    if phone:
        ids.append(Identifier("phone", None, phone))
    return tuple(ids)


def _line_record(line: TicketLine) -> OrderLineRecord:
    qty = line.quantity
    if qty == qty.to_integral_value():
        quantity, unit = int(qty), abs(line.unit_fen)
    else:  # weighed goods (0.352 kg): one line at its amount
        quantity, unit = (1 if qty > 0 else -1), abs(line.amount_fen)
    return OrderLineRecord(
        sku=line.sku,
        name=line.name,
        quantity=quantity,
        unit_price_fen=unit,
        amount_fen=line.amount_fen,
    )


def ticket_records(ticket: Ticket, brand_scope: str) -> list[Record]:
    """The canonical record(s) for one ticket (see the module docstring). Raises
    :class:`TicketError` for a blind return (no original receipt), which no refund can name."""
    t = ticket
    if t.kind in (SALE, VOID):
        if t.gross_fen < 0 or t.net_fen < 0:
            raise TicketError(f"ticket {t.receipt_no}: a {t.kind} cannot have negative amounts")
        sale = t.kind == SALE
        return [
            OrderRecord(
                external_id=t.receipt_no,
                status="completed" if sale else "cancelled",
                placed_at=t.txn_time,
                updated_at=t.txn_time,
                total_fen=t.gross_fen,
                paid_fen=t.net_fen if sale else 0,
                lines=tuple(_line_record(line) for line in t.lines),
                buyer=buyer_identifiers(t, brand_scope),
                paid_at=t.txn_time if sale else None,
                store_code=t.store_code,
                guide_code=t.guide_code,
            )
        ]
    if t.kind == VOID_RETURN:
        return []
    if not t.original_receipt_no:
        raise BlindReturn(f"return {t.receipt_no} names no original receipt (blind return)")
    if t.net_fen == 0:
        log.info("return %s nets to 0 (exchange): no refund", t.receipt_no)
        return []
    return [
        RefundRecord(
            refund_id=t.receipt_no,
            order_external_id=t.original_receipt_no,
            amount_fen=abs(t.net_fen),
            updated_at=t.txn_time,
            reason="store return",
        )
    ]


def records_in_order(records: Sequence[Record]) -> list[Record]:
    """Orders before refunds (stable), so a refund in the same batch finds its order."""
    return sorted(records, key=lambda r: 0 if isinstance(r, OrderRecord) else 1)
