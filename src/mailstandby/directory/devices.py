"""Device-gateway exports (CSV or JSON) read into per-user device records.

One row (CSV) or object (JSON) per device. Columns (docs/directory.md):
`user` and `device_id` are required; `platform`, `phone`, `sms_gateway`,
`push_url`, `alternates`, `notify_urls`, `smime_cert`, `pgp_key`,
`display_name`, `forward`, `summary_length`, `notify` and `quiet_hours` are
optional. A list value is a JSON list or text separated by spaces, commas or
semicolons. Several rows of one user add devices and keys; two rows that set a
preference to different values are an error, as are a duplicate device id,
a bad address, number, URL, key or preference. Every error names the file and
the row (CSV: line number; JSON: entry index).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailstandby.directory.base import Device, Forwarding, Key, NoticeKind, Preferences
from mailstandby.directory.records import (
    address_key,
    check_address,
    check_phone,
    check_url,
    pgp_key,
    platform,
    smime_key,
)
from mailstandby.directory.static import DirectoryError

REQUIRED = ("user", "device_id")
OPTIONAL = (
    "platform",
    "phone",
    "sms_gateway",
    "push_url",
    "alternates",
    "notify_urls",
    "smime_cert",
    "pgp_key",
    "display_name",
    "forward",
    "summary_length",
    "notify",
    "quiet_hours",
)
COLUMNS = REQUIRED + OPTIONAL
PREFERENCE_COLUMNS = ("forward", "summary_length", "notify", "quiet_hours", "display_name")
_SPLIT = re.compile(r"[\s,;]+")


@dataclass(slots=True)
class DeviceRecord:
    """What the gateway says about one user (keyed by the address its rows give)."""

    user: str
    rows: list[str] = field(default_factory=list)  # "file: row N", for messages
    devices: list[Device] = field(default_factory=list)
    keys: list[Key] = field(default_factory=list)
    alternates: list[str] = field(default_factory=list)
    notify_urls: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # preference column -> (value, row)

    @property
    def display_name(self) -> str:
        return self.settings.get("display_name", ("", ""))[0]

    def preferences(self) -> Preferences:
        s = {k: v for k, (v, _) in self.settings.items() if k != "display_name"}
        return Preferences(**s)


def read_exports(paths: list[Path], columns: Mapping[str, str]) -> dict[str, DeviceRecord]:
    """Every export, merged by user address key; raises DirectoryError naming the file and row."""
    check_columns(columns)
    records: dict[str, DeviceRecord] = {}
    device_rows: dict[str, str] = {}
    for path in paths:
        for where, row in _rows(path, columns):
            try:
                _add(records, device_rows, where, row)
            except DirectoryError as e:
                raise DirectoryError(f"{where}: {e}") from None
    return records


def check_columns(columns: Mapping[str, str]) -> None:
    unknown = sorted(set(columns) - set(COLUMNS))
    if unknown:
        raise DirectoryError(
            f"directory.devices.columns: unknown column(s) {', '.join(unknown)} (ours are: {', '.join(COLUMNS)})"
        )


def _rows(path: Path, columns: Mapping[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """(row label, {our column: value}) for each row of a CSV or JSON export."""
    theirs = {ours: columns.get(ours, ours) for ours in COLUMNS}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise DirectoryError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise DirectoryError(f"{path}: not UTF-8 text") from None
    if path.suffix.lower() == ".json":
        raw, label = _json_rows(path, text), "entry"
        start = 0
    else:
        raw, label = _csv_rows(path, text), "row"
        start = 2  # line 1 is the header
    for n, r in enumerate(raw, start=start):
        if not isinstance(r, dict):
            raise DirectoryError(f"{path}: {label} {n}: not an object")
    present = set().union(*(r.keys() for r in raw)) if raw else set()
    for ours in REQUIRED:
        if raw and theirs[ours] not in present:
            raise DirectoryError(f"{path}: missing column {theirs[ours]!r} (found: {', '.join(sorted(present))})")
    out = []
    for n, r in enumerate(raw, start=start):
        out.append((f"{path}: {label} {n}", {ours: r.get(col) for ours, col in theirs.items()}))
    return out


def _json_rows(path: Path, text: str) -> list[Any]:
    try:
        data = json.loads(text)
    except ValueError as e:
        raise DirectoryError(f"{path}: not valid JSON: {e}") from None
    if isinstance(data, dict):
        data = data.get("devices")
    if not isinstance(data, list):
        raise DirectoryError(f'{path}: expected a list of devices (or {{"devices": [...]}})')
    return data


def _csv_rows(path: Path, text: str) -> list[Any]:
    try:
        reader = csv.DictReader(text.splitlines(keepends=True))
        rows = list(reader)
        header = reader.fieldnames or []
    except csv.Error as e:
        raise DirectoryError(f"{path}: not a readable CSV file: {e}") from None
    for n, row in enumerate(rows, start=2):
        if None in row:
            raise DirectoryError(f"{path}: row {n}: more fields than the header has columns")
    return [{k: v for k, v in r.items() if k in header} for r in rows]


def _str(value: Any, column: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DirectoryError(f"{column}: expected text, got {type(value).__name__}")
    return str(value).strip()


def _list(value: Any, column: str) -> list[str]:
    if isinstance(value, list):
        return [_str(v, column) for v in value if _str(v, column)]
    return [v for v in _SPLIT.split(_str(value, column)) if v]


def _add(records: dict[str, DeviceRecord], device_rows: dict[str, str], where: str, row: dict[str, Any]) -> None:
    user = check_address(_str(row["user"], "user"), "user")
    device_id = _str(row["device_id"], "device_id")
    if not device_id:
        raise DirectoryError("device_id is empty")
    if device_id in device_rows:
        raise DirectoryError(f"device {device_id!r} is also listed at {device_rows[device_id]}")
    device_rows[device_id] = where
    rec = records.setdefault(address_key(user), DeviceRecord(user))
    rec.rows.append(where)
    phone = _str(row["phone"], "phone")
    sms = _str(row["sms_gateway"], "sms_gateway")
    push = _str(row["push_url"], "push_url")
    rec.devices.append(
        Device(
            device_id,
            platform(_str(row["platform"], "platform")),
            check_phone(phone) if phone else "",
            check_address(sms, "sms_gateway") if sms else "",
            check_url(push) if push else "",
        )
    )
    for a in _list(row["alternates"], "alternates"):
        _append(rec.alternates, check_address(a, "alternate"))
    for u in _list(row["notify_urls"], "notify_urls"):
        _append(rec.notify_urls, check_url(u))
    cert, pgp = row["smime_cert"], row["pgp_key"]
    if cert:
        _append(rec.keys, smime_key(_str(cert, "smime_cert")))
    if pgp:
        _append(rec.keys, pgp_key(_str(pgp, "pgp_key")))
    for column in PREFERENCE_COLUMNS:
        value = _preference(column, row[column])
        if value is None:
            continue
        old = rec.settings.get(column)
        if old is not None and old[0] != value:
            raise DirectoryError(f"{column} {row[column]!r} contradicts {old[1]} for {rec.user}")
        rec.settings[column] = (value, where)


def _append(items: list[Any], item: Any) -> None:
    if item not in items:
        items.append(item)


def _preference(column: str, raw: Any) -> Any:
    """The parsed value of a preference column, None when empty."""
    if column == "notify":
        if raw is None or raw == "" or raw == []:
            return None
        words = [w.lower() for w in _list(raw, column)]
        if words in (["all"], ["none"]):
            return frozenset(NoticeKind) if words == ["all"] else frozenset()
        try:
            return frozenset(NoticeKind(w) for w in words)
        except ValueError:
            kinds = ", ".join(k.value for k in NoticeKind)
            raise DirectoryError(f"notify {raw!r}: expected all, none or some of {kinds}") from None
    text = str(raw).strip() if isinstance(raw, int) and not isinstance(raw, bool) else _str(raw, column)
    if not text:
        return None
    if column == "display_name":
        return text
    if column == "forward":
        try:
            return Forwarding(text.lower())
        except ValueError:
            raise DirectoryError(f"forward {text!r}: expected off, full or summary") from None
    if column == "summary_length":
        if not text.isdigit() or not 20 <= int(text) <= 10000:
            raise DirectoryError(f"summary_length {text!r}: expected a number of characters from 20 to 10000")
        return int(text)
    m = re.fullmatch(r"(\d{1,2})\s*-\s*(\d{1,2})", text)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 23:
        raise DirectoryError(f"quiet_hours {text!r}: expected START-END hours, e.g. 22-7")
    return (int(m.group(1)), int(m.group(2)))
