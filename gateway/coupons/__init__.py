"""Coupons (issue #5 scopes 1 and 6): templates, unguessable codes, issuance (single and bulk to a
segment), validation and redemption against an order, return on refund, expiry, statistics and
the ``coupon.*`` member events. See each module's docstring for the guarantees."""

from gateway.coupons.bulk import Job, cancel_job, get_job, list_jobs, run_job, start_job
from gateway.coupons.codes import generate as generate_code
from gateway.coupons.codes import parse as parse_code
from gateway.coupons.expiry import ExpiryReport, sweep
from gateway.coupons.issue import coupons_for, issue
from gateway.coupons.model import REASONS, Coupon, Discount, Order, OrderLine, Template
from gateway.coupons.redeem import redeem, return_on_refund, validate
from gateway.coupons.stats import Slice, TemplateStats, template_stats
from gateway.coupons.templates import create_template, get_template

__all__ = [
    "REASONS",
    "Coupon",
    "Discount",
    "ExpiryReport",
    "Job",
    "Order",
    "OrderLine",
    "Slice",
    "Template",
    "TemplateStats",
    "cancel_job",
    "coupons_for",
    "create_template",
    "generate_code",
    "get_job",
    "get_template",
    "issue",
    "list_jobs",
    "parse_code",
    "redeem",
    "return_on_refund",
    "run_job",
    "start_job",
    "sweep",
    "template_stats",
    "validate",
]
