"""The POS batch-file contract (CSV drop): what a store system writes, what ``csv_files`` reads.

Legacy POS and ERP systems (海信, 思迅, 科脉 …) usually export nightly (T+1) files rather than
offer an API (PLATFORMS.md §8). This is the contract a store system implements to feed the hub.

Batches and file names
----------------------
One *batch* is one store's receipts for one business day, named
``{brand}_{store_code}_{yyyymmdd}_{seq}`` (``brand`` and ``store_code``: letters, digits, ``-``;
``seq``: 1-6 digits, for several drops per day). A batch is three files in the drop directory:

- ``<batch>_tickets.csv`` — one row per receipt (header file);
- ``<batch>_lines.csv``   — one row per item line, joined to the tickets on ``receipt_no``;
- ``<batch>.done``        — the marker, written **last**, once both CSV files are complete. Only
  batches with a marker are read. It may be empty, or list ``<md5 hex>  <file name>`` lines
  (``md5sum`` output); listed files are then verified and a mismatch fails the batch.

Encoding and dialect
--------------------
RFC 4180 CSV (comma, ``"`` quoting, CRLF or LF), first row a header. Column names are matched
case-insensitively, order is free, unknown columns are ignored. Text is UTF-8 (with or without a
BOM) or GBK (GB 18030 is accepted): the reader detects it (BOM → UTF-8; valid UTF-8 → UTF-8;
otherwise GB 18030, a superset of GBK). Amounts are yuan with at most 2 decimals (``168.00``);
times are store local time (GMT+8) ``yyyy-MM-dd HH:mm:ss``; dates ``yyyy-MM-dd`` or ``yyyymmdd``.

``_tickets.csv`` columns (* = required)
---------------------------------------
``store_code``\\*      must equal the store code in the file name
``receipt_no``\\*      unique in the batch; the idempotency key across push, API and files
``business_date``\\*   the store's trading day
``txn_time``\\*        when the receipt was closed
``txn_type``\\*        ``sale`` | ``return`` | ``void`` (or SELL / SELL_RETURN, 销售 / 退货 / 作废)
``gross_amount``\\*    sum of the receipt's ``line_amount`` values (checked)
``net_amount``\\*      what the customer paid (sale) or got back (return; sign ignored)
``original_receipt_no`` required for ``return``: the sale being returned
``member_card_no``     the member's card number (→ strong ``pos_card`` identifier)
``member_phone``       full or masked (``138****0000``; a masked phone is never an identifier)
``guide_id``           the sales guide (导购) credited
``pos_id``, ``cashier_id``, ``discount_amount``, ``store_name`` … optional, informational

``_lines.csv`` columns (all required)
-------------------------------------
``receipt_no`` (must exist in the batch's tickets), ``line_no`` (unique per receipt), ``sku``,
``item_name``, ``qty`` (**negative on returns**, positive otherwise; decimals for weighed goods),
``unit_price``, ``line_amount`` (signed like ``qty``).

Meaning: ``sale`` → a completed order; ``void`` → the receipt was voided before it counted (a
cancelled order, nothing paid); ``return`` → a refund of ``abs(net_amount)`` on the original
receipt (see :mod:`connectors.pos.mapping`).

Errors: a batch is all or nothing. Any malformed row (missing column, bad number or time, unknown
receipt, wrong sign, totals that do not add up) fails the whole batch with an error naming the file
and line; nothing of it is applied, and the stream stops there so later batches wait until the
store system re-drops a corrected file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors.pos.mapping import (
    CST,
    RETURN,
    SALE,
    VOID,
    Ticket,
    TicketError,
    TicketLine,
    _card,
    _optional_text,
    _receipt,
    decimal_of,
    parse_local,
    ticket_from_json,
    yuan_to_fen,
)
from connectors.pos.render import yuan_text

if TYPE_CHECKING:
    from connectors.testing.world import World

BATCH = re.compile(
    r"^(?P<brand>[A-Za-z0-9-]+)_(?P<store>[A-Za-z0-9-]+)_(?P<day>\d{8})_(?P<seq>\d{1,6})$"
)
TICKETS_SUFFIX, LINES_SUFFIX, MARKER_SUFFIX = "_tickets.csv", "_lines.csv", ".done"
TICKET_COLUMNS = (
    "store_code",
    "pos_id",
    "receipt_no",
    "business_date",
    "txn_time",
    "cashier_id",
    "guide_id",
    "member_card_no",
    "member_phone",
    "original_receipt_no",
    "txn_type",
    "gross_amount",
    "discount_amount",
    "net_amount",
)
TICKET_REQUIRED = (
    "store_code",
    "receipt_no",
    "business_date",
    "txn_time",
    "txn_type",
    "gross_amount",
    "net_amount",
)
LINE_COLUMNS = ("receipt_no", "line_no", "sku", "item_name", "qty", "unit_price", "line_amount")
_TXN_TYPES = {
    "sale": SALE,
    "sell": SALE,
    "销售": SALE,
    "return": RETURN,
    "sell_return": RETURN,
    "refund": RETURN,
    "退货": RETURN,
    "void": VOID,
    "作废": VOID,
}


class CsvFormatError(Exception):
    """A batch that does not satisfy the contract; ``file`` and ``line`` say where."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        where = f"{file} line {line}" if line is not None else file
        super().__init__(f"{where}: {message}")
        self.file, self.line, self.detail = file, line, message


