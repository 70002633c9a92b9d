"""Coupons (issue #5 scope 1): templates, unguessable codes, issuance, validation and redemption
against an order, and return on refund. See each module's docstring for the guarantees."""

from gateway.coupons.codes import generate as generate_code
from gateway.coupons.codes import parse as parse_code
from gateway.coupons.issue import coupons_for, issue
from gateway.coupons.model import REASONS, Coupon, Discount, Order, OrderLine, Template
from gateway.coupons.redeem import redeem, return_on_refund, validate
from gateway.coupons.templates import create_template, get_template

__all__ = [
    "REASONS",
    "Coupon",
    "Discount",
    "Order",
    "OrderLine",
    "Template",
    "coupons_for",
    "create_template",
    "generate_code",
    "get_template",
    "issue",
    "parse_code",
    "redeem",
    "return_on_refund",
    "validate",
]
