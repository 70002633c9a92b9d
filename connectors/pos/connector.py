"""The ``pos`` connector: offline store tills via a cloud POS API, a signed push, or CSV drops."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from connectors.pos.client import PospalClient
from connectors.pos.mapping import CST
from connectors.pos.streams import CsvFilesStream, TicketsStream
from gateway.sync import CheckResult, Connector, Stream
from gateway.sync.errors import ConnectorError


def _readable_dir(directory: Path) -> bool:
    return directory.is_dir() and os.access(directory, os.R_OK | os.X_OK)


SCOPE_PATTERN = r"^[A-Za-z0-9_.:@/+=-]{1,64}$"


class PosConnector(Connector):
    """Receipts from a brand's stores (sales → completed orders, returns → refunds, voids →
    cancelled orders) and the member card / phone captured at the till."""

    name = "pos"
    title = "Offline POS (Pospal-style cloud API, signed push, CSV drop)"
    version = "1"
    rate_limit = 5.0
    identifier_kinds = ()  # pos_card and phone are built-in kinds
    config_schema: ClassVar[dict[str, Any]] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Offline POS",
        "type": "object",
        "additionalProperties": False,
        "required": ["brand_scope"],
        "properties": {
            "brand_scope": {
                "type": "string",
                "pattern": SCOPE_PATTERN,
                "description": "Scope of the brand's POS member card numbers (pos_card).",
            },
            "base_url": {
                "type": "string",
                "format": "uri",
                "default": "https://area24-win.pospal.cn:443",
                "description": "Pospal open-API host of the account's area (areaNN-win.pospal.cn).",
            },
            "app_id": {"type": "string", "minLength": 1, "description": "Pospal appId."},
            "app_key": {
                "type": "string",
                "minLength": 1,
                "writeOnly": True,
                "description": "Pospal appKey (signs every call).",
            },
            "start_date": {
                "type": "string",
                "format": "date",
                "description": "Backfill horizon: first store day (GMT+8) to import.",
            },
            "lookback_minutes": {
                "type": "integer",
                "minimum": 0,
                "maximum": 1440,
                "default": 0,
                "description": "Re-read this much before the bookmark (tills that upload late).",
            },
            "drop_dir": {
                "type": "string",
                "minLength": 1,
                "description": "Directory of CSV batches (connectors.pos.csv_format).",
            },
            "webhook_secret": {
                "type": "string",
                "minLength": 16,
                "writeOnly": True,
                "description": "HMAC-SHA256 key of the signed ticket push (X-MH-Signature).",
            },
        },
        "dependentRequired": {"app_id": ["app_key"], "app_key": ["app_id"]},
        "anyOf": [
            {"required": ["app_id"]},
            {"required": ["drop_dir"]},
            {"required": ["webhook_secret"]},
        ],
    }

    def __init__(self, config: Any, context: Any) -> None:
        super().__init__(config, context)
        self.config.setdefault("base_url", self.config_schema["properties"]["base_url"]["default"])
        self.client = PospalClient(self)

    @property
    def brand_scope(self) -> str:
        return str(self.config["brand_scope"])

    def start_date(self) -> datetime | None:
        value = self.config.get("start_date")
        if not value:
            return None
        day = datetime.strptime(str(value), "%Y-%m-%d")
        return day.replace(tzinfo=CST)

    @property
    def has_api(self) -> bool:
        return bool(self.config.get("app_id"))

    @property
    def has_drop(self) -> bool:
        return bool(self.config.get("drop_dir"))

    async def check(self) -> CheckResult:
        notes = []
        if self.has_api:
            end = self.now().replace(microsecond=0)
            try:
                await self.client.ticket_page(end - timedelta(minutes=1), end)
            except ConnectorError as exc:
                code = f" (code {exc.code})" if exc.code else ""
                return CheckResult(False, f"Pospal API refused the check: {exc}{code}")
            except Exception as exc:  # never raise from check()
                kind = exc.__class__.__name__
                return CheckResult(False, f"Pospal API unreachable: {kind}: {exc}")
            notes.append("Pospal API ok")
        if self.has_drop:
            directory = Path(str(self.config["drop_dir"]))
            if not await asyncio.to_thread(_readable_dir, directory):
                return CheckResult(False, f"drop_dir {directory} is not a readable directory")
            notes.append(f"drop_dir {directory} readable")
        if self.config.get("webhook_secret"):
            notes.append("signed push configured")
        if not notes:
            return CheckResult(False, "configure app_id/app_key, drop_dir or webhook_secret")
        return CheckResult(True, "; ".join(notes))

    def streams(self) -> Sequence[Stream]:
        out: list[Stream] = []
        if self.has_api:
            out.append(TicketsStream(self))
        if self.has_drop:
            out.append(CsvFilesStream(self))
        return out
