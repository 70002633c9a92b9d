"""Signed webhooks for member events (ARCHITECTURE §1: outbox → signed webhooks).

- ``subscriptions.py`` — who receives which event types (``order.paid``, ``tier.*``, ``*``);
  signing secrets sealed with ``gateway.sync.secrets``, shown once.
- ``signing.py`` — ``X-Memberhub-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``
  and ``verify`` for receivers.
- ``dispatch.py`` — the outbox is ``member_event``: fan-out into ``webhook_delivery`` rows behind
  a per-subscription cursor, in-order claiming per member, backoff, dead letters, replay.
- ``deliver.py`` — the aiohttp sender and the ``Dispatcher`` loop (``memberhub webhooks deliver``).
"""

from gateway.webhooks.deliver import Dispatcher, PassStats, deliver_once
from gateway.webhooks.dispatch import DeliveryPolicy, replay
from gateway.webhooks.signing import SignatureError, sign, verify

__all__ = [
    "DeliveryPolicy",
    "Dispatcher",
    "PassStats",
    "SignatureError",
    "deliver_once",
    "replay",
    "sign",
    "verify",
]
