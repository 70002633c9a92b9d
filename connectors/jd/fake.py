"""A fake JOS gateway (``/routerjson``) and JD OAuth server rendering the ``jd`` slice of a
:class:`~connectors.testing.world.World` exactly as JOS does (PLATFORMS.md §2, §10):

- recomputes the md5 signature from the received params (query string or form) → code 12;
  timestamps (domestic ``yyyy-MM-dd HH:mm:ss`` GMT+8 or the international
  ``yyyy-MM-dd HH:mm:ss.000+0800``) more than 6 minutes off → code 8; unknown/expired token →
  code 19 until refreshed via ``GET /oauth2/refresh_token``; rate limit → code 2 with the ban
  seconds in ``en_desc``;
- the misspelled ``…_responce`` roots, yuan strings, ``apiResult``; ``page`` from 1 capped at
  ``max_page`` (300); ``dateType`` 0 = modified time, 1 = created time;
- consignee mobiles in clear for some orders and masked (``138****0000``) for others;
- unpaid orders are not listed (JOS has no awaiting-payment state in ``order_state``).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from connectors.jd.signing import PARAM_JSON, verify
from connectors.testing.fake import FakePlatform
from connectors.testing.world import Person, WorldOrder
from connectors.wire import CST, TIME_FORMAT, format_time

ROUTER = "/routerjson"
SKEW = timedelta(minutes=6)
_PAID_STATES = ("WAIT_SELLER_STOCK_OUT", "WAIT_GOODS_RECEIVE_CONFIRM", "LOCKED", "PAUSE")


def xid_of(person: Person) -> str:
    """The fake's ``xid_buyer`` for a person (stable per vendor)."""
    return (
        "o_AAS" + hashlib.sha256(f"{person.seed}:jd_xid:{person.index}".encode()).hexdigest()[:27]
    )


def refund_id_of(order: WorldOrder, n: int = 0) -> str:
    """The numeric refund-application id the fake gives a world refund."""
    return str(int(order.external_id) * 10 + 1 + n)


def receiver_in_clear(order: WorldOrder) -> bool:
    """Whether the fake shows this order's consignee mobile in clear (else masked)."""
    return int(hashlib.sha256(order.external_id.encode()).hexdigest(), 16) % 3 != 0


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def _error(code: str, zh: str, en: str) -> web.Response:
    return web.json_response({"error_response": {"code": code, "zh_desc": zh, "en_desc": en}})


def _parse_timestamp(value: str) -> datetime | None:
    for fmt, tz in ((TIME_FORMAT, CST), ("%Y-%m-%d %H:%M:%S.%f%z", None)):
        try:
            dt = datetime.strptime(value, fmt)
        except ValueError:
            continue
        return dt.replace(tzinfo=tz) if tz is not None else dt
    return None


def _cst(value: str) -> datetime:
    return datetime.strptime(value, TIME_FORMAT).replace(tzinfo=CST)


