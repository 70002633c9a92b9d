"""Care trigger actions: the coupons and points a ``triggers:`` section gives, with the event.

:func:`run_actions` is the engine's hook (``gateway.rules.engine.process_event`` calls it after
the rule outcomes of an event are written, in the same transaction): for the event it runs the
actions of the scheduled trigger that recorded it (``birthday`` → ``member.birthday``) and of
every matching ``on_event`` entry. So they run exactly when the event is processed — once, since
the engine processes an event only when it was newly recorded — and are rolled back with a dry
run. Each write is keyed by the event:

- a coupon: ``coupons.issue(..., idem_key=derived_id(tenant, "trigger", event, label, "coupon",
  template))``, source ``trigger:<label>``;
- points: ``ledger.credit(..., idem_key=derived_id(tenant, "trigger", event, label, account))``,
  kind ``bonus``, source ``trigger:<label>``, points lots dated by the tenant's expiry rule set.

A refused coupon (template inactive or ended, a per-member or total limit reached, the template
deleted) is logged and skipped: the birthday or the upgrade is recorded all the same and its other
actions still run — a care gesture must never stop an order from being recorded.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from gateway import coupons, ledger
from gateway.coupons.model import T as TEMPLATE
from gateway.errors import ConfigInvalid, IdempotencyKeyReused, NotEligible, NotFound
from gateway.ids import derived_id
from gateway.ledger.accounts import ACCOUNTS
from gateway.storage.db import Tx
from gateway.triggers.settings import TriggerSettings, actions_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActionResult:
    """One action's outcome: ``done`` (issued/credited, or already before), or the refusal."""

    label: str
    action: str  # "coupon:<code>" or "<account>:<amount>"
    done: bool
    refusal: str | None = None


async def run_actions(
    tx: Tx,
    cfg: Any,
    event: Any,
    member_id: uuid.UUID,
    *,
    registry: Any,
    timezone: str,
    now: datetime,
) -> list[ActionResult]:
    """Run the care trigger actions for ``event`` (an ``EventView``) of the resolved member."""
    todo = actions_for(cfg, event.type, event.payload)
    out: list[ActionResult] = []
    for label, actions in todo:
        source = f"trigger:{label}"[:64]
        for code in actions.coupons:
            key = derived_id(tx.tenant_id, "trigger", event.id, label, "coupon", code)
            try:
                await coupons.issue(tx, code, member_id, source=source, idem_key=str(key), now=now)
            except (NotEligible, NotFound) as exc:
                reason = getattr(exc, "reason", None) or exc.code
                log.warning(
                    "care trigger %s: coupon %s not issued to %s (%s): %s",
                    label,
                    code,
                    member_id,
                    reason,
                    exc,
                )
                out.append(ActionResult(label, f"coupon:{code}", False, reason))
                continue
            out.append(ActionResult(label, f"coupon:{code}", True))
        if actions.points:
            out.append(
                await _credit(tx, cfg, event, member_id, label, actions, registry, timezone, now)
            )
    return out


async def _credit(
    tx: Tx,
    cfg: Any,
    event: Any,
    member_id: uuid.UUID,
    label: str,
    actions: Any,
    registry: Any,
    timezone: str,
    now: datetime,
) -> ActionResult:
    account = actions.account
    expires: Any = ledger.DEFAULT_EXPIRY
    entry = cfg.one("expiry")
    rs = registry.get(entry.rule) if entry is not None else None
    if rs is not None and ACCOUNTS[account].expiring:
        expires = rs.expires_at(event.occurred_at, account, timezone, dict(entry.config))
    key = derived_id(tx.tenant_id, "trigger", event.id, label, account)
    try:
        await ledger.credit(
            tx,
            member_id=member_id,
            account=account,
            amount=actions.points,
            reason=(actions.reason or label.replace("_", " "))[:200],
            source=f"trigger:{label}"[:64],
            idem_key=str(key),
            kind="bonus",
            expires_at=expires,
            now=now,
        )
    except IdempotencyKeyReused:
        if member_id == event.member_id:
            raise
        # Credited before the member was merged; the merge moved it to this survivor.
    return ActionResult(label, f"{account}:{actions.points}", True)


async def check_templates(tx: Tx, settings: TriggerSettings) -> None:
    """Refuse a config whose actions name coupon templates this tenant does not have."""
    wanted = settings.coupon_codes
    if not wanted:
        return
    have = set(
        (
            await tx.conn.execute(
                select(TEMPLATE.c.code).where(
                    TEMPLATE.c.tenant_id == tx.tenant_id, TEMPLATE.c.code.in_(list(wanted))
                )
            )
        ).scalars()
    )
    missing = [(path, code) for code, path in wanted.items() if code not in have]
    if missing:
        raise ConfigInvalid([(path, f"no coupon template {code!r}") for path, code in missing])
