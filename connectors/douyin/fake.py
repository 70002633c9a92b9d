"""A fake Doudian open platform (抖店) rendering the ``douyin`` slice of a :class:`World`.

It behaves like the real gateway where PLATFORMS.md §3 and §10 say how:

- every call is ``POST /<method with / for .>``; the ``sign`` is recomputed over the *exact* body
  string received (or ``param_json`` in the query, as PyPI ``doudian`` sends for ``/token/*``)
  with MD5 or HMAC-SHA256 → 40003 ``isv.signature-invalid``;
- ``timestamp`` may be Unix seconds or ``yyyy-MM-dd HH:mm:ss`` (GMT+8); more than 10 minutes off
  the fake's clock → 40003 ``isv.timestamp-invalid``;
- a stale access token → 40003 ``isv.access-token-expired`` (an unknown one →
  ``isv.access-token-no-existed``) until the client calls ``/token/refresh`` (refresh tokens
  rotate) or ``/token/create`` (``authorization_self`` + ``shop_id``);
- rate limit: HTTP 200, code 60000 ``isp.traffic-limited:628002006``; with ban seconds the
  ``sub_msg`` says how long and every call fails until the ban is over;
- new error scheme only with header ``x-open-no-old-err-code: 1``, legacy ``err_no/message``
  otherwise (and always on ``/token/*`` with ``legacy_token_envelope``);
- ``order.searchList``: ``page`` from 0, ``size`` ≤ 100, windows ≤ 90 days, amounts in fen,
  receiver fields only encrypted/masked; ``member.mGetMemberInfoByOpenIdList``: ≤ 10 open ids,
  plaintext ``mobile`` only for buyers with a paid order in the 90 days before the fake's
  business clock (default: the world's end), else only ``mix_mobile``; ``afterSale.List``
  (assumed shape) with some non-refund after-sales mixed in.

The ``duplicate`` fault serves the previous page's answer (with its own ``page`` number) again
in place of the one asked for.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from connectors.douyin.mapping import CHINA
from connectors.douyin.signing import SIGN_METHODS, verify_sign
from connectors.testing.fake import FakePlatform
from connectors.testing.world import Person, World, WorldOrder

DEFAULT_SHOP_ID = "77001234"
DEFAULT_APP_ID = "1128"
MAX_SKEW = 600
MAX_WINDOW = 90 * 86_400
_PAID_CODES = (105, 2, 101, 3)
_STATUS_DESC = {
    1: "待支付",
    105: "已支付",
    2: "备货中",
    101: "部分发货",
    3: "已发货",
    4: "已取消",
    5: "已完成",
}


class DouyinError(Exception):
    def __init__(self, code: int, msg: str, sub_code: str = "", sub_msg: str = "") -> None:
        super().__init__(sub_msg or msg)
        self.code, self.msg, self.sub_code, self.sub_msg = code, msg, sub_code, sub_msg


def _ts(value: datetime | None) -> int:
    return int(value.timestamp()) if value is not None else 0


def _h(seed: str, n: int = 16) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:n]


class DouyinFake(FakePlatform):
    name = "douyin"

    def __init__(
        self,
        world: World,
        *,
        shop_id: str = DEFAULT_SHOP_ID,
        member_app_id: str = DEFAULT_APP_ID,
        non_member_every: int = 0,
        legacy_token_envelope: bool = False,
        business_clock: Callable[[], datetime] | None = None,
        max_skew: float | None = MAX_SKEW,
        **kwargs: Any,
    ) -> None:
        super().__init__(world, **kwargs)
        self.shop_id = shop_id
        self.member_app_id = member_app_id
        self.non_member_every = non_member_every
        self.legacy_token_envelope = legacy_token_envelope
        self.business_clock = business_clock or (lambda: self.world.end)
        self.max_skew = max_skew  # None: no clock-skew check (a client on a synthetic clock)
        self.banned_until = 0.0
        self.old_tokens: set[str] = set()
        self.api_log: list[tuple[float, str, dict[str, Any]]] = []
        self.before_page: Callable[[str, int], None] | None = None
        self._last_page: dict[str, tuple[tuple[Any, ...], int, dict[str, Any]]] = {}
        self._log_ids = 0
        self.stale_pages = 0  # pages served again in place of the next one (duplicate fault)

    # -- FakePlatform hooks ---------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/{tail:.*}", self.dispatch)]

    def api_name(self, request: web.Request) -> str:
        return request.query.get("method") or request.path

    def is_api_call(self, request: web.Request) -> bool:
        return not request.path.startswith("/token/")

    def page_key(self, request: web.Request) -> str:
        return request.path

    def rate_limited(self, ban_seconds: int) -> web.Response:
        if ban_seconds > 0:
            self.banned_until = max(self.banned_until, time.monotonic() + ban_seconds)
        return self._error(DouyinError(*self._limit_args(ban_seconds)), new_scheme=True)

    def expire_token(self) -> None:
        self.old_tokens.add(self.access_token)
        super().expire_token()

    def issue_token(self) -> str:
        self.old_tokens.add(self.access_token)
        token = super().issue_token()
        self.refresh_token = f"rt{self.tokens_issued}-{self.app_key}"
        return token

    def ban(self, seconds: float) -> None:
        """Every API call is rate limited for ``seconds`` (the platform's ban)."""
        self.banned_until = time.monotonic() + seconds

    # -- world rules the tests share ----------------------------------------------------------

    @property
    def orders(self) -> list[WorldOrder]:
        return self.world.orders.get("douyin", [])

    def is_member(self, person: Person) -> bool:
        return not (self.non_member_every and person.index % self.non_member_every == 0)

    def recent_paid(self, person: Person) -> bool:
        """Has a paid Douyin order in the 90 days before the business clock (plaintext mobile)."""
        ref = self.business_clock()
        return any(
            o.person.index == person.index
            and o.paid_at is not None
            and ref - timedelta(days=90) <= o.paid_at <= ref
            for o in self.orders
        )

    @staticmethod
    def point_cent(person: Person) -> int:
        cents = (person.index * 37 % 50) * 100
        return cents + 50 if person.index % 11 == 4 else cents

    @staticmethod
    def status_code(order: WorldOrder) -> int:
        if order.status == "created":
            return 1
        if order.status == "cancelled":
            return 4
        if order.status == "completed":
            return 5
        return _PAID_CODES[int(order.external_id) % len(_PAID_CODES)]

    # -- rendering ----------------------------------------------------------------------------

    def render_order(self, o: WorldOrder) -> dict[str, Any]:
        code = self.status_code(o)
        p = o.person
        refunded = {r.refund_id for r in o.refunds}
        return {
            "order_id": o.external_id,
            "shop_id": int(self.shop_id),
            "open_id": "",
            "doudian_open_id": p.douyin_open_id,
            "order_status": code,
            "order_status_desc": _STATUS_DESC[code],
            "main_status": code,
            "create_time": _ts(o.created),
            "update_time": _ts(o.modified),
            "pay_time": _ts(o.paid_at),
            "finish_time": _ts(o.modified) if o.status == "completed" else 0,
            "order_amount": o.total_fen,
            "pay_amount": o.total_fen,
            "post_amount": 0,
            "promotion_amount": 0,
            "buyer_words": "",
            "seller_words": "",
            "encrypt_post_tel": f"#{_h('tel' + o.receiver_phone, 24)}#",
            "mask_post_tel": f"{o.receiver_phone[:3]}****{o.receiver_phone[-4:]}",
            "encrypt_post_receiver": f"#{_h('name' + p.name, 24)}#",
            "mask_post_receiver": p.name[:1] + "*" * (len(p.name) - 1),
            "post_addr": {
                "province": {"name": "上海市" if p.city == "上海" else "浙江省", "id": "31"},
                "city": {"name": p.city + "市", "id": _h(p.city, 6)},
                "town": {"name": "某区", "id": "0"},
                "street": {"name": "某街道", "id": "0"},
                "encrypt_detail": f"#{_h('addr' + str(p.index), 32)}#",
            },
            "user_id_info": {"encrypt_id_card_no": "", "encrypt_id_card_name": ""},
            "sku_order_list": [
                {
                    "order_id": f"{o.external_id}{i + 1}",
                    "parent_order_id": o.external_id,
                    "product_id": int(_h("p" + line.sku, 10), 16),
                    "sku_id": int(_h("s" + line.sku, 10), 16),
                    "out_sku_id": line.sku,
                    "code": line.sku,
                    "product_name": line.name,
                    "item_num": line.quantity,
                    "origin_amount": line.amount_fen,
                    "pay_amount": line.amount_fen,
                    "after_sale_info": {
                        "after_sale_status": 12 if refunded and i == 0 else 0,
                        "after_sale_type": 1 if refunded and i == 0 else 0,
                        "refund_status": 3 if refunded and i == 0 else 0,
                    },
                    "store_info": {"store_id": "", "store_name": ""},
                }
                for i, line in enumerate(o.lines)
            ],
        }

    def aftersales(self) -> list[dict[str, Any]]:
        """Refunds of the world (status 3) plus closed after-sales that returned no money."""
        items: list[dict[str, Any]] = []
        for o in self.orders:
            for r in o.refunds:
                items.append(self._aftersale(r.refund_id, o, r.amount_fen, 3, r.at))
            if not o.refunds and o.status == "completed" and int(o.external_id) % 5 == 0:
                closed = self._aftersale(
                    f"AS{o.external_id}", o, o.lines[0].unit_fen, 4, o.modified
                )
                items.append(closed)
        items.sort(
            key=lambda i: (i["aftersale_info"]["update_time"], i["aftersale_info"]["aftersale_id"])
        )
        return items

    @staticmethod
    def _aftersale(
        aid: str, o: WorldOrder, amount: int, status: int, at: datetime
    ) -> dict[str, Any]:
        return {
            "aftersale_info": {
                "aftersale_id": aid,
                "order_id": o.external_id,
                "aftersale_type": 1,
                "aftersale_status": 12 if status == 3 else 28,
                "refund_amount": amount,
                "refund_status": status,
                "create_time": _ts(o.modified),
                "update_time": _ts(at),
                "reason": "不想要了",
            },
            "order_info": {"shop_order_id": o.external_id, "related_order_info": []},
        }

    def member_info(self, open_id: str) -> dict[str, Any]:
        person = next(
            (p for p in self.world.people_on("douyin") if p.douyin_open_id == open_id), None
        )
        if person is None or not self.is_member(person):
            return {
                "success": False,
                "open_id": open_id,
                "err_code": 10001,
                "err_msg": "用户不是店铺会员",
            }
        return {
            "success": True,
            "open_id": open_id,
            "mobile": person.phone if self.recent_paid(person) else "",
            "mix_mobile": f"${_h('mix' + person.phone, 20)}$",
            "union_id": person.douyin_union_id,
            "level": 1 + person.index % 4,
            "point_cent": self.point_cent(person),
            "err_code": 0,
            "err_msg": "",
            "extend": "",
        }

    # -- protocol -----------------------------------------------------------------------------

    def _limit_args(self, ban_seconds: float) -> tuple[int, str, str, str]:
        sub_msg = "触发限流，请稍后重试"
        if ban_seconds > 0:
            sub_msg += f"，封禁剩余 {math.ceil(ban_seconds)} 秒"
        return (60000, "触发限流，请稍后重试", "isp.traffic-limited:628002006", sub_msg)

    def _log_id(self) -> str:
        self._log_ids += 1
        return f"20261101{self._log_ids:012d}"

    def _ok(self, data: dict[str, Any], *, new_scheme: bool) -> web.Response:
        if new_scheme:
            body = {"code": 10000, "msg": "success", "sub_code": "", "sub_msg": "", "data": data}
        else:
            body = {"err_no": 0, "message": "success", "data": data}
        body["log_id"] = self._log_id()
        return web.json_response(body, dumps=lambda v: json.dumps(v, ensure_ascii=False))

    def _error(self, err: DouyinError, *, new_scheme: bool) -> web.Response:
        if new_scheme:
            body: dict[str, Any] = {
                "code": err.code,
                "msg": err.msg,
                "sub_code": err.sub_code,
                "sub_msg": err.sub_msg,
                "data": None,
            }
        else:
            body = {"err_no": err.code, "message": err.sub_msg or err.msg, "data": None}
        body["log_id"] = self._log_id()
        return web.json_response(body, dumps=lambda v: json.dumps(v, ensure_ascii=False))

    def _timestamp(self, raw: str) -> float:
        if raw.isdigit():
            return float(raw)
        try:
            return datetime.strptime(raw, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA).timestamp()
        except ValueError:
            raise DouyinError(
                40003, "参数不合法", "isv.timestamp-format-error", "timestamp格式错误"
            ) from None

    async def dispatch(self, request: web.Request) -> web.Response:
        is_token = request.path.startswith("/token/")
        new_scheme = request.headers.get("x-open-no-old-err-code") == "1"
        if is_token and self.legacy_token_envelope:
            new_scheme = False
        try:
            method, params = await self._verify(request)
            if is_token:
                return self._ok(self._token(method, params), new_scheme=new_scheme)
            self._check_token(request.query.get("access_token", ""))
            if time.monotonic() < self.banned_until:
                raise DouyinError(*self._limit_args(self.banned_until - time.monotonic()))
            self.api_log.append((time.monotonic(), method, params))
            handler = {
                "order.searchList": self._search_list,
                "member.mGetMemberInfoByOpenIdList": self._member_infos,
                "afterSale.List": self._aftersale_list,
            }.get(method)
            if handler is None:
                raise DouyinError(
                    70000, "API已下线或不存在", "isv.api-not-exist", f"{method} 不存在"
                )
            return self._ok(handler(request.path, params), new_scheme=new_scheme)
        except DouyinError as err:
            return self._error(err, new_scheme=new_scheme)

    async def _verify(self, request: web.Request) -> tuple[str, dict[str, Any]]:
        q = request.query
        method = q.get("method", "")
        if not method or "/" + method.replace(".", "/") != request.path:
            raise DouyinError(40001, "缺少必选参数", "isv.method-missing", "method 与路径不符")
        raw = await request.read()
        param_json = raw.decode("utf-8") if raw else q.get("param_json", "")
        given = q.get("sign", "")
        if not given:
            raise DouyinError(40001, "缺少必选参数", "isv.signature-missing", "sign 不能为空")
        if q.get("app_key") != self.app_key:
            raise DouyinError(40003, "参数不合法", "isv.app-key-invalid", "app_key 不存在")
        if q.get("v") != "2":
            raise DouyinError(40003, "参数不合法", "isv.parameter-format-invalid", "v 必须为 2")
        sign_method = q.get("sign_method", "md5")
        if sign_method not in SIGN_METHODS:
            raise DouyinError(
                40003, "参数不合法", "isv.parameter-format-invalid", "sign_method 不支持"
            )
        ts_raw = q.get("timestamp", "")
        ts = self._timestamp(ts_raw)
        if not verify_sign(
            self.app_key, self.app_secret, method, param_json, ts_raw, sign_method, given
        ):
            raise DouyinError(
                40003, "参数不合法", "isv.signature-invalid", "签名校验失败，请检查签名"
            )
        if self.max_skew is not None and abs(ts - self.clock().timestamp()) > self.max_skew:
            raise DouyinError(
                40003, "参数不合法", "isv.timestamp-invalid", "timestamp 与服务器时间相差超过10分钟"
            )
        try:
            params = json.loads(param_json) if param_json else {}
        except ValueError:
            raise DouyinError(
                40003, "参数不合法", "isv.parameter-format-invalid", "param_json 不是合法 JSON"
            ) from None
        if not isinstance(params, dict):
            raise DouyinError(
                40003, "参数不合法", "isv.parameter-format-invalid", "param_json 必须是对象"
            )
        return method, params

    def _check_token(self, token: str) -> None:
        if not token:
            raise DouyinError(
                40001, "缺少必选参数", "isv.access-token-missing", "access_token 不能为空"
            )
        if token != self.access_token:
            if token in self.old_tokens:
                raise DouyinError(
                    40003, "参数不合法", "isv.access-token-expired", "access_token 已过期"
                )
            raise DouyinError(
                40003, "参数不合法", "isv.access-token-no-existed", "access_token 不存在"
            )

    def _token(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        if method == "token.create":
            if (
                params.get("grant_type") != "authorization_self"
                or str(params.get("shop_id")) != self.shop_id
            ):
                raise DouyinError(
                    50001, "token生成失败", "dop.token-generate-failed:shop-invalid", "店铺未授权"
                )
        elif method == "token.refresh":
            if (
                params.get("grant_type") != "refresh_token"
                or params.get("refresh_token") != self.refresh_token
            ):
                raise DouyinError(
                    50001,
                    "token生成失败",
                    "dop.token-generate-failed:token-expired",
                    "refresh_token 已过期",
                )
        else:
            raise DouyinError(70000, "API已下线或不存在", "isv.api-not-exist", f"{method} 不存在")
        access = self.issue_token()
        return {
            "access_token": access,
            "expires_in": 604800,
            "refresh_token": self.refresh_token,
            "scope": "SCOPE",
            "shop_id": int(self.shop_id),
            "shop_name": "茶语旗舰店",
            "authority_id": "",
            "auth_subject_type": "",
        }

    @staticmethod
    def _int(params: Mapping[str, Any], name: str, default: int | None = None) -> int:
        value = params.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise DouyinError(40004, "业务参数错误", "isv.parameter-invalid", f"{name} 必须是整数")
        return value

    def _paged(
        self,
        path: str,
        params: Mapping[str, Any],
        window: tuple[int, int],
        rows: list[Any],
        key: str,
    ) -> dict[str, Any]:
        page = self._int(params, "page", 0)
        size = self._int(params, "size", 20)
        if page < 0 or not 1 <= size <= 100:
            raise DouyinError(
                40004, "业务参数错误", "isv.parameter-invalid", "page 从 0 开始，size 取值 1-100"
            )
        if window[1] - window[0] > MAX_WINDOW or window[1] < window[0]:
            raise DouyinError(
                40004, "业务参数错误", "isv.parameter-invalid", "时间范围不能超过90天"
            )
        if self.before_page is not None:
            self.before_page(path, page)
        win = (window, size)
        last = self._last_page.get(path)
        stale = last is not None and last[0] == win and last[1] == page - 1
        if self.duplicate_page(path) and stale and last is not None:
            self.stale_pages += 1
            return last[2]
        data = {
            key: rows[page * size : (page + 1) * size],
            "total": len(rows),
            "page": page,
            "size": size,
        }
        self._last_page[path] = (win, page, data)
        return data

    def _search_list(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        if "update_time_start" in params or "update_time_end" in params:
            a, b, attr = (
                self._int(params, "update_time_start", 0),
                self._int(params, "update_time_end"),
                "modified",
            )
        else:
            a, b, attr = (
                self._int(params, "create_time_start", 0),
                self._int(params, "create_time_end"),
                "created",
            )
        asc = bool(params.get("order_asc", False))
        by = params.get("order_by", "create_time")
        if by not in ("create_time", "update_time"):
            raise DouyinError(40004, "业务参数错误", "isv.parameter-invalid", "order_by 不合法")
        sort_attr = "modified" if by == "update_time" else "created"
        rows = [o for o in self.orders if a <= _ts(getattr(o, attr)) <= b]
        rows.sort(key=lambda o: (_ts(getattr(o, sort_attr)), o.external_id), reverse=not asc)
        return self._paged(
            path, params, (a, b), [self.render_order(o) for o in rows], "shop_order_list"
        )

    def _member_infos(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        if str(params.get("app_id")) != self.member_app_id:
            raise DouyinError(
                40004, "业务参数错误", "isv.business-failed:628145001", "app_id 与店铺不匹配"
            )
        ids = params.get("open_id_list")
        if not isinstance(ids, list) or not ids or len(ids) > 10:
            raise DouyinError(
                40004, "业务参数错误", "isv.parameter-invalid", "open_id_list 数量 1-10"
            )
        return {"member_infos": [self.member_info(str(i)) for i in ids]}

    def _aftersale_list(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        a, b = self._int(params, "update_start_time", 0), self._int(params, "update_end_time")
        rows = [i for i in self.aftersales() if a <= i["aftersale_info"]["update_time"] <= b]
        return self._paged(path, params, (a, b), rows, "items")