class JdFake(FakePlatform):
    name = "jd"
    max_page = 300

    def __init__(self, *args: Any, vender_id: str = "10086", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.vender_id = vender_id
        self._last_page: dict[str, Any] = {}

    # -- FakePlatform API ---------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(ROUTER, self.router),
            web.get(ROUTER, self.router),
            web.get("/oauth2/refresh_token", self.oauth_refresh),
        ]

    def rate_limited(self, ban_seconds: int) -> web.Response:
        return _error("2", "调用次数超限", f"App Call Limited, retry after {ban_seconds} seconds")

    def api_name(self, request: web.Request) -> str:
        return request.query.get("method", request.path)

    def is_api_call(self, request: web.Request) -> bool:
        return request.path == ROUTER

    def page_key(self, request: web.Request) -> str:
        try:
            app = json.loads(request.query.get(PARAM_JSON, "{}"))
        except ValueError:
            app = {}
        rest = {k: v for k, v in app.items() if k not in ("page", "pageIndex")}
        return request.query.get("method", "") + json.dumps(rest, sort_keys=True)

    # -- OAuth --------------------------------------------------------------------------------

    async def oauth_refresh(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("app_key") != self.app_key or q.get("app_secret") != self.app_secret:
            return web.json_response({"code": 1001, "msg": "app_key or app_secret invalid"})
        if q.get("grant_type") != "refresh_token" or q.get("refresh_token") != self.refresh_token:
            return web.json_response({"code": 1002, "msg": "refresh_token invalid or expired"})
        token = self.issue_token()
        self.refresh_token = f"rt{self.tokens_issued}-{self.app_key}"
        return web.json_response(
            {
                "code": 0,
                "access_token": token,
                "refresh_token": self.refresh_token,
                "expires_in": 86400,
                "scope": "snsapi_base",
                "token_type": "bearer",
                "time": int(self.clock().timestamp() * 1000),
            }
        )

    # -- router -------------------------------------------------------------------------------

    async def router(self, request: web.Request) -> web.Response:
        params: dict[str, str] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            params.update({k: str(v) for k, v in (await request.post()).items()})
        method = params.get("method")
        if not method:
            return _error("14", "缺少方法名参数", "Missing Method")
        if not params.get("v"):
            return _error("4", "缺少版本参数", "Missing Version")
        if params["v"] != "2.0":
            return _error("5", "非法的版本参数", "Unsupported Version")
        if not params.get("timestamp"):
            return _error("7", "缺少时间戳参数", "Missing Timestamp")
        if not params.get("sign"):
            return _error("11", "缺少签名参数", "Missing Signature")
        if params.get("app_key") != self.app_key or not verify(params, self.app_secret):
            return _error("12", "无效签名", "Invalid Signature")
        ts = _parse_timestamp(params["timestamp"])
        if ts is None or abs(ts - self.clock()) > SKEW:
            return _error("8", "时间戳非法，与服务器时间相差超过6分钟", "Invalid Timestamp")
        if params.get("access_token") != self.access_token:
            return _error("19", "无效access_token", "Invalid access_token")
        try:
            app = json.loads(params.get(PARAM_JSON) or "{}")
        except ValueError:
            return _error("61", "参数格式错误", "Invalid Arguments")
        key = self.page_key(request) if PARAM_JSON in request.query else method
        if method == "jingdong.pop.order.search":
            body = self.order_search(app)
        elif method == "jingdong.pop.afs.soa.refundapply.queryPageList":
            body = self.refund_query(app)
        else:
            return _error("15", "无效的方法", "Invalid Method")
        if self.duplicate_page(key) and key in self._last_page:
            body = self._last_page[key]  # the previous page again, in place of this one
        self._last_page[key] = body
        return web.json_response(body)

    # -- data ---------------------------------------------------------------------------------

    def _visible(self) -> list[WorldOrder]:
        return [o for o in self.world.orders.get("jd", []) if o.status != "created"]

    def state_of(self, order: WorldOrder) -> str:
        if order.status == "completed":
            return "FINISHED_L"
        if order.status == "cancelled":
            return "TRADE_CANCELED"
        return _PAID_STATES[int(order.external_id) % len(_PAID_STATES)]

    def render_order(self, o: WorldOrder) -> dict[str, Any]:
        p = o.person
        mobile = (
            o.receiver_phone
            if receiver_in_clear(o)
            else f"{o.receiver_phone[:3]}****{o.receiver_phone[-4:]}"
        )
        return {
            "orderId": o.external_id,
            "venderId": self.vender_id,
            "orderType": "22",
            "payType": "4-在线支付",
            "orderTotalPrice": yuan(o.total_fen),
            "orderSellerPrice": yuan(o.total_fen),
            "orderPayment": yuan(o.paid_fen),
            "freightPrice": "0.00",
            "sellerDiscount": "0.00",
            "orderState": self.state_of(o),
            "orderStateRemark": "",
            "orderStartTime": format_time(o.created),
            "orderEndTime": format_time(o.modified) if o.status != "paid" else "",
            "paymentConfirmTime": format_time(o.paid_at) if o.paid_at else "0001-01-01 00:00:00",
            "modified": format_time(o.modified),
            "orderRemark": "",
            "venderRemark": "",
            "pin": "",
            "open_id_buyer": p.jd_open_id,
            "xid_buyer": xid_of(p),
            "consigneeInfo": {
                "fullname": p.name,
                "mobile": mobile,
                "telephone": "",
                "fullAddress": f"{p.city}市某区某路1号",
                "province": p.city,
                "city": p.city,
                "county": "",
                "town": "",
            },
            "itemInfoList": [
                {
                    "skuId": str(1000 + i),
                    "outerSkuId": line.sku,
                    "skuName": line.name,
                    "jdPrice": yuan(line.unit_fen),
                    "itemTotal": str(line.quantity),
                    "wareId": str(2000 + i),
                    "productNo": "",
                }
                for i, line in enumerate(o.lines)
            ],
            "couponDetailList": [],
            "storeId": "0",
            "orderSource": "移动端订单",
        }

    def order_search(self, app: dict[str, Any]) -> dict[str, Any]:
        def fail(zh: str, en: str) -> dict[str, Any]:
            api = {"success": False, "chineseErrCode": zh, "englishErrCode": en, "numberCode": 1}
            return {
                "jingdong_pop_order_search_responce": {
                    "code": "0",
                    "searchorderinfo_result": {"apiResult": api, "orderTotal": 0},
                }
            }

        try:
            start, end = _cst(app["start_date"]), _cst(app["end_date"])
            page, size = int(app.get("page", 1)), int(app.get("page_size", 10))
        except (KeyError, ValueError):
            return fail("参数错误", "invalid start_date/end_date/page")
        if not 1 <= size <= 100:
            return fail("每页条数超过100", "page_size must be 1-100")
        if page < 1 or page > self.max_page:
            return fail(f"页码不能超过{self.max_page}", f"page must be 1-{self.max_page}")
        states = set(str(app.get("order_state", "")).split(","))
        by_created = str(app.get("dateType", "0")) == "1"
        rows = []
        for o in self._visible():
            at = o.created if by_created else o.modified
            if start <= at.astimezone(CST) <= end and self.state_of(o) in states:
                rows.append((at, o.external_id, o))
        rows.sort(key=lambda t: (t[0], t[1]))
        chunk = rows[(page - 1) * size : page * size]
        return {
            "jingdong_pop_order_search_responce": {
                "code": "0",
                "searchorderinfo_result": {
                    "apiResult": {
                        "success": True,
                        "chineseErrCode": "",
                        "englishErrCode": "",
                        "numberCode": 0,
                    },
                    "orderTotal": len(rows),
                    "orderInfoList": [self.render_order(o) for _, _, o in chunk],
                },
            }
        }

    def refund_rows(self) -> list[tuple[datetime, dict[str, Any]]]:
        rows = []
        for o in self._visible():
            for n, r in enumerate(o.refunds):
                rows.append(
                    (
                        r.at,
                        {
                            "id": int(refund_id_of(o, n)),
                            "orderId": int(o.external_id),
                            "applyRefundSum": yuan(r.amount_fen),
                            "applyTime": format_time(r.at),
                            "checkTime": format_time(r.at),
                            "status": 1,
                            "reason": "七天无理由",
                            "buyerId": "",
                            "open_id_buyer": o.person.jd_open_id,
                        },
                    )
                )
            if not o.refunds and int(o.external_id) % 7 == 0 and o.status != "cancelled":
                # an application still awaiting review (0) or rejected (2): not a refund
                rows.append(
                    (
                        o.modified,
                        {
                            "id": int(refund_id_of(o, 5)),
                            "orderId": int(o.external_id),
                            "applyRefundSum": yuan(o.lines[0].unit_fen),
                            "applyTime": format_time(o.modified),
                            "checkTime": "",
                            "status": int(o.external_id) % 2 * 2,
                            "reason": "不想要了",
                        },
                    )
                )
        rows.sort(key=lambda t: (t[0], t[1]["id"]))
        return rows

    def refund_query(self, app: dict[str, Any]) -> dict[str, Any]:
        root = "jingdong_pop_afs_soa_refundapply_queryPageList_responce"
        try:
            start, end = _cst(app["applyTimeStart"]), _cst(app["applyTimeEnd"])
            page, size = int(app.get("pageIndex", 1)), int(app.get("pageSize", 10))
        except (KeyError, ValueError):
            return {
                root: {
                    "queryResult": {
                        "success": False,
                        "resultCode": "-1",
                        "resultDescribe": "参数错误",
                    }
                }
            }
        if not 1 <= size <= 100 or page < 1:
            return {
                root: {
                    "queryResult": {
                        "success": False,
                        "resultCode": "-1",
                        "resultDescribe": "pageIndex/pageSize invalid",
                    }
                }
            }
        rows = [r for at, r in self.refund_rows() if start <= at.astimezone(CST) <= end]
        return {
            root: {
                "code": "0",
                "queryResult": {
                    "success": True,
                    "resultCode": "0",
                    "resultDescribe": "",
                    "totalCount": len(rows),
                    "result": rows[(page - 1) * size : page * size],
                },
            }
        }
