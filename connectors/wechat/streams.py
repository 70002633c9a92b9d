"""The ``followers`` stream: the official account's follower list, as a full refresh.

WeChat has no "changed since" filter for followers (nor any order list for a brand's own
mini-program orders), so every sync walks the whole list:

1. ``GET /cgi-bin/user/get?next_openid=X`` returns up to 10 000 openids *after* ``X`` and, as
   ``next_openid``, the last openid it returned — also on the final page (a known quirk: the
   request after the final page answers ``count: 0`` with no ``data`` key, which ends the walk);
2. each page is resolved 100 openids at a time with ``POST /cgi-bin/user/info/batchget``.

**State.** While a pass runs, a checkpoint after every batch records
``{"next_openid": <last openid applied>, "done": n, "total": N}``: a crash resumes right after the
last applied follower (``user/get`` accepts any openid as the start). If WeChat refuses that openid
(the follower left, errcode 40003 — on a resume or between two pages) the pass restarts from the
top once; replays are idempotent.
A finished pass checkpoints ``{"cursor": <partition.until>}``.

**What "incremental" means here.** ``replication_key`` is ``None``: a new sync (``until`` later
than the stored cursor) re-reads and re-emits every follower, because nothing in the API says who
changed (a unionid appearing, a re-follow). The runner's idempotent apply turns unchanged followers
into no-ops. A state whose cursor is at or after ``until`` yields nothing. Followers whose
``subscribe_time`` is after ``until`` (they followed while the sync ran) are left to the next pass.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connectors.wechat.mapping import follower_record
from gateway.sync import Checkpoint, MemberRecord, Partition, Stream, parse_cursor
from gateway.sync.errors import PlatformError

if TYPE_CHECKING:
    from connectors.wechat.connector import WechatConnector

BATCH = 100
MAX_STALLS = 5
INVALID_OPENID = "40003"


class FollowersStream(Stream):
    name = "followers"
    record_type = MemberRecord
    replication_key = None

    connector: WechatConnector

    async def read(
        self, partition: Partition, state: Mapping[str, Any] | None
    ) -> AsyncIterator[MemberRecord | Checkpoint]:
        state = dict(state or {})
        resume = str(state.get("next_openid") or "")
        if not resume:
            # No pass in flight: a stored cursor at/after ``until`` means this sync is done.
            if state.get("cursor") and parse_cursor(state, partition.since) >= partition.until:
                return
        done = int(state.get("done") or 0) if resume else 0
        try:
            async for item in self._pass(partition.until, resume, done):
                yield item
        except PlatformError as exc:
            if exc.code != INVALID_OPENID:
                raise
            # The follower we continue after has left (between pages, or before a resume):
            # start the pass again from the top, once. Replayed followers apply as no-ops.
            async for item in self._pass(partition.until, "", 0):
                yield item

    async def _pass(
        self, until: datetime, start: str, done: int
    ) -> AsyncIterator[MemberRecord | Checkpoint]:
        conn = self.connector
        client = conn.client
        oa_appid = str(conn.config["oa_appid"])
        scope = str(conn.config["open_platform_id"])
        cursor = start
        previous: set[str] = set()
        stalls = 0
        total: int | None = None
        while True:
            page = await client.followers(cursor)
            total = _int(page.get("total"), total)
            data = page.get("data")
            openids = [str(o) for o in (data or {}).get("openid") or []] if data else []
            if not openids:
                break
            fresh: list[str] = []
            seen_here: set[str] = set()
            for openid in openids:
                if openid not in previous and openid not in seen_here:
                    fresh.append(openid)
                    seen_here.add(openid)
            nxt = str(page.get("next_openid") or "")
            if not fresh:
                # A repeated page (served again in place of the next one): ask again.
                stalls += 1
                if stalls > MAX_STALLS:
                    raise PlatformError(
                        f"WeChat follower list does not advance after next_openid={cursor!r}"
                    )
                continue
            stalls = 0
            for i in range(0, len(fresh), BATCH):
                chunk = fresh[i : i + BATCH]
                infos = await client.users_info(chunk)
                for info in infos:
                    rec = follower_record(info, oa_appid=oa_appid, open_platform_id=scope)
                    if rec is not None and rec.updated_at <= until:
                        yield rec
                done += len(chunk)
                yield Checkpoint(
                    state={"next_openid": chunk[-1], "done": done, **_total(total)},
                    done=done,
                    total=total,
                )
            previous = seen_here
            if not nxt:
                break
            cursor = nxt
        yield Checkpoint(state={"cursor": until.isoformat()}, done=done, total=total or done)


def _int(value: Any, default: int | None) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _total(total: int | None) -> dict[str, int]:
    return {"total": total} if total is not None else {}
