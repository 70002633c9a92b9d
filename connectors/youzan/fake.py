"""A fake Youzan cloud gateway rendering the ``youzan`` slice of a
:class:`~connectors.testing.world.World` as Youzan does (PLATFORMS.md §5, §10):

- ``POST /auth/token`` silent grant (checks client id / secret / ``grant_id`` = kdt_id;
  ``refresh: false`` returns the live token, ``refresh: true`` issues a new one);
- ``POST /api/{api}/{version}?access_token=…``: a token only in the body or an
  ``Authorization`` header → gw 4201; an unknown or expired token → gw 4203 ("Token 不存在");
- rate limit: HTTP 429 with ``Retry-After`` (Youzan's own limit answer is undocumented);
- ``youzan.trades.sold.get/4.0.4``: ``start_update``/``end_update`` pairs, ``page_no`` 1..100
  (beyond → business error), ``page_size`` ≤ 100, the ``full_order_info_list`` shape with yuan
  strings and ``$…$1$`` encrypted receiver fields; the ``duplicate`` fault serves the previous
  page again (the page-shift duplicates of §5.2);
- ``youzan.trade.refund.search/3.0.0``: ASSUMED shape ``data.{total, refunds[]}``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime
from typing import Any

from aiohttp import web

from connectors.testing.fake import FakePlatform
from connectors.testing.world import WorldOrder
from connectors.wire import CST, TIME_FORMAT, format_time

KDT_ID = "44088123"


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def encrypted(value: str) -> str:
    """Youzan's ciphertext form for sensitive fields: ``$<base64>$1$``."""
    return "$" + base64.b64encode(hashlib.sha256(value.encode()).digest()[:18]).decode() + "$1$"


def _gw(code: int, msg: str) -> web.Response:
    trace = hashlib.sha1(f"{code}{msg}".encode()).hexdigest()[:16]
    return web.json_response(
        {"gw_err_resp": {"trace_id": f"yz7-{trace}", "err_msg": msg, "err_code": code}}
    )


def _business(code: int, message: str) -> dict[str, Any]:
    return {"trace_id": "yz7-0", "code": code, "success": False, "message": message, "data": None}


def _ok(data: Any) -> dict[str, Any]:
    return {
        "trace_id": "yz7-0",
        "code": 200,
        "success": True,
        "message": "successful",
        "data": data,
    }


def _cst(value: Any) -> datetime:
    return datetime.strptime(str(value), TIME_FORMAT).replace(tzinfo=CST)


