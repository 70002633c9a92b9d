"""Orders: idempotent upsert, forward-only status, the paid → earn hook, refunds with
proportional reversal, and batch reads.

This module is the stable import surface (``from gateway import orders``); the implementation
lives in :mod:`gateway.commerce` (``model``, ``record``, ``refunds``, ``reads``).
"""

from __future__ import annotations

from gateway.commerce.model import (
    LineRow,
    OrderInput,
    OrderLineInput,
    OrderRow,
    RecordResult,
    RefundResult,
)
from gateway.commerce.reads import get_orders, latest_orders_for, lines_for, orders_page
from gateway.commerce.record import record_order
from gateway.commerce.refunds import refund_order

__all__ = [
    "LineRow",
    "OrderInput",
    "OrderLineInput",
    "OrderRow",
    "RecordResult",
    "RefundResult",
    "get_orders",
    "latest_orders_for",
    "lines_for",
    "orders_page",
    "record_order",
    "refund_order",
]
