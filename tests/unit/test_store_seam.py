"""Only the store speaks SQL: no statement outside src/mailstandby/store/, and one place names the database file.

The import contract in pyproject.toml keeps `sqlite3` inside the store; this keeps the statements
and the file name there too (a module could otherwise build SQL for a connection it is handed).
"""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "mailstandby"
STORE = SRC / "store"
# a statement as it appears in a string literal: a keyword, then what only SQL puts after it
SQL = re.compile(
    r"""["'](?:SELECT\s+[\w.*(),\s]+\s+FROM\s|INSERT\s+(?:OR\s+\w+\s+)?INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s"""
    r"""|BEGIN(?:\s+IMMEDIATE)?["']|PRAGMA\s)""",
    re.IGNORECASE,
)


def sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if STORE not in p.parents)


def test_no_sql_statement_outside_the_store() -> None:
    found = [
        f"{path.relative_to(SRC)}:{n}: {line.strip()}"
        for path in sources()
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if SQL.search(line)
    ]
    assert found == []


def test_the_database_file_is_named_once() -> None:
    named = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if "mailstandby.db" in p.read_text()]
    assert named == ["store/paths.py"]


def test_the_pattern_sees_the_statements_it_is_meant_to() -> None:
    for line in (
        '"SELECT user FROM credentials"',
        '"SELECT count(*) FROM setup_tokens WHERE user = ?"',
        '"INSERT OR IGNORE INTO notifications (user) VALUES (?)"',
        "'UPDATE sync_items SET state = 1'",
        '"DELETE FROM dns_saved"',
        'db.execute("BEGIN IMMEDIATE")',
    ):
        assert SQL.search(line), line
    for line in ('b"SELECT " + mailbox_arg(name)', '"SELECT": (a.parse_select, False)', '"""SELECT `name`"""'):
        assert not SQL.search(line), line
