"""Device-gateway exports (CSV, JSON) imported into the store: good rows, broken rows, nothing half-applied."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstandby.config import DeviceImportSettings, DirectorySettings, StoreSettings, UserEntry
from mailstandby.core.model import Address
from mailstandby.directory.base import Forwarding, NoticeKind, Platform
from mailstandby.directory.importer import current, run_import
from mailstandby.directory.static import DirectoryError
from mailstandby.store.sqlite_directory import SQLiteDirectoryDB

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support.ldaptree import certificate

PGP = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZabc0BYJKwYBBAHaRw8BAQdA\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----"
HEADER = (
    "user,device_id,platform,phone,sms_gateway,push_url,alternates,smime_cert,pgp_key,"
    "forward,summary_length,notify,quiet_hours\n"
)


def pem(address: str) -> str:
    der = certificate(address)
    return "-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der).decode() + "-----END CERTIFICATE-----\n"


@pytest.fixture
def db(tmp_path: Path, store_settings: StoreSettings) -> Iterator[SQLiteDirectoryDB]:
    records = SQLiteDirectoryDB(tmp_path, url=store_settings.url)
    yield records
    records.close()


def settings(*files: Path, **devices: object) -> DirectorySettings:
    return DirectorySettings(
        domains=["corp.test"],
        users=[
            UserEntry(address="alice@corp.test", aliases=["a.liddell@corp.test"]),
            UserEntry(address="bob@corp.test"),
        ],
        devices=DeviceImportSettings(files=list(files), **devices),
    )


def good_csv(tmp_path: Path) -> Path:
    cert = pem("alice@corp.test").replace('"', "")
    path = tmp_path / "devices.csv"
    path.write_text(
        HEADER
        + f"a.liddell@corp.test,IMEI-1,iPhone 15,+1 (555) 010-0001,15550100001@txt.example,ntfy://ntfy.example/alice,"
        f'alice@home.example,"{cert}","{PGP}",summary,120,failover;failback,22-7\n'
        + "alice@corp.test,PAGER-9,Pager,,,,,,,summary,,,\n"
        + "bob@corp.test,IMEI-2,Android,+447700900002,,,bob@home.example bob2@home.example,,,,,none,\n"
    )
    return path


def user(db: SQLiteDirectoryDB, s: DirectorySettings, address: str):
    return current(db, s).lookup(Address.parse(address))


def test_good_csv_gives_devices_keys_and_preferences(db: SQLiteDirectoryDB, tmp_path: Path) -> None:
    s = settings(good_csv(tmp_path))
    plan, fresh = run_import(db, s, origin="test", dry_run=False)
    assert plan.diff.added == ("alice@corp.test", "bob@corp.test") and not fresh.notes
    alice = user(db, s, "alice@corp.test")
    assert [(d.id, d.platform, d.phone, d.sms_gateway, d.push_url) for d in alice.devices] == [
        ("IMEI-1", Platform.IOS, "+15550100001", "15550100001@txt.example", "ntfy://ntfy.example/alice"),
        ("PAGER-9", Platform.PAGER, "", "", ""),
    ]
    assert [k.kind for k in alice.keys] == ["smime", "pgp"]  # what the notifier encrypts with
    assert alice.keys[1].data.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert alice.alternates == ("alice@home.example",)
    p = alice.preferences
    assert (p.forward, p.summary_length, p.notify, p.quiet_hours) == (
        Forwarding.SUMMARY,
        120,
        frozenset({NoticeKind.FAILOVER, NoticeKind.FAILBACK}),
        (22, 7),
    )
    assert alice.aliases == ("a.liddell@corp.test",)  # identity stays the config file's
    bob = user(db, s, "bob@corp.test")
    assert bob.alternates == ("bob@home.example", "bob2@home.example") and bob.preferences.notify == frozenset()


def test_json_export_with_renamed_columns_and_lists(db: SQLiteDirectoryDB, tmp_path: Path) -> None:
    path = tmp_path / "mdm.json"
    path.write_text(
        json.dumps(
            {
                "devices": [
                    {
                        "UPN": "bob@corp.test",
                        "DeviceID": "D-1",
                        "OS": "Android",
                        "notify": ["setup"],
                        "summary_length": 300,
                    },
                    {
                        "UPN": "bob@corp.test",
                        "DeviceID": "D-2",
                        "OS": "Windows Phone",
                        "alternates": ["b@home.example"],
                    },
                ]
            }
        )
    )
    s = settings(path, columns={"user": "UPN", "device_id": "DeviceID", "platform": "OS"})
    run_import(db, s, origin="test", dry_run=False)
    bob = user(db, s, "bob@corp.test")
    assert [(d.id, d.platform) for d in bob.devices] == [("D-1", Platform.ANDROID), ("D-2", Platform.WINDOWS)]
    assert bob.preferences.notify == frozenset({NoticeKind.SETUP}) and bob.preferences.summary_length == 300
    assert bob.alternates == ("b@home.example",)


BROKEN_CSV = [
    ("user,platform\nalice@corp.test,ios\n", r"devices.csv: missing column 'device_id' \(found: platform, user\)"),
    (
        HEADER + "alice@corp.test,D1,ios,call me,,,,,,,,,\n",
        r"devices.csv: row 2: phone number 'call me' is not a number",
    ),
    (
        HEADER + "alice@corp.test,D1,,,,,,,,,,,\nbob@corp.test,D1,,,,,,,,,,,\n",
        r"row 3: device 'D1' is also listed at .*row 2",
    ),
    (
        HEADER + "alice@corp.test,D1,,,,,,,,,,,\nnot-an-address,D2,,,,,,,,,,,\n",
        r"row 3: user 'not-an-address' is not an address",
    ),
    (
        HEADER + "alice@corp.test,D1,,,,,,,,full,,,\nalice@corp.test,D2,,,,,,,,off,,,\n",
        r"row 3: forward 'off' contradicts",
    ),
    (HEADER + "alice@corp.test,D1,,,,,,,,weekly,,,\n", r"row 2: forward 'weekly': expected off, full or summary"),
    (HEADER + "alice@corp.test,D1,,,,gopher,,,,,,,\n", r"row 2: notification URL 'gopher' is not a URL"),
    (HEADER + "alice@corp.test,D1,,,,,,not-a-cert,,,,,\n", r"row 2: certificate is neither PEM nor base64 DER"),
    (HEADER + "alice@corp.test,D1,,,,,,,,,,,25-3\n", r"row 2: quiet_hours '25-3'"),
    (HEADER + "alice@corp.test,D1,,,,,,,,,,,,extra\n", r"row 2: more fields than the header has columns"),
]


@pytest.mark.parametrize(("text", "error"), BROKEN_CSV)
def test_broken_csv_names_the_row_and_keeps_the_previous_directory(
    db: SQLiteDirectoryDB, tmp_path: Path, text: str, error: str
) -> None:
    good = settings(good_csv(tmp_path))
    run_import(db, good, origin="test", dry_run=False)
    before = sorted(map(repr, current(db, good).users()))
    path = tmp_path / "devices.csv"
    path.write_text(text)
    with pytest.raises(DirectoryError, match=error):
        run_import(db, settings(path), origin="test", dry_run=False)
    assert db.generation() == 1 and sorted(map(repr, current(db, good).users())) == before


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("{not json", r"mdm.json: not valid JSON"),
        ('{"items": []}', r"mdm.json: expected a list of devices"),
        ('[{"user": "alice@corp.test", "device_id": "X"}, 7]', r"mdm.json: entry 1: not an object"),
        ('[{"user": "alice@corp.test", "device_id": ["X"]}]', r"mdm.json: entry 0: device_id: expected text, got list"),
        ('[{"user": "alice@corp.test"}]', r"mdm.json: missing column 'device_id'"),
    ],
)
def test_broken_json_names_the_entry(db: SQLiteDirectoryDB, tmp_path: Path, content: str, error: str) -> None:
    path = tmp_path / "mdm.json"
    path.write_text(content)
    with pytest.raises(DirectoryError, match=error):
        run_import(db, settings(path), origin="test", dry_run=False)
    assert db.generation() == 0


def test_rows_for_unknown_users_are_skipped_or_refused(db: SQLiteDirectoryDB, tmp_path: Path) -> None:
    path = tmp_path / "devices.csv"
    path.write_text("user,device_id\nalice@corp.test,D1\nzed@corp.test,D2\n")
    plan, fresh = run_import(db, settings(path), origin="test", dry_run=False)
    assert plan.diff.added == ("alice@corp.test",)
    assert fresh.notes == [f"{path}: row 3: user zed@corp.test is not in the directory; its devices are skipped"]
    with pytest.raises(DirectoryError, match=r"row 3: user zed@corp.test is not in the directory"):
        run_import(db, settings(path, unknown_users="error"), origin="test", dry_run=False)


def test_a_device_gone_from_the_export_is_a_change_and_a_user_gone_loses_the_device_data(
    db: SQLiteDirectoryDB, tmp_path: Path
) -> None:
    path = tmp_path / "devices.csv"
    path.write_text("user,device_id\nalice@corp.test,D1\nalice@corp.test,D2\nbob@corp.test,D3\n")
    run_import(db, settings(path), origin="test", dry_run=False)
    path.write_text("user,device_id\nalice@corp.test,D1\n")
    plan, _ = run_import(db, settings(path), origin="test", dry_run=False)
    assert [(c.address, c.fields) for c in plan.diff.changed] == [("alice@corp.test", ("devices",))]
    assert plan.diff.removed == ("bob@corp.test",) and not plan.diff.disabled  # config users are never disabled
    assert user(db, settings(path), "bob@corp.test").devices == ()