@dataclass(frozen=True)
class BatchName:
    base: str
    brand: str
    store_code: str
    day: date
    seq: int

    @classmethod
    def parse(cls, base: str) -> BatchName | None:
        match = BATCH.match(base)
        if not match:
            return None
        try:
            day = datetime.strptime(match["day"], "%Y%m%d").date()
        except ValueError:
            return None
        return cls(base, match["brand"], match["store"], day, int(match["seq"]))

    @property
    def sort_key(self) -> tuple[date, str, int, str]:
        return (self.day, self.store_code, self.seq, self.base)


# -- reading ----------------------------------------------------------------------------------


def decode(raw: bytes, file: str) -> str:
    """UTF-8 with BOM → UTF-8 → GB 18030 (⊇ GBK), in that order."""
    if raw.startswith(b"\xef\xbb\xbf"):
        try:
            return raw[3:].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CsvFormatError(file, None, f"has a UTF-8 BOM but is not UTF-8: {exc}") from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise CsvFormatError(file, None, "is neither UTF-8 nor GBK") from exc


def _rows(text: str, file: str, columns: Sequence[str]) -> Iterable[tuple[int, dict[str, str]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise CsvFormatError(file, 1, "is empty (a header row is required)") from None
    except csv.Error as exc:
        raise CsvFormatError(file, 1, f"unreadable CSV: {exc}") from exc
    names = [h.strip().lower() for h in header]
    missing = [c for c in columns if c not in names]
    if missing:
        raise CsvFormatError(file, 1, f"header lacks column(s) {', '.join(missing)}")
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise CsvFormatError(file, reader.line_num, f"unreadable CSV: {exc}") from exc
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(names):
            raise CsvFormatError(
                file, reader.line_num, f"has {len(row)} fields, the header has {len(names)}"
            )
        yield reader.line_num, {n: cell.strip() for n, cell in zip(names, row, strict=True)}


def _day(value: str) -> date:
    for fmt in ("%Y-%m-%d", "%Y%m%d", "%Y/%m/%d"):
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    raise TicketError(f"business_date {value!r} is not yyyy-MM-dd")


def _verify_marker(directory: Path, name: BatchName) -> None:
    marker = directory / (name.base + MARKER_SUFFIX)
    for number, line in enumerate(marker.read_text("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-fA-F]{32}", parts[0]):
            raise CsvFormatError(marker.name, number, "expected '<md5 hex>  <file name>'")
        digest, listed = parts[0].lower(), parts[1].lstrip("*")
        target = directory / listed
        if Path(listed).name != listed or not target.is_file():
            raise CsvFormatError(marker.name, number, f"lists unknown file {listed!r}")
        if hashlib.md5(target.read_bytes()).hexdigest() != digest:
            raise CsvFormatError(listed, None, f"md5 does not match {marker.name}")


def read_batch(directory: Path, name: BatchName) -> list[Ticket]:
    """Parse one batch, all or nothing (:class:`CsvFormatError` names file and line)."""
    _verify_marker(directory, name)
    tickets_file = name.base + TICKETS_SUFFIX
    lines_file = name.base + LINES_SUFFIX
    heads: dict[str, tuple[int, dict[str, Any]]] = {}
    tickets_text = decode((directory / tickets_file).read_bytes(), tickets_file)
    for number, row in _rows(tickets_text, tickets_file, TICKET_REQUIRED):
        try:
            head = _head(row, name)
        except TicketError as exc:
            raise CsvFormatError(tickets_file, number, str(exc)) from exc
        if head["receipt_no"] in heads:
            raise CsvFormatError(
                tickets_file, number, f"receipt_no {head['receipt_no']} appears twice"
            )
        heads[head["receipt_no"]] = (number, head)
    items: dict[str, list[TicketLine]] = {sn: [] for sn in heads}
    seen: set[tuple[str, str]] = set()
    lines_text = decode((directory / lines_file).read_bytes(), lines_file)
    for number, row in _rows(lines_text, lines_file, LINE_COLUMNS):
        try:
            sn = _receipt(row["receipt_no"], "receipt_no")
            if sn not in heads:
                raise TicketError(f"receipt_no {sn} is not in {tickets_file}")
            if not row["line_no"]:
                raise TicketError("line_no is empty")
            if (sn, row["line_no"]) in seen:
                raise TicketError(f"line_no {row['line_no']} repeats for receipt {sn}")
            seen.add((sn, row["line_no"]))
            items[sn].append(_line(row, heads[sn][1]["kind"]))
        except TicketError as exc:
            raise CsvFormatError(lines_file, number, str(exc)) from exc
    out = []
    for sn, (number, head) in heads.items():
        lines = tuple(items[sn])
        try:
            if not lines:
                raise TicketError(f"receipt {sn} has no lines in {lines_file}")
            if sum(line.amount_fen for line in lines) != head["gross_fen"]:
                raise TicketError(f"gross_amount of {sn} is not the sum of its line_amount values")
        except TicketError as exc:
            raise CsvFormatError(tickets_file, number, str(exc)) from exc
        out.append(Ticket(**head, lines=lines))
    return out


def _head(row: Mapping[str, str], name: BatchName) -> dict[str, Any]:
    for column in TICKET_REQUIRED:
        if not row.get(column):
            raise TicketError(f"{column} is empty")
    if row["store_code"] != name.store_code:
        raise TicketError(
            f"store_code {row['store_code']!r} differs from the file name's {name.store_code!r}"
        )
    kind = _TXN_TYPES.get(row["txn_type"].lower())
    if kind is None:
        raise TicketError(f"txn_type {row['txn_type']!r} is not sale, return or void")
    _day(row["business_date"])
    gross = yuan_to_fen(row["gross_amount"], "gross_amount")
    net = yuan_to_fen(row["net_amount"], "net_amount")
    if kind != RETURN and (gross < 0 or net < 0):
        raise TicketError(f"a {kind} cannot have negative amounts")
    original = _optional_text(row.get("original_receipt_no"))
    if kind == RETURN and not original:
        raise TicketError("a return needs original_receipt_no")
    card = _card(row.get("member_card_no"))
    phone = _optional_text(row.get("member_phone"))
    return {
        "receipt_no": _receipt(row["receipt_no"], "receipt_no"),
        "kind": kind,
        "txn_time": parse_local(row["txn_time"]),
        "gross_fen": gross,
        "net_fen": net,
        "member": bool(card or phone),
        "card_no": card,
        "phone": phone,
        "store_code": row["store_code"],
        "guide_code": _optional_text(row.get("guide_id")),
        "original_receipt_no": _receipt(original, "original_receipt_no") if original else None,
    }


def _line(row: Mapping[str, str], kind: str) -> TicketLine:
    if not row["sku"]:
        raise TicketError("sku is empty")
    qty = decimal_of(row["qty"], "qty")
    amount = yuan_to_fen(row["line_amount"], "line_amount")
    if qty == 0:
        raise TicketError("qty is 0")
    if kind == RETURN and qty > 0:
        raise TicketError("qty must be negative on a return")
    if kind != RETURN and qty < 0:
        raise TicketError(f"qty must be positive on a {kind}")
    if amount != 0 and (amount < 0) != (qty < 0):
        raise TicketError("line_amount must have the sign of qty")
    unit = yuan_to_fen(row["unit_price"], "unit_price")
    if unit < 0:
        raise TicketError("unit_price is negative")
    return TicketLine(
        sku=row["sku"], name=row["item_name"], quantity=qty, unit_fen=unit, amount_fen=amount
    )


def ready_batches(directory: Path) -> list[BatchName]:
    """Batches whose ``.done`` marker exists, oldest business day first."""
    out = []
    for marker in directory.glob("*" + MARKER_SUFFIX):
        name = BatchName.parse(marker.name[: -len(MARKER_SUFFIX)])
        if name is None:
            continue
        if (directory / (name.base + TICKETS_SUFFIX)).is_file() and (
            directory / (name.base + LINES_SUFFIX)
        ).is_file():
            out.append(name)
    return sorted(out, key=lambda n: n.sort_key)


# -- writing (store-system side; used by tests and the demo) ----------------------------------


def ticket_rows(ticket: Mapping[str, Any], pos_id: str = "POS01") -> tuple[dict, list[dict]]:
    """A Pospal-style ticket (as the fake renders it) → one ``_tickets.csv`` row and its
    ``_lines.csv`` rows."""
    t = ticket_from_json(ticket)
    txn_type = {SALE: "sale", RETURN: "return", VOID: "void"}[t.kind]
    head = {
        "store_code": t.store_code or "",
        "pos_id": pos_id,
        "receipt_no": t.receipt_no,
        "business_date": t.txn_time.astimezone(CST).date().isoformat(),
        "txn_time": ticket["datetime"],
        "cashier_id": str(ticket.get("cashierUid") or ""),
        "guide_id": t.guide_code or "",
        "member_card_no": t.card_no or "",
        "member_phone": t.phone or "",
        "original_receipt_no": t.original_receipt_no or "",
        "txn_type": txn_type,
        "gross_amount": yuan_text(t.gross_fen),
        "discount_amount": yuan_text(t.gross_fen - t.net_fen),
        "net_amount": yuan_text(t.net_fen),
    }
    lines = [
        {
            "receipt_no": t.receipt_no,
            "line_no": str(i),
            "sku": line.sku,
            "item_name": line.name,
            "qty": format(line.quantity.normalize(), "f"),
            "unit_price": yuan_text(line.unit_fen),
            "line_amount": yuan_text(line.amount_fen),
        }
        for i, line in enumerate(t.lines, 1)
    ]
    return head, lines


def _csv_bytes(columns: Sequence[str], rows: Iterable[Mapping[str, str]], encoding: str) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode(encoding)


def write_batch(
    directory: Path | str,
    base: str,
    tickets: Sequence[Mapping[str, Any]],
    *,
    encoding: str = "utf-8",
    md5_marker: bool = False,
) -> str:
    """Write one batch (tickets file, lines file, then the ``.done`` marker). ``encoding``:
    ``"utf-8"``, ``"utf-8-sig"`` (with BOM) or ``"gbk"``."""
    if BatchName.parse(base) is None:
        raise ValueError(f"batch name {base!r} is not {{brand}}_{{store}}_{{yyyymmdd}}_{{seq}}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    heads, lines = [], []
    for ticket in tickets:
        head, rows = ticket_rows(ticket)
        heads.append(head)
        lines.extend(rows)
    files = {
        base + TICKETS_SUFFIX: _csv_bytes(TICKET_COLUMNS, heads, encoding),
        base + LINES_SUFFIX: _csv_bytes(LINE_COLUMNS, lines, encoding),
    }
    for file, data in files.items():
        (directory / file).write_bytes(data)
    marker = (
        "".join(f"{hashlib.md5(data).hexdigest()}  {file}\n" for file, data in files.items())
        if md5_marker
        else ""
    )
    (directory / (base + MARKER_SUFFIX)).write_text(marker, "utf-8")
    return base


def write_drop(
    world: World,
    directory: Path | str,
    *,
    encoding: str = "gbk",
    brand: str = "MH",
    seq: int = 1,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[str]:
    """Write the world's POS tickets (those with ``since <= time < until``) as one batch per
    store and business day; returns the batch names. Call again with a new ``seq`` and ``since``
    for a later drop."""
    from connectors.pos.render import world_tickets

    groups: dict[tuple[str, date], list[Mapping[str, Any]]] = {}
    for moment, ticket in world_tickets(world):
        if (since is not None and moment < since) or (until is not None and moment >= until):
            continue
        key = (ticket["storeCode"], moment.astimezone(CST).date())
        groups.setdefault(key, []).append(ticket)
    names = []
    for (store, day), tickets in sorted(groups.items()):
        base = f"{brand}_{store}_{day:%Y%m%d}_{seq}"
        names.append(write_batch(directory, base, tickets, encoding=encoding))
    return names


__all__ = [
    "BATCH",
    "BatchName",
    "CsvFormatError",
    "decode",
    "read_batch",
    "ready_batches",
    "ticket_rows",
    "write_batch",
    "write_drop",
]
