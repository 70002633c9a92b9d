"""The POS slice of a synthetic :class:`~connectors.testing.world.World` as Pospal-style tickets.

Shared by the fake cloud POS (:mod:`connectors.pos.fake`), the fake POS middleware that pushes
tickets, and the CSV drop writer (:func:`connectors.pos.csv_format.write_drop`), so all three
ways in render the same receipts. What is "true" for a store till:

- a world order with status ``paid`` or ``completed`` is a closed ``SELL`` ticket at its
  ``paid_at`` (in a store, paying *is* completing);
- ``cancelled`` is a voided ticket (``invalid: 1``) at its ``created`` time;
- ``created`` is an open ticket still on the till and is not exported until it is paid;
- each world refund is a ``SELL_RETURN`` ticket (receipt no. = the refund id, negative
  quantities and amounts, ``originalSn`` = the sale) at the refund time.

Every shopper is a member: the card number is always sent; the phone is sent in full except on
about 30 % of tickets (masked ``138****0000``) — never on a member's first ticket, so every member
who shops in a store is linkable by phone.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from connectors.pos.mapping import format_local

if TYPE_CHECKING:
    from connectors.testing.world import Refund, World, WorldOrder

CHANNEL = "pos"


def _num(seed: str, digits: int = 12) -> int:
    return int(hashlib.sha256(seed.encode()).hexdigest()[:digits], 16)


def yuan(fen: int) -> float:
    """Fen → a JSON yuan number (``repr`` of ``n/100`` is the exact 2-decimal text)."""
    return fen / 100


def yuan_text(fen: int) -> str:
    """Fen → ``"168.00"`` / ``"-45.00"``."""
    return f"{Decimal(fen).scaleb(-2):.2f}"


def ticket_time(order: WorldOrder) -> datetime:
    return (
        order.paid_at
        if order.paid_at is not None and order.status != "cancelled"
        else (order.created)
    )


def visible(order: WorldOrder) -> bool:
    return order.status != "created"


def phone_masked(order: WorldOrder, first_receipt: str | None) -> bool:
    """The fake's masking policy: ~30 % of tickets, never the member's first one."""
    if order.external_id == first_receipt:
        return False
    return _num("mask:" + order.external_id, 8) % 10 < 3


def first_receipts(world: World) -> dict[int, str]:
    """Each member's first visible POS receipt (by ticket time, then receipt no.)."""
    first: dict[int, tuple[datetime, str]] = {}
    for order in world.orders.get(CHANNEL, []):
        if not visible(order):
            continue
        key = (ticket_time(order), order.external_id)
        current = first.get(order.person.index)
        if current is None or key < current:
            first[order.person.index] = key
    return {index: sn for index, (_, sn) in first.items()}


def _member(order: WorldOrder, masked: bool) -> dict[str, Any]:
    person = order.person
    return {
        "customerUid": person.index + 1,
        "memberCardNo": person.pos_card,
        "memberPhone": person.masked_phone if masked else person.phone,
    }


def _cashier(store: str | None) -> dict[str, Any]:
    uid = 1000 + _num("cashier:" + (store or "-"), 4) % 100
    return {"uid": uid, "jobNumber": f"C{uid % 100:02d}", "name": f"收银员{uid % 100:02d}"}


def sale_ticket(order: WorldOrder, *, masked: bool = False) -> dict[str, Any]:
    cashier = _cashier(order.store_code)
    void = order.status == "cancelled"
    total = order.total_fen
    return {
        "uid": _num("ticket:" + order.external_id),
        "sn": order.external_id,
        "datetime": format_local(ticket_time(order)),
        "cashierUid": cashier["uid"],
        "cashier": cashier,
        **_member(order, masked),
        "totalAmount": yuan(total),
        "totalProfit": 0,
        "discount": 100,
        "rounding": 0,
        "externalOrderNo": "",
        "remark": "",
        "ticketType": "SELL",
        "invalid": 1 if void else 0,
        "storeCode": order.store_code,
        "guideCode": order.guide_code,
        "originalSn": None,
        "payments": [] if void else [{"code": "payCode_17", "amount": yuan(total)}],
        "items": [
            {
                "name": line.name,
                "productUid": _num("product:" + line.sku, 10),
                "productBarcode": line.sku,
                "buyPrice": 0,
                "sellPrice": yuan(line.unit_fen),
                "customerPrice": yuan(line.unit_fen),
                "quantity": float(line.quantity),
                "discount": 100,
                "customerDiscount": 100,
                "totalAmount": yuan(line.amount_fen),
                "totalProfit": 0,
                "ticketitemattributes": [],
            }
            for line in order.lines
        ],
    }


def return_ticket(order: WorldOrder, refund: Refund, *, masked: bool = False) -> dict[str, Any]:
    cashier = _cashier(order.store_code)
    line = order.lines[0]
    if refund.amount_fen % line.unit_fen == 0:
        sku, name = line.sku, line.name
        qty, unit = refund.amount_fen // line.unit_fen, line.unit_fen
    else:
        sku, name, qty, unit = "REFUND", "退款", 1, refund.amount_fen
    return {
        "uid": _num("ticket:" + refund.refund_id),
        "sn": refund.refund_id,
        "datetime": format_local(refund.at),
        "cashierUid": cashier["uid"],
        "cashier": cashier,
        **_member(order, masked),
        "totalAmount": -yuan(refund.amount_fen),
        "totalProfit": 0,
        "discount": 100,
        "rounding": 0,
        "externalOrderNo": "",
        "remark": "退货",
        "ticketType": "SELL_RETURN",
        "invalid": 0,
        "storeCode": order.store_code,
        "guideCode": order.guide_code,
        "originalSn": order.external_id,
        "payments": [{"code": "payCode_17", "amount": -yuan(refund.amount_fen)}],
        "items": [
            {
                "name": name,
                "productUid": _num("product:" + sku, 10),
                "productBarcode": sku,
                "buyPrice": 0,
                "sellPrice": yuan(unit),
                "customerPrice": yuan(unit),
                "quantity": -float(qty),
                "discount": 100,
                "customerDiscount": 100,
                "totalAmount": -yuan(refund.amount_fen),
                "totalProfit": 0,
                "ticketitemattributes": [],
            }
        ],
    }


def world_tickets(world: World) -> list[tuple[datetime, dict[str, Any]]]:
    """Every exported POS ticket as ``(ticket time, Pospal JSON)``, sorted by time and sn."""
    first = first_receipts(world)
    out: list[tuple[datetime, dict[str, Any]]] = []
    for order in world.orders.get(CHANNEL, []):
        if not visible(order):
            continue
        masked = phone_masked(order, first.get(order.person.index))
        out.append((ticket_time(order), sale_ticket(order, masked=masked)))
        for refund in order.refunds:
            out.append((refund.at, return_ticket(order, refund, masked=masked)))
    out.sort(key=lambda pair: (pair[0], pair[1]["sn"]))
    return out
