"""A receiver that drops the connection before answering (the stale keep-alive socket case) is
sent the webhook again at once on a fresh connection: delivered in the same pass, one attempt,
no backoff — while a receiver that answers 500 still costs a durable attempt."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from gateway.storage.db import Database
from gateway.tenants import TenantInfo
from gateway.webhooks import Dispatcher, signing
from tests.conftest import TEST_SECRET
from tests.test_webhooks import FAST, deliveries, new_member, paid_order, subscribe


class DroppingReceiver:
    """A raw HTTP/1.1 server on loopback: the first ``drop`` requests are read and then the
    connection is closed without a response; later ones are verified and answered 204."""

    def __init__(self, drop: int) -> None:
        self.drop = drop
        self.seen = 0
        self.accepted = 0
        self.secret = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers: dict[str, str] = {}
                for line in head.decode().split("\r\n")[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.seen += 1
                if self.seen <= self.drop:
                    writer.close()
                    return
                sig = headers.get(signing.HEADER.lower())
                signing.verify(self.secret, sig, body, time.time())
                self.accepted += 1
                writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


async def test_a_dropped_connection_is_resent_at_once_not_backed_off(
    db: Database, tenant: TenantInfo
) -> None:
    rx = DroppingReceiver(drop=1)
    server = await asyncio.start_server(rx.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        sub, rx.secret = await subscribe(
            db, tenant, f"http://127.0.0.1:{port}/hook", ["order.paid"]
        )
        m = await new_member(db, tenant, "R1")
        await paid_order(db, tenant, m, "O-R1")
        async with aiohttp.ClientSession() as session:
            dispatcher = Dispatcher(db, TEST_SECRET, FAST, session)
            for _ in range(50):  # until the fan-out has picked the event up
                await dispatcher.run_once([tenant.id])
                rows: list[Any] = await deliveries(db, tenant, sub.id)
                if rows:
                    break
                await asyncio.sleep(0.02)
    finally:
        server.close()
        await server.wait_closed()
    [row] = rows
    assert (row.status, row.attempts, row.last_error) == ("delivered", 1, None)
    assert (rx.seen, rx.accepted) == (2, 1)
