"""A fake WeChat API server (and a fake WeChat callback sender) over :class:`World`.

Serves the slice of the world that uses the ``wechat`` channel:

- ``GET /cgi-bin/token`` checks appid (40013) and secret (40125) for the mini-program and the
  official account and issues per-app tokens; a replaced or expired token answers 40001/42001,
  a missing one 41001 (until the client fetches a new one).
- ``GET /sns/jscode2session`` for codes from :meth:`issue_login_code` (single use → 40163 when
  reused, 5-minute life → 40029, unknown → 40029); the answer omits ``errcode`` like the real
  one since 2021.
- ``POST /wxa/business/getuserphonenumber`` for codes from :meth:`issue_phone_code`.
- ``GET /cgi-bin/user/get`` (``page_size`` openids after ``next_openid``; the final page still
  carries a ``next_openid`` and the request after it answers ``count: 0`` without ``data``; an
  unknown ``next_openid`` answers 40003) and ``POST /cgi-bin/user/info/batchget`` (≤100).
- ``GET /cgi-bin/get_api_domain_ip`` (what ``check()`` calls).

Faults: the base class's, with the rate-limit answer being errcode 45011 (HTTP 200) stating the
ban seconds; :meth:`fail_next` scripts any WeChat envelope (-1 busy, 45009, 40226 …) for the next
API calls. Official-account openids differ from mini-program openids (per-app ids), as on WeChat.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections import deque
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from connectors.testing.fake import FakePlatform
from connectors.testing.world import Person, World
from connectors.wechat.signing import callback_signature, encrypt_message, msg_signature
from gateway.sync import WebhookRequest

CODE_LIFE = timedelta(minutes=5)
ORIGINAL_ID = "gh_0123456789ab"


def _rid() -> str:
    return f"rid: {secrets.token_hex(4)}-{secrets.token_hex(4)}-{secrets.token_hex(4)}"


async def _json_body(request: web.Request) -> Any:
    """The JSON body, or ``None`` (bad JSON, or the client gave up during a timeout fault)."""
    try:
        return json.loads(await request.read())
    except (ValueError, ConnectionResetError):
        return None


def _err(code: int, msg: str) -> web.Response:
    return web.json_response({"errcode": code, "errmsg": f"{msg} {_rid()}"})


class WechatFake(FakePlatform):
    name = "wechat"

    def __init__(
        self,
        world: World,
        *,
        appid: str = "wx1a2b3c4d5e6f7a8b",
        secret: str = "mpsecret0123456789abcdef01234567",
        oa_appid: str = "wx9f8e7d6c5b4a3f2e",
        oa_secret: str = "oasecret0123456789abcdef01234567",
        page_size: int = 10_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(world, app_key=appid, app_secret=secret, **kwargs)
        self.appid, self.secret = appid, secret
        self.oa_appid, self.oa_secret = oa_appid, oa_secret
        self.page_size = page_size
        self.tokens: dict[str, str] = {}
        self.retired: set[str] = set()
        self.login_codes: dict[str, tuple[Person, datetime]] = {}
        self.phone_codes: dict[str, tuple[Person, datetime]] = {}
        self.used_codes: set[str] = set()
        self.unfollowed: set[int] = set()
        self.scripted: deque[tuple[int, str]] = deque()
        self._last_page: dict[str, dict[str, Any]] = {}

    # -- world rendering -----------------------------------------------------------------------

    def oa_openid(self, person: Person) -> str:
        """The person's openid under the official account (not the mini-program's)."""
        seed = f"{self.oa_appid}:{person.wechat_unionid}".encode()
        return "oOA" + hashlib.sha256(seed).hexdigest()[:25]

    def subscribe_time(self, person: Person) -> datetime:
        span = max(1, int((self.world.end - self.world.start).total_seconds()) - 1)
        return self.world.start + timedelta(seconds=(person.index * 7919 + 13) % span)

    def followers(self) -> list[Person]:
        return [p for p in self.world.people_on("wechat") if p.index not in self.unfollowed]

    def follower_info(self, person: Person) -> dict[str, Any]:
        return {
            "subscribe": 1,
            "openid": self.oa_openid(person),
            "language": "zh_CN",
            "subscribe_time": int(self.subscribe_time(person).timestamp()),
            "unionid": person.wechat_unionid,
            "remark": "",
            "groupid": 0,
            "tagid_list": [],
            "subscribe_scene": "ADD_SCENE_QR_CODE",
            "qr_scene": 0,
            "qr_scene_str": "",
        }

    def unfollow(self, person: Person) -> None:
        self.unfollowed.add(person.index)

    # -- helpers the tests drive ---------------------------------------------------------------

    def issue_login_code(self, person: Person) -> str:
        code = "0" + secrets.token_hex(16)[:31]
        self.login_codes[code] = (person, self.clock())
        return code

    def issue_phone_code(self, person: Person) -> str:
        code = secrets.token_hex(32)
        self.phone_codes[code] = (person, self.clock())
        return code

    def fail_next(self, errcode: int, errmsg: str, times: int = 1) -> None:
        """Answer the next ``times`` API calls with this WeChat error envelope."""
        self.scripted.extend([(errcode, errmsg)] * times)

    def expire_token(self) -> None:
        for appid, token in list(self.tokens.items()):
            self.retired.add(token)
            self.tokens[appid] = f"expired-{token}"
            self.retired.add(self.tokens[appid])

    def issue_app_token(self, appid: str) -> str:
        self.tokens_issued += 1
        old = self.tokens.get(appid)
        if old:
            self.retired.add(old)
        token = f"{self.tokens_issued:03d}_" + secrets.token_urlsafe(24)
        self.tokens[appid] = token
        return token

    # -- FakePlatform API ----------------------------------------------------------------------

    def rate_limited(self, ban_seconds: int) -> web.Response:
        ban = f", ban {ban_seconds} seconds" if ban_seconds else ""
        return _err(45011, f"api minute-quota reach limit  mustslower  retry next minute{ban}")

    def page_key(self, request: web.Request) -> str:
        # Only the follower list is paged: a "duplicate" fault on any other call must not
        # clobber a pending page repeat (WeChat repeats list pages, not batch answers).
        if request.path == "/cgi-bin/user/get":
            return "user/get"
        return self._pending_duplicate or ""

    def is_api_call(self, request: web.Request) -> bool:
        return request.path != "/cgi-bin/token"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/cgi-bin/token", self.token),
            web.get("/sns/jscode2session", self.jscode2session),
            web.post("/wxa/business/getuserphonenumber", self.phone),
            web.get("/cgi-bin/user/get", self.user_get),
            web.post("/cgi-bin/user/info/batchget", self.batchget),
            web.get("/cgi-bin/get_api_domain_ip", self.domain_ip),
        ]

    def _check_token(self, request: web.Request, apps: tuple[str, ...]) -> web.Response | None:
        if self.scripted:
            code, msg = self.scripted.popleft()
            return _err(code, msg)
        token = request.query.get("access_token")
        if not token:
            return _err(41001, "access_token missing")
        if any(self.tokens.get(a) == token for a in apps) and not token.startswith("expired-"):
            return None
        if token in self.retired:
            return _err(42001, "access_token expired")
        return _err(40001, "invalid credential, access_token is invalid or not latest")

    # -- handlers ------------------------------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("grant_type") != "client_credential":
            return _err(40002, "invalid grant_type")
        creds = {self.appid: self.secret, self.oa_appid: self.oa_secret}
        appid = q.get("appid", "")
        if appid not in creds:
            return _err(40013, "invalid appid")
        if q.get("secret") != creds[appid]:
            return _err(40125, "invalid appsecret, view more at http://t.cn/RAEkdVq")
        return web.json_response({"access_token": self.issue_app_token(appid), "expires_in": 7200})

    def _take(
        self, store: dict[str, tuple[Person, datetime]], code: str
    ) -> tuple[Person | None, web.Response | None]:
        if code in self.used_codes:
            return None, _err(40163, "code been used")
        entry = store.pop(code, None)
        if entry is None:
            return None, _err(40029, "invalid code")
        self.used_codes.add(code)
        person, issued = entry
        if self.clock() - issued > CODE_LIFE:
            return None, _err(40029, "invalid code")
        return person, None

    async def jscode2session(self, request: web.Request) -> web.Response:
        q = request.query
        if self.scripted:
            return _err(*self.scripted.popleft())
        if q.get("appid") != self.appid:
            return _err(40013, "invalid appid")
        if q.get("secret") != self.secret:
            return _err(40125, "invalid appsecret")
        if q.get("grant_type") != "authorization_code":
            return _err(40002, "invalid grant_type")
        person, error = self._take(self.login_codes, q.get("js_code", ""))
        if error is not None or person is None:
            return error or _err(40029, "invalid code")
        return web.json_response(
            {
                "session_key": base64.b64encode(secrets.token_bytes(16)).decode(),
                "openid": person.wechat_openid,
                "unionid": person.wechat_unionid,
            }
        )

    async def phone(self, request: web.Request) -> web.Response:
        denied = self._check_token(request, (self.appid,))
        if denied is not None:
            return denied
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _err(47001, "data format error")
        person, error = self._take(self.phone_codes, str(body.get("code", "")))
        if error is not None or person is None:
            return error or _err(40029, "invalid code")
        return web.json_response(
            {
                "errcode": 0,
                "errmsg": "ok",
                "phone_info": {
                    "phoneNumber": person.phone,
                    "purePhoneNumber": person.phone,
                    "countryCode": "86",
                    "watermark": {"timestamp": int(self.clock().timestamp()), "appid": self.appid},
                },
            }
        )

    async def user_get(self, request: web.Request) -> web.Response:
        denied = self._check_token(request, (self.oa_appid,))
        if denied is not None:
            return denied
        key = self.page_key(request)
        if self.duplicate_page(key) and key in self._last_page:
            return web.json_response(self._last_page[key])
        openids = [self.oa_openid(p) for p in self.followers()]
        after = request.query.get("next_openid", "")
        start = 0
        if after:
            if after not in openids:
                return _err(40003, "invalid openid")
            start = openids.index(after) + 1
        page = openids[start : start + self.page_size]
        if page:
            answer: dict[str, Any] = {
                "total": len(openids),
                "count": len(page),
                "data": {"openid": page},
                "next_openid": page[-1],
            }
        else:
            answer = {"total": len(openids), "count": 0, "next_openid": ""}
        self._last_page[key] = answer
        return web.json_response(answer)

    async def batchget(self, request: web.Request) -> web.Response:
        denied = self._check_token(request, (self.oa_appid,))
        if denied is not None:
            return denied
        body = await _json_body(request)
        users = body.get("user_list") if isinstance(body, dict) else None
        if not isinstance(users, list) or not 1 <= len(users) <= 100:
            return _err(40032, "invalid openid list size")
        by_openid = {self.oa_openid(p): p for p in self.followers()}
        out = []
        for u in users:
            openid = str(u.get("openid", ""))
            person = by_openid.get(openid)
            out.append(
                self.follower_info(person)
                if person is not None
                else {"subscribe": 0, "openid": openid, "tagid_list": []}
            )
        return web.json_response({"user_info_list": out})

    async def domain_ip(self, request: web.Request) -> web.Response:
        denied = self._check_token(request, (self.appid, self.oa_appid))
        if denied is not None:
            return denied
        return web.json_response({"dns": [{"ip": "101.89.47.18", "operator": "CHINANET"}]})

    # -- WeChat as a callback sender -----------------------------------------------------------

    def card_code(self, person: Person) -> str:
        return f"{person.index + 1:012d}"

    card_id = "pFS7Fjg8kV1IdDz01r4SQwMkuCKc"

    def event_xml(self, event: str, person: Person, at: datetime, **fields: Any) -> bytes:
        """The XML WeChat posts for ``event`` (subscribe, user_get_card, update_member_card)."""
        base: dict[str, Any] = {
            "ToUserName": ORIGINAL_ID,
            "FromUserName": self.oa_openid(person),
            "CreateTime": int(at.timestamp()),
            "MsgType": "event",
            "Event": event,
        }
        if event == "user_get_card":
            base.update(
                CardId=self.card_id,
                IsGiveByFriend=0,
                UserCardCode=self.card_code(person),
                FriendUserName="",
                OuterId=0,
                OldUserCardCode="",
                OuterStr="",
                IsRestoreMemberCard=0,
                UnionId=person.wechat_unionid,
            )
        elif event == "update_member_card":
            base.update(CardId=self.card_id, UserCardCode=self.card_code(person))
        base.update(fields)
        parts = []
        for k, v in base.items():
            text = str(v) if isinstance(v, int) else f"<![CDATA[{v}]]>"
            parts.append(f"<{k}>{text}</{k}>")
        return ("<xml>" + "".join(parts) + "</xml>").encode()

    @staticmethod
    def verify_request(
        token: str, echostr: str, *, timestamp: str, nonce: str = "1583792"
    ) -> WebhookRequest:
        """The GET WeChat sends when the server URL is saved."""
        query = {
            "signature": callback_signature(token, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            "echostr": echostr,
        }
        return WebhookRequest("GET", query, {}, b"")

    def event_request(
        self,
        token: str,
        xml: bytes,
        *,
        timestamp: str,
        nonce: str = "461056294",
        encoding_aes_key: str | None = None,
        appid: str | None = None,
    ) -> WebhookRequest:
        """The POST WeChat sends for an event, plaintext or (with a key) encrypted mode."""
        query = {
            "signature": callback_signature(token, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            "openid": "",
        }
        headers = {"content-type": "text/xml"}
        if encoding_aes_key is None:
            return WebhookRequest("POST", query, headers, xml)
        encrypt = encrypt_message(encoding_aes_key, xml, appid or self.oa_appid)
        query.update(
            encrypt_type="aes", msg_signature=msg_signature(token, timestamp, nonce, encrypt)
        )
        body = (
            f"<xml><ToUserName><![CDATA[{ORIGINAL_ID}]]></ToUserName>"
            f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        ).encode()
        return WebhookRequest("POST", query, headers, body)