class YouzanFake(FakePlatform):
    name = "youzan"
    max_page = 100

    def __init__(self, *args: Any, kdt_id: str = KDT_ID, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kdt_id = kdt_id
        self._last_page: dict[str, Any] = {}
        self.token_expires_ms = 0
        # the harness starts without a token: the connector must obtain one
        self.access_token = ""

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/auth/token", self.auth_token),
            web.post("/api/{api}/{version}", self.api),
        ]

    def rate_limited(self, ban_seconds: int) -> web.Response:
        body = {"gw_err_resp": {"trace_id": "yz7-429", "err_msg": "请求过于频繁", "err_code": 429}}
        return web.json_response(body, status=429, headers={"Retry-After": str(ban_seconds)})

    def api_name(self, request: web.Request) -> str:
        return request.match_info.get("api", request.path)

    def is_api_call(self, request: web.Request) -> bool:
        return request.path.startswith("/api/")

    def page_key(self, request: web.Request) -> str:
        # the JSON body is not readable here; the API plus the caller's token identify the
        # sequence well enough (the handler refines it with the window)
        return request.path

    # -- token --------------------------------------------------------------------------------

    async def auth_token(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response(_business(4001, "request body must be JSON"))
        if (
            body.get("client_id") != self.app_key
            or body.get("client_secret") != self.app_secret
            or str(body.get("grant_id")) != self.kdt_id
            or body.get("authorize_type") != "silent"
        ):
            return web.json_response(_business(40010, "client_id 或 client_secret 不正确"))
        live = self.access_token and not self.access_token.startswith("expired-")
        if body.get("refresh") or not live:
            self.issue_token()
            self.token_expires_ms = int(self.clock().timestamp() * 1000) + 7 * 86400 * 1000
        return web.json_response(
            {
                "success": True,
                "code": 200,
                "message": None,
                "data": {
                    "access_token": self.access_token,
                    "expires": self.token_expires_ms,
                    "scope": "multi_store shop item trade user pay_qrcode",
                    "authority_id": self.kdt_id,
                },
            }
        )

    # -- API ----------------------------------------------------------------------------------

    async def api(self, request: web.Request) -> web.Response:
        token = request.query.get("access_token")
        if not token:
            return _gw(4201, "no credential found: access_token must be in the query string")
        if token != self.access_token or token.startswith("expired-"):
            return _gw(4203, "Token 不存在")
        try:
            body = await request.json()
        except ValueError:
            return web.json_response(_business(4001, "request body must be JSON"))
        except ConnectionResetError:  # the client gave up (timeout fault)
            return web.Response(status=499)
        api, version = request.match_info["api"], request.match_info["version"]
        if (api, version) == ("youzan.trades.sold.get", "4.0.4"):
            handler = self.trades_sold_get
        elif (api, version) == ("youzan.trade.refund.search", "3.0.0"):
            handler = self.refund_search
        else:
            return _gw(4005, f"api {api}/{version} not found")
        result = handler(body)
        key = api + json.dumps({k: v for k, v in body.items() if k != "page_no"}, sort_keys=True)
        if self.duplicate_page(request.path) and key in self._last_page:
            result = self._last_page[key]  # the previous page again (page shift)
        self._last_page[key] = result
        return web.json_response(result)

    def _paging(self, body: dict[str, Any]) -> tuple[int, int] | dict[str, Any]:
        try:
            page, size = int(body.get("page_no", 1)), int(body.get("page_size", 20))
        except (TypeError, ValueError):
            return _business(5000, "page_no/page_size must be integers")
        if not 1 <= page <= self.max_page:
            return _business(5000, f"page_no 不能超过 {self.max_page}")
        if not 1 <= size <= 100:
            return _business(5000, "page_size 不能超过 100")
        return page, size

    def state_of(self, o: WorldOrder) -> tuple[str, int]:
        """(status, refund_state) as Youzan shows a world order."""
        refund_state = 0
        if o.refunds:
            refund_state = 12 if o.refunded_fen >= o.total_fen else 2
        if o.status == "created":
            return "WAIT_BUYER_PAY", 0
        if o.status == "cancelled":
            return "TRADE_CLOSED", 0
        if o.status == "completed":
            return "TRADE_SUCCESS", refund_state
        if refund_state == 12:
            return "TRADE_CLOSED", 12  # paid, then refunded in full before delivery
        shipped = int(hashlib.sha256(o.external_id.encode()).hexdigest(), 16) % 2
        return ("WAIT_BUYER_CONFIRM_GOODS" if shipped else "WAIT_SELLER_SEND_GOODS"), refund_state

    def render_order(self, o: WorldOrder) -> dict[str, Any]:
        p = o.person
        status, refund_state = self.state_of(o)
        return {
            "full_order_info": {
                "order_info": {
                    "tid": o.external_id,
                    "status": status,
                    "status_str": status,
                    "type": 0,
                    "created": format_time(o.created),
                    "update_time": format_time(o.modified),
                    "pay_time": format_time(o.paid_at) if o.paid_at else "",
                    "success_time": format_time(o.modified) if o.status == "completed" else "",
                    "refund_state": refund_state,
                    "node_kdt_id": int(self.kdt_id),
                },
                "buyer_info": {
                    "yz_open_id": p.youzan_open_id,
                    "buyer_phone": p.phone,
                    "outer_user_id": p.wechat_openid,
                    "fans_type": 1,
                    "fans_nickname": p.name,
                },
                "address_info": {
                    "receiver_name": encrypted(p.name),
                    "receiver_tel": encrypted(o.receiver_phone),
                    "delivery_province": p.city,
                    "delivery_city": p.city,
                    "delivery_district": "",
                    "delivery_address": encrypted(f"{p.city}某路1号"),
                },
                "pay_info": {
                    "payment": yuan(o.total_fen),
                    "total_fee": yuan(o.total_fen),
                    "post_fee": "0.00",
                    "real_payment": yuan(o.paid_fen),
                    "deduction_pay": 0,
                    "deduction_real_pay": 0,
                },
                "orders": [
                    {
                        "oid": f"{o.external_id}{i:02d}",
                        "item_id": 3000 + i,
                        "sku_id": 4000 + i,
                        "outer_item_id": line.sku,
                        "outer_sku_id": line.sku,
                        "title": line.name,
                        "num": line.quantity,
                        "price": yuan(line.unit_fen),
                        "payment": yuan(line.amount_fen),
                        "total_fee": yuan(line.amount_fen),
                    }
                    for i, line in enumerate(o.lines)
                ],
                "remark_info": {"buyer_message": "", "trade_memo": ""},
            }
        }

    def trades_sold_get(self, body: dict[str, Any]) -> dict[str, Any]:
        paging = self._paging(body)
        if isinstance(paging, dict):
            return paging
        page, size = paging
        if ("start_update" in body) != ("end_update" in body):
            return _business(5000, "start_update 和 end_update 必须成对出现")
        try:
            start = _cst(body["start_update"]) if "start_update" in body else None
            end = _cst(body["end_update"]) if "end_update" in body else None
        except ValueError:
            return _business(5000, "时间格式错误")
        rows = [
            o
            for o in self.world.orders.get("youzan", [])
            if start is None or start <= o.modified.astimezone(CST) <= end
        ]
        rows.sort(key=lambda o: (o.modified, o.external_id))
        chunk = rows[(page - 1) * size : page * size]
        return _ok(
            {
                "total_results": len(rows),
                "full_order_info_list": [self.render_order(o) for o in chunk],
            }
        )

    def refund_rows(self) -> list[tuple[datetime, dict[str, Any]]]:
        out = []
        for o in self.world.orders.get("youzan", []):
            for r in o.refunds:
                row = {
                    "refund_id": r.refund_id,
                    "tid": o.external_id,
                    "oid": f"{o.external_id}00",
                    "refund_fee": yuan(r.amount_fen),
                    "created": format_time(r.at),
                    "modified": format_time(r.at),
                    "status": "SUCCESS",
                    "reason": "不想要了",
                }
                out.append((r.at, row))
            if not o.refunds and o.status == "paid" and int(o.external_id[1:]) % 5 == 0:
                # an application the seller has not agreed to yet: not a refund
                row = {
                    "refund_id": f"RP{o.external_id}",
                    "tid": o.external_id,
                    "oid": f"{o.external_id}00",
                    "refund_fee": yuan(o.lines[0].unit_fen),
                    "created": format_time(o.modified),
                    "modified": format_time(o.modified),
                    "status": "WAIT_SELLER_AGREE",
                    "reason": "拍错了",
                }
                out.append((o.modified, row))
        out.sort(key=lambda t: (t[0], t[1]["refund_id"]))
        return out

    def refund_search(self, body: dict[str, Any]) -> dict[str, Any]:
        paging = self._paging(body)
        if isinstance(paging, dict):
            return paging
        page, size = paging
        try:
            start, end = _cst(body["update_time_start"]), _cst(body["update_time_end"])
        except (KeyError, ValueError):
            return _business(5000, "update_time_start/update_time_end 必填")
        rows = [r for at, r in self.refund_rows() if start <= at.astimezone(CST) <= end]
        return _ok({"total": len(rows), "refunds": rows[(page - 1) * size : page * size]})
