"""Member event types the v8 rules react to beyond the gateway's built-in ones.

Front ends record them through GraphQL ``recordActivity`` (with an idempotency key, so a retried
request is the same event); registering them makes a typo an error instead of a lost event.
"""

from __future__ import annotations

from gateway.rules.hookspecs import EventType

EVENT_TYPES: tuple[EventType, ...] = (
    EventType(
        "content.shared",
        "The member shared a product or an article from the app or mini-program "
        "(v8_tasks.share_content).",
        {"channel": "app | wechat", "content_id": "what was shared"},
    ),
    EventType(
        "member.birthday",
        "The member's birthday came round: recorded once a year by the brand's scheduler, on "
        "the first day of the birthday month, with the key birthday:<member>:<year> "
        "(v8_birthday grants the level's birthday gift).",
        {"year": "int, the birthday's year"},
    ),
)
