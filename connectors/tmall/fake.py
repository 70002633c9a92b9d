"""A fake TOP gateway (and OAuth endpoint) rendering the ``tmall`` slice of a :class:`World`.

What it reproduces from PLATFORMS.md §1 and §10:

- ``POST /router/rest`` with system params in the query and application params in a form body
  (params sent all in the body, taobaopy-style, work too); the signature is recomputed over the
  union of both with the ``sign_method`` the request names (md5 / hmac / hmac-sha256);
- ``timestamp`` as ``yyyy-MM-dd HH:mm:ss`` GMT+8 or epoch milliseconds, refused beyond 10
  minutes of skew (code 31);
- the real error envelope ``{"error_response": {...}}`` with HTTP 200: 21/22 method, 24/25
  signature, 26/27 session (``invalid-sessionkey``), 28/29 app key, 30/31 timestamp, 40/41
  arguments (``isv.*``), 7 + ``accesscontrol.limited-by-api-access-count`` + "This ban will last
  for N more seconds" (and the ban is enforced: calls during it get the same answer);
- ``taobao.trades.sold.increment.get``: ≤ 1-day ``start_modified``/``end_modified`` windows
  (inclusive), results ordered by ``modified`` descending, ``total_results``, partial fields;
  ``taobao.trade.fullinfo.get`` for the details (yuan strings, wrapped ``orders.order[]``,
  encrypted receiver fields, fuzzed ``buyer_nick``, ``buyer_open_uid``, ``ouid``);
- ``taobao.crm.members.increment.get.privy`` (``members.basic_member[]``, ``total_result``,
  ``current_page``) and ``taobao.refunds.receive.get`` (same windows and paging as trades; it also
  lists refund requests that never succeeded, which must not count);
- ``POST /token`` (oauth.taobao.com) with ``grant_type=refresh_token``.

Tids: a real tid is an int64 without leading zeros, so the fake publishes ``int(external_id)``
of the world's order (the world's Tmall ids carry a ``07`` seed prefix); :func:`tid_for` gives
the id the connector reports for a world order.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web

from connectors.testing.fake import FakePlatform
from connectors.testing.world import Person, World, WorldOrder
from connectors.tmall.client import response_key
from connectors.tmall.signing import (
    SIGN_METHODS,
    format_time,
    parse_time,
    parse_timestamp_param,
    sign,
)
from gateway.sync.hookspecs import WebhookRequest

DEFAULT_SHOP_ID = "2200000001"
SKEW = timedelta(minutes=10)
MAX_WINDOW = timedelta(days=1)
GRADE_NAMES = {0: "店铺客户", 1: "普通会员", 2: "高级会员", 3: "VIP会员", 4: "至尊VIP会员"}
_PAID_STATES = (
    "WAIT_SELLER_SEND_GOODS",
    "WAIT_BUYER_CONFIRM_GOODS",
    "SELLER_CONSIGNED_PART",
    "TRADE_BUYER_SIGNED",
)


def tid_for(order: WorldOrder) -> str:
    """The trade id TOP (and so the connector) uses for a world order."""
    return str(int(order.external_id))


def yuan(fen: int) -> str:
    return str((Decimal(fen) / 100).quantize(Decimal("0.01")))


def _enc(seed: str) -> str:
    """A TOP-style ciphertext for a receiver field (opaque; only TOP can decrypt it)."""
    raw = hashlib.sha256(seed.encode()).digest()[:18]
    return f"~{base64.b64encode(raw).decode()}~1~"


def _fuzz_nick(person: Person) -> str:
    return f"t**{person.tmall_open_uid[-1]}"


class _Refused(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


class TmallFake(FakePlatform):
    name = "tmall"

    def __init__(self, world: World, *, shop_id: str = DEFAULT_SHOP_ID, **kwargs: Any) -> None:
        super().__init__(world, **kwargs)
        self.shop_id = shop_id
        self.banned_until = 0.0
        self._served: dict[str, tuple[str, dict[str, Any]]] = {}
        self._serial = 0
        self.signatures_checked = 0
        self.page_hook: Callable[[str, Mapping[str, str]], None] | None = None
        """Called after each list page is served (tests change the world between pages)."""

    # -- FakePlatform API ----------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/router/rest", self._rest), web.post("/token", self._token)]

    def api_name(self, request: web.Request) -> str:
        return request.query.get("method") or request.path

    def is_api_call(self, request: web.Request) -> bool:
        return request.path == "/router/rest"

    def page_key(self, request: web.Request) -> str:
        # The window is in the form body, which the (synchronous) fault middleware cannot read;
        # the handler resolves the sequence from the body when it consumes the duplicate.
        return f"dup:{self.api_name(request)}"

    def rate_limited(self, ban_seconds: int) -> web.Response:
        self.banned_until = max(self.banned_until, time.monotonic() + ban_seconds)
        return self._ban_answer(ban_seconds)

    # -- helpers -------------------------------------------------------------------------------

    def _error(
        self, code: int, msg: str, sub_code: str | None = None, sub_msg: str | None = None
    ) -> web.Response:
        self._serial += 1
        err: dict[str, Any] = {"code": code, "msg": msg}
        if sub_code:
            err["sub_code"] = sub_code
        if sub_msg:
            err["sub_msg"] = sub_msg
        err["request_id"] = f"fake{self._serial:08d}"
        return web.json_response({"error_response": err})

    def _ban_answer(self, seconds: int) -> web.Response:
        return self._error(
            7,
            "App Call Limited",
            "accesscontrol.limited-by-api-access-count",
            f"This ban will last for {seconds} more seconds",
        )

    def _ok(self, method: str, body: dict[str, Any]) -> web.Response:
        self._serial += 1
        body = {**body, "request_id": f"fake{self._serial:08d}"}
        return web.json_response({response_key(method): body})

    def _bad_arg(self, detail: str, missing: bool = False) -> _Refused:
        if missing:
            return _Refused(
                self._error(40, "Missing required arguments", "isv.missing-parameter", detail)
            )
        return _Refused(self._error(41, "Invalid arguments", "isv.invalid-parameter", detail))

    def now(self) -> datetime:
        return self.clock()

    # -- gateway -------------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.Response:
        params: dict[str, str] = {k: v for k, v in request.query.items()}
        form = await request.post()
        for k, v in form.items():
            if isinstance(v, str):
                params[k] = v
        try:
            self._authenticate(params)
            remaining = self.banned_until - time.monotonic()
            if remaining > 0:
                return self._ban_answer(math.ceil(remaining))
            method = params["method"]
            handler = {
                "taobao.user.seller.get": self._seller,
                "taobao.crm.members.increment.get.privy": self._members,
                "taobao.trades.sold.increment.get": self._trades,
                "taobao.trade.fullinfo.get": self._fullinfo,
                "taobao.refunds.receive.get": self._refunds,
            }.get(method)
            if handler is None:
                return self._error(22, "Invalid method")
            if not params.get("session"):
                return self._error(26, "Missing session")
            if params["session"] != self.access_token:
                return self._error(
                    27,
                    "Invalid session",
                    "invalid-sessionkey",
                    "非法或过期的SessionKey参数，请使用有效的SessionKey参数",
                )
            return handler(params)
        except _Refused as refused:
            return refused.response

    def _authenticate(self, params: Mapping[str, str]) -> None:
        if not params.get("method"):
            raise _Refused(self._error(21, "Missing method"))
        if not params.get("app_key"):
            raise _Refused(self._error(28, "Missing app key"))
        if params["app_key"] != self.app_key:
            raise _Refused(self._error(29, "Invalid app Key"))
        if not params.get("timestamp"):
            raise _Refused(self._error(30, "Missing timestamp"))
        try:
            sent = parse_timestamp_param(params["timestamp"])
        except ValueError:
            raise _Refused(self._error(31, "Invalid timestamp")) from None
        if abs(sent - self.now()) > SKEW:
            raise _Refused(
                self._error(
                    31,
                    "Invalid timestamp",
                    "isv.invalid-timestamp",
                    "时间戳与服务端时间误差超过10分钟",
                )
            )
        if params.get("v") != "2.0":
            raise _Refused(self._error(33, "Unsupported version"))
        if not params.get("sign"):
            raise _Refused(self._error(24, "Missing signature"))
        method = params.get("sign_method") or "md5"
        if method not in SIGN_METHODS:
            raise _Refused(self._error(25, "Invalid signature", None, "unsupported sign_method"))
        self.signatures_checked += 1
        if sign(params, self.app_secret, method) != params["sign"]:
            raise _Refused(self._error(25, "Invalid signature"))

    def _window(self, params: Mapping[str, str], start: str, end: str) -> tuple[datetime, datetime]:
        if not params.get(start) or not params.get(end):
            raise self._bad_arg(f"{start} and {end} are required", missing=True)
        try:
            a, b = parse_time(params[start]), parse_time(params[end])
        except ValueError:
            raise self._bad_arg(f"{start}/{end} must be yyyy-MM-dd HH:mm:ss") from None
        if a > b:
            raise self._bad_arg(f"{start} must be before {end}")
        if b - a > MAX_WINDOW:
            raise self._bad_arg("修改时间跨度不能大于一天")
        return a, b

    def _paging(self, params: Mapping[str, str], page_param: str) -> tuple[int, int]:
        try:
            page = int(params.get(page_param) or 1)
            size = int(params.get("page_size") or 40)
        except ValueError:
            raise self._bad_arg(f"{page_param}/page_size must be integers") from None
        if page < 1 or not 1 <= size <= 100:
            raise self._bad_arg("page_size must be 1-100 and pages start at 1")
        return page, size

    def _paged(
        self,
        method: str,
        params: Mapping[str, str],
        seq: str,
        rows: list[dict[str, Any]],
        page_param: str,
        total_key: str,
        wrap: tuple[str, str],
    ) -> web.Response:
        page, size = self._paging(params, page_param)
        if self.duplicate_page(f"dup:{method}") and method in self._served:
            last_seq, last_body = self._served[method]
            if last_seq == seq:
                return self._ok(method, last_body)  # the previous page, in place of this one
        chunk = rows[(page - 1) * size : page * size]
        body: dict[str, Any] = {total_key: len(rows)}
        if method != "taobao.crm.members.increment.get.privy":
            body["has_next"] = page * size < len(rows)
        if chunk:  # TOP omits empty list wrappers
            body[wrap[0]] = {wrap[1]: chunk}
        self._served[method] = (seq, body)
        response = self._ok(method, body)
        if self.page_hook is not None:
            self.page_hook(method, params)
        return response

    # -- APIs ----------------------------------------------------------------------------------

    def _seller(self, params: Mapping[str, str]) -> web.Response:
        return self._ok(
            "taobao.user.seller.get",
            {"user": {"user_id": int(self.shop_id), "nick": "茶小铺旗舰店", "type": "B"}},
        )

    def _orders(self) -> list[WorldOrder]:
        return list(self.world.orders.get("tmall", []))

    def _trades(self, params: Mapping[str, str]) -> web.Response:
        method = "taobao.trades.sold.increment.get"
        a, b = self._window(params, "start_modified", "end_modified")
        chosen = [o for o in self._orders() if a <= o.modified <= b]
        chosen.sort(key=lambda o: (o.modified, int(o.external_id)), reverse=True)
        rows = [
            {
                "tid": int(o.external_id),
                "tid_str": tid_for(o),
                "status": self.top_status(o),
                "modified": format_time(o.modified),
                "buyer_open_uid": o.person.tmall_open_uid,
            }
            for o in chosen
        ]
        seq = f"{method}|{params['start_modified']}|{params['end_modified']}"
        return self._paged(
            method, params, seq, rows, "page_no", "total_results", ("trades", "trade")
        )

    def _fullinfo(self, params: Mapping[str, str]) -> web.Response:
        tid = params.get("tid", "")
        if not tid.isdigit():
            raise self._bad_arg("tid must be a number", missing=not tid)
        for o in self._orders():
            if int(o.external_id) == int(tid):
                return self._ok("taobao.trade.fullinfo.get", {"trade": self.render_trade(o)})
        return self._error(15, "Remote service error", "isv.trade-not-exist", "交易不存在")

    def _members(self, params: Mapping[str, str]) -> web.Response:
        method = "taobao.crm.members.increment.get.privy"
        a, b = self._window(params, "start_modify", "end_modify")
        rows = [m for p in self.world.people_on("tmall") if (m := self.render_member(p, a, b))]
        seq = f"{method}|{params['start_modify']}|{params['end_modify']}"
        return self._paged(
            method, params, seq, rows, "current_page", "total_result", ("members", "basic_member")
        )

    def _refunds(self, params: Mapping[str, str]) -> web.Response:
        method = "taobao.refunds.receive.get"
        a, b = self._window(params, "start_modified", "end_modified")
        rows = [r for r in self.all_refunds() if a <= parse_time(r["modified"]) <= b]
        rows.sort(key=lambda r: (r["modified"], r["refund_id"]), reverse=True)
        seq = f"{method}|{params['start_modified']}|{params['end_modified']}"
        return self._paged(
            method, params, seq, rows, "page_no", "total_results", ("refunds", "refund")
        )

    # -- rendering the world -------------------------------------------------------------------

    @staticmethod
    def top_status(o: WorldOrder) -> str:
        n = int(o.external_id)
        if o.status == "created":
            return "TRADE_NO_CREATE_PAY" if n % 5 == 0 else "WAIT_BUYER_PAY"
        if o.status == "paid":
            return _PAID_STATES[n % len(_PAID_STATES)]
        if o.status == "completed":
            return "TRADE_FINISHED"
        # cancelled before payment (world cancelled orders never have a pay time)
        return "TRADE_CLOSED" if n % 2 else "TRADE_CLOSED_BY_TAOBAO"

    def render_trade(self, o: WorldOrder) -> dict[str, Any]:
        tid = int(o.external_id)
        status = self.top_status(o)
        p = o.person
        refunded_skus = {o.lines[0].sku} if o.refunds else set()
        trade: dict[str, Any] = {
            "tid": tid,
            "tid_str": str(tid),
            "status": status,
            "type": "fixed",
            "created": format_time(o.created),
            "modified": format_time(o.modified),
            "payment": yuan(o.total_fen),
            "total_fee": yuan(o.total_fen),
            "post_fee": "0.00",
            "discount_fee": "0.00",
            "buyer_nick": _fuzz_nick(p),
            "buyer_open_uid": p.tmall_open_uid,
            "ouid": p.tmall_ouid,
            "seller_nick": "茶小铺旗舰店",
            "receiver_name": _enc(f"name:{tid}"),
            "receiver_mobile": _enc(f"mobile:{o.receiver_phone}"),
            "receiver_phone": "",
            "receiver_address": _enc(f"addr:{tid}"),
            "receiver_state": "浙江省",
            "receiver_city": p.city + "市",
            "oaid": hashlib.md5(f"oaid:{tid}".encode()).hexdigest(),
            "orders": {
                "order": [
                    {
                        "oid": tid * 10 + i,
                        "num_iid": int(hashlib.sha256(line.sku.encode()).hexdigest()[:10], 16),
                        "sku_id": str(int(hashlib.md5(line.sku.encode()).hexdigest()[:8], 16)),
                        "outer_iid": line.sku.rsplit("-", 1)[0],
                        "outer_sku_id": line.sku,
                        "title": line.name,
                        "price": yuan(line.unit_fen),
                        "num": line.quantity,
                        "payment": yuan(line.amount_fen),
                        "total_fee": yuan(line.amount_fen),
                        "refund_status": "SUCCESS" if line.sku in refunded_skus else "NO_REFUND",
                        "status": status,
                    }
                    for i, line in enumerate(o.lines, 1)
                ]
            },
        }
        if o.paid_at is not None:
            trade["pay_time"] = format_time(o.paid_at)
        if o.status in ("completed", "cancelled"):
            trade["end_time"] = format_time(o.modified)
        return trade

    def member_modified(self, p: Person) -> datetime:
        mine = [o for o in self._orders() if o.person.index == p.index]
        if mine:
            return max(o.modified for o in mine)
        span = max(1, int((self.world.end - self.world.start).total_seconds()) - 1)
        offset = int(hashlib.sha256(p.tmall_ouid.encode()).hexdigest()[:8], 16) % span
        return self.world.start + timedelta(seconds=offset)

    def render_member(self, p: Person, a: datetime, b: datetime) -> dict[str, Any] | None:
        modified = self.member_modified(p)
        if not a <= modified <= b:
            return None
        mine = [o for o in self._orders() if o.person.index == p.index]
        done = [o for o in mine if o.status in ("paid", "completed")]
        closed = [o for o in mine if o.status == "cancelled"]
        grade = min(4, len(done))
        row: dict[str, Any] = {
            "buyer_nick": _fuzz_nick(p),
            "ouid": p.tmall_ouid,
            "grade": grade,
            "grade_name": GRADE_NAMES[grade],
            "status": "normal",
            "trade_amount": yuan(sum(o.paid_fen for o in done)),
            "trade_count": len(done),
            "item_num": sum(line.quantity for o in done for line in o.lines),
            "close_trade_amount": yuan(sum(o.total_fen for o in closed)),
            "close_trade_count": len(closed),
            "relation_source": 1 if mine else 2,
            "group_ids": "",
        }
        if mine:
            row["last_trade_time"] = format_time(modified)
        return row

    def all_refunds(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for o in self._orders():
            tid = int(o.external_id)
            base = {
                "tid": tid,
                "oid": tid * 10 + 1,
                "total_fee": yuan(o.total_fen),
                "order_status": self.top_status(o),
                "buyer_nick": _fuzz_nick(o.person),
                "buyer_open_uid": o.person.tmall_open_uid,
                "ouid": o.person.tmall_ouid,
                "title": o.lines[0].name,
                "num": o.lines[0].quantity,
                "price": yuan(o.lines[0].unit_fen),
                "has_good_return": False,
            }
            for r in o.refunds:
                out.append(
                    {
                        **base,
                        "refund_id": r.refund_id,
                        "status": "SUCCESS",
                        "refund_fee": yuan(r.amount_fen),
                        "payment": yuan(o.total_fen - r.amount_fen),
                        "created": format_time(max(o.created, r.at - timedelta(hours=1))),
                        "modified": format_time(r.at),
                        "reason": "不想要了",
                    }
                )
            if not o.refunds and o.status == "completed" and tid % 7 == 3:
                # a refund request the seller refused and that then closed: no money moved
                out.append(
                    {
                        **base,
                        "refund_id": f"RQ{tid}",
                        "status": "CLOSED",
                        "refund_fee": yuan(o.lines[0].unit_fen),
                        "payment": yuan(o.total_fen),
                        "created": format_time(o.created),
                        "modified": format_time(o.modified),
                        "reason": "七天无理由退换货",
                    }
                )
        return out

    # -- OAuth ---------------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "refresh_token":
            return web.json_response(
                {"error": "unsupported_grant_type", "error_description": "grant_type"}, status=400
            )
        if form.get("client_id") != self.app_key or form.get("client_secret") != self.app_secret:
            return web.json_response(
                {"error": "invalid_client", "error_description": "client_id or secret is wrong"},
                status=401,
            )
        if form.get("refresh_token") != self.refresh_token:
            return web.json_response(
                {"error": "invalid_grant", "error_description": "refresh_token is invalid"},
                status=400,
            )
        token = self.issue_token()
        self.refresh_token = f"refresh{self.tokens_issued}-{self.app_key}"
        return web.json_response(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": 86400,
                "refresh_token": self.refresh_token,
                "re_expires_in": 2592000,
                "r1_expires_in": 86400,
                "w1_expires_in": 86400,
                "taobao_user_id": self.shop_id,
                "taobao_user_nick": "%E8%8C%B6%E5%B0%8F%E9%93%BA",
            }
        )

    # -- SPI (Tmall → brand) -------------------------------------------------------------------

    def spi_request(
        self,
        body: Mapping[str, Any],
        *,
        method: str = "tmall.mei.crm.member.query",
        secret: str | None = None,
        sign_method: str = "hmac-sha256",
        at: datetime | None = None,
    ) -> WebhookRequest:
        """A 会员通 SPI callback as Tmall would send it: JSON body, TOP-signed query whose
        signature covers the query params and the raw body (``signTopRequest(params, body)``)."""
        raw = json.dumps(dict(body), ensure_ascii=False, separators=(",", ":"))
        query = {
            "method": method,
            "app_key": self.app_key,
            "timestamp": format_time(at or datetime.now(UTC)),
            "format": "json",
            "v": "2.0",
            "sign_method": sign_method,
        }
        query["sign"] = sign(query, secret or self.app_secret, sign_method, raw)
        return WebhookRequest(
            method="POST",
            query=query,
            headers={"content-type": "application/json; charset=utf-8"},
            body=raw.encode("utf-8"),
        )
