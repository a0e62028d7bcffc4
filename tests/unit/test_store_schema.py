"""The two backends' schemas are the same versions of the same tables, and the shared SQL
spells correctly for PostgreSQL (store/postgres.py `pg_sql`)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from mailstandby.store.postgres import pg_sql
from mailstandby.store.postgres_schema import PG_MIGRATIONS
from mailstandby.store.sqlite_schema import MIGRATIONS

STORE = Path(__file__).resolve().parents[2] / "src" / "mailstandby" / "store"
_TABLE = re.compile(r"CREATE TABLE (\w+)")
_ADDED = re.compile(r"ALTER TABLE (\w+) ADD COLUMN (\w+)")


def test_both_backends_have_the_same_migration_versions() -> None:
    assert len(PG_MIGRATIONS) == len(MIGRATIONS)


@pytest.mark.parametrize("version", range(1, len(MIGRATIONS) + 1))
def test_each_version_makes_the_same_tables_and_columns(version: int) -> None:
    lite, pg = MIGRATIONS[version - 1], PG_MIGRATIONS[version - 1]
    assert _TABLE.findall(lite) == _TABLE.findall(pg)
    assert _ADDED.findall(lite) == _ADDED.findall(pg)


def test_placeholders_and_the_reserved_word_are_respelled() -> None:
    sql = "SELECT b.user, count(*) FROM mailboxes b WHERE user = ? AND name LIKE '%x' AND users = ?"
    assert pg_sql(sql) == (
        'SELECT b."user", count(*) FROM mailboxes b WHERE "user" = %s AND name LIKE \'%%x\' AND users = %s'
    )
    assert pg_sql("BEGIN IMMEDIATE") == "BEGIN"
    assert pg_sql('CREATE INDEX i ON t ("user")') == 'CREATE INDEX i ON t ("user")'


def _sql_literals(path: Path) -> list[str]:
    """String constants in a store module that are SQL statements."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
        if is_text and re.match(r"\s*(SELECT|INSERT|UPDATE|DELETE)\b", node.value):
            found.append(node.value)
    return found


@pytest.mark.parametrize("module", sorted(p.name for p in STORE.glob("sqlite*.py")))
def test_shared_sql_has_no_question_mark_or_user_inside_a_quoted_literal(module: str) -> None:
    for sql in _sql_literals(STORE / module):
        for literal in re.findall(r"'[^']*'", sql):
            assert "?" not in literal and not re.search(r"\buser\b", literal), (module, sql)
