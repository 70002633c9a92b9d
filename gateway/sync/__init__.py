"""Channel sync: the connector contract, the runner and push handling (ARCHITECTURE §7).

Connector authors import from here::

    from gateway.sync import Connector, Stream, Checkpoint, Partition, CheckResult
    from gateway.sync import OrderRecord, OrderLineRecord, MemberRecord, Identifier, Profile
    from gateway.sync import errors, hookimpl, Request, Response

Modules: ``contract`` (Connector, Stream), ``records`` (canonical records), ``errors``,
``http`` (rate limits, retries, token refresh), ``hookspecs``, ``registry`` (entry points),
``push`` (webhook context), and the gateway side: ``connections`` (configuration and encrypted
secrets), ``state`` (bookmarks), ``apply`` (records → ONE ID, orders, ledger), ``runner``.
"""

from gateway.sync import errors
from gateway.sync.contract import (
    Checkpoint,
    CheckResult,
    Connector,
    ConnectorContext,
    Partition,
    Stream,
    parse_cursor,
    secret_fields,
    window_count,
    windows,
)
from gateway.sync.hookspecs import Webhook, WebhookReply, WebhookRequest, hookimpl
from gateway.sync.http import PlatformHttp, RateLimiter, Request, Response, RetryPolicy
from gateway.sync.push import ApplyOutcome, MemberView, PushContext
from gateway.sync.records import (
    Identifier,
    JoinScene,
    MemberRecord,
    OrderLineRecord,
    OrderRecord,
    PointsEventRecord,
    Profile,
    Record,
    RecordError,
    RefundRecord,
)

__all__ = [
    "ApplyOutcome",
    "CheckResult",
    "Checkpoint",
    "Connector",
    "ConnectorContext",
    "Identifier",
    "JoinScene",
    "MemberRecord",
    "MemberView",
    "OrderLineRecord",
    "OrderRecord",
    "Partition",
    "PlatformHttp",
    "PointsEventRecord",
    "Profile",
    "PushContext",
    "RateLimiter",
    "Record",
    "RecordError",
    "RefundRecord",
    "Request",
    "Response",
    "RetryPolicy",
    "Stream",
    "Webhook",
    "WebhookReply",
    "WebhookRequest",
    "errors",
    "hookimpl",
    "parse_cursor",
    "secret_fields",
    "window_count",
    "windows",
]
