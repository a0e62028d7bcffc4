"""Directory import against a real OpenLDAP slapd: 200 users, paging, changes, AD-style entries, bad input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import ldap3
import pytest
import trustme
from tests.support.ldap import Slapd
from tests.support.ldaptree import AD, PEOPLE, SERVICE_DN, SERVICE_PASSWORD, ad_user, certificate, people

from mailstandby.config import DirectorySettings, LDAPSettings
from mailstandby.core.model import Address
from mailstandby.directory.importer import current, run_import
from mailstandby.directory.static import DirectoryError
from mailstandby.store.sqlite_directory import SQLiteDirectoryDB

CERT_USERS = (4, 8)


@pytest.fixture
def certs() -> dict[int, bytes]:
    return {n: certificate(f"user{n:03d}@corp.test") for n in CERT_USERS}


@pytest.fixture
def slapd(tmp_path: Path, certs: dict[int, bytes]) -> Iterator[Slapd]:
    server = Slapd(tmp_path / "ldap")
    server.load_ldif(people(200, certs))
    with server:
        yield server


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SQLiteDirectoryDB]:
    records = SQLiteDirectoryDB(tmp_path)
    yield records
    records.close()


def settings(slapd: Slapd, tmp_path: Path, **ldap: object) -> DirectorySettings:
    pw = tmp_path / "bind.pw"
    pw.write_text(SERVICE_PASSWORD + "\n")
    values: dict[str, object] = {
        "url": slapd.url,
        "bind_dn": SERVICE_DN,
        "password_file": pw,
        "base_dn": PEOPLE,
        "page_size": 25,
        "timeout": 10.0,
    }
    values.update(ldap)
    return DirectorySettings(domains=["corp.test"], ldap=LDAPSettings(**values))


def lookup(db: SQLiteDirectoryDB, s: DirectorySettings, address: str):
    return current(db, s).lookup(Address.parse(address))


def test_a_plain_search_is_size_limited_so_the_import_must_page(slapd: Slapd) -> None:
    conn = ldap3.Connection(
        ldap3.Server("127.0.0.1", port=slapd.port, get_info=ldap3.NONE), SERVICE_DN, SERVICE_PASSWORD, auto_bind=True
    )
    conn.search(PEOPLE, "(objectClass=inetOrgPerson)", attributes=["mail"])
    assert conn.result["description"] == "sizeLimitExceeded" and len(conn.entries) == 50
    conn.unbind()


def test_import_200_users_then_reimport_applies_the_exact_diff(
    slapd: Slapd, db: SQLiteDirectoryDB, tmp_path: Path, certs: dict[int, bytes]
) -> None:
    s = settings(slapd, tmp_path)
    plan, _ = run_import(db, s, origin="test", dry_run=False)
    assert len(plan.diff.added) == 200 and not plan.diff.changed and not plan.diff.disabled
    assert db.generation() == 1

    u5 = lookup(db, s, "u5@corp.test")  # mailAlternateAddress is an alias
    assert u5 is not None and u5.address == "user005@corp.test" and u5.display_name == "User Number 5"
    u3 = lookup(db, s, "user003@corp.test")
    assert u3 is not None and [(d.id, d.phone) for d in u3.devices] == [("ldap-mobile", "+15550103")]
    u4 = lookup(db, s, "user004@corp.test")
    assert u4 is not None and [k.kind for k in u4.keys] == ["smime"]
    assert u4.keys[0].data.startswith("-----BEGIN CERTIFICATE-----\n")
    assert lookup(db, s, "user201@corp.test") is None

    slapd.ldapmodify(
        f"dn: uid=user007,{PEOPLE}\nchangetype: modify\nreplace: mobile\nmobile: +44 20 7946 0007\n\n"
        f"dn: uid=user010,{PEOPLE}\nchangetype: modify\nadd: mailAlternateAddress\n"
        "mailAlternateAddress: ten@corp.test\n\n"
        f"dn: uid=user030,{PEOPLE}\nchangetype: modify\nreplace: displayName\ndisplayName: Thirty\n\n"
        f"dn: uid=user020,{PEOPLE}\nchangetype: delete\n\n"
        f"dn: uid=user021,{PEOPLE}\nchangetype: delete\n\n"
    )
    conn = slapd.connect()
    conn.add(
        f"uid=user201,{PEOPLE}",
        ["inetOrgPerson"],
        {"cn": "New Hire", "sn": "Hire", "uid": "user201", "mail": "user201@corp.test"},
    )
    conn.unbind()

    before = {u.address: u for u in current(db, s).users()}
    dry, _ = run_import(db, s, origin="test", dry_run=True)
    assert dry.diff.added == ("user201@corp.test",)
    assert {c.address: c.fields for c in dry.diff.changed} == {
        "user007@corp.test": ("devices",),
        "user010@corp.test": ("aliases",),
        "user030@corp.test": ("display_name",),
    }
    assert dry.diff.disabled == (("user020@corp.test", "gone-from-source"), ("user021@corp.test", "gone-from-source"))
    assert db.generation() == 1 and {u.address: u for u in current(db, s).users()} == before  # dry run

    applied, _ = run_import(db, s, origin="test", dry_run=False)
    assert applied.diff == dry.diff and db.generation() == 2
    assert lookup(db, s, "ten@corp.test").address == "user010@corp.test"
    assert lookup(db, s, "user201@corp.test") is not None
    assert lookup(db, s, "user020@corp.test") is None  # disabled: 550 5.1.1 at RCPT
    kept = [u for u in current(db, s).users() if u.address == "user020@corp.test"]
    assert len(kept) == 1 and not kept[0].enabled  # kept, not deleted
    assert lookup(db, s, "user007@corp.test").devices[0].phone == "+442079460007"

    again, _ = run_import(db, s, origin="test", dry_run=False)
    assert again.diff.empty and db.generation() == 2  # nothing changed: no new generation


def test_active_directory_proxy_addresses_uac_and_upn(slapd: Slapd, db: SQLiteDirectoryDB, tmp_path: Path) -> None:
    ldif = "".join(
        [
            ad_user(
                "Ann Admin",
                mail="ann@corp.test",
                proxies=(
                    "smtp:ann@corp.test",
                    "SMTP:ann.admin@corp.test",
                    "X500:/o=Corp/ou=x/cn=ann",
                    "sip:ann@corp.test",
                ),
                upn="ann@corp.local",
            ),
            ad_user("Dan Disabled", mail="dan@corp.test", proxies=("SMTP:dan@corp.test",), uac=514),
            ad_user("Una Upn", upn="una@corp.test"),
        ]
    )
    slapd.ldapmodify(ldif.replace("\nobjectClass: user", "\nchangetype: add\nobjectClass: user"))
    s = settings(slapd, tmp_path, base_dn=AD, preset="active-directory")
    plan, _ = run_import(db, s, origin="test", dry_run=False)
    assert plan.diff.added == ("ann.admin@corp.test", "dan@corp.test")
    ann = lookup(db, s, "ann@corp.test")
    assert ann is not None and ann.address == "ann.admin@corp.test"  # uppercase SMTP: is the primary
    assert ann.aliases == ("ann@corp.test",)  # X500: and sip: are not mail addresses
    assert lookup(db, s, "dan@corp.test") is None  # userAccountControl 0x2: disabled

    s2 = settings(slapd, tmp_path, base_dn=AD, preset="active-directory", filter="(objectClass=user)")
    plan, _ = run_import(db, s2, origin="test", dry_run=False)
    assert plan.diff.added == ("una@corp.test",)  # no mail, no proxyAddresses: userPrincipalName


def _unchanged(db: SQLiteDirectoryDB, s: DirectorySettings) -> None:
    assert db.generation() == 1
    assert lookup(db, s, "user001@corp.test") is not None


@pytest.fixture
def imported(slapd: Slapd, db: SQLiteDirectoryDB, tmp_path: Path) -> DirectorySettings:
    s = settings(slapd, tmp_path)
    run_import(db, s, origin="test", dry_run=False)
    return s


def test_wrong_password_keeps_the_previous_directory(
    slapd: Slapd, db: SQLiteDirectoryDB, tmp_path: Path, imported: DirectorySettings
) -> None:
    bad = tmp_path / "bad.pw"
    bad.write_text("wrong")
    with pytest.raises(DirectoryError, match="invalid credentials") as e:
        run_import(db, settings(slapd, tmp_path, password_file=bad), origin="test", dry_run=False)
    assert "wrong" not in str(e.value)
    _unchanged(db, imported)


def test_unreachable_server_keeps_the_previous_directory(
    slapd: Slapd, db: SQLiteDirectoryDB, tmp_path: Path, imported: DirectorySettings
) -> None:
    slapd.stop()
    with pytest.raises(DirectoryError, match=r"cannot connect to the server"):
        run_import(db, imported, origin="test", dry_run=False)
    _unchanged(db, imported)


def test_duplicate_address_names_both_entries(
    slapd: Slapd, db: SQLiteDirectoryDB, tmp_path: Path, imported: DirectorySettings
) -> None:
    slapd.ldapmodify(
        f"dn: uid=user050,{PEOPLE}\nchangetype: modify\nadd: mailAlternateAddress\n"
        "mailAlternateAddress: user051@corp.test\n"
    )
    with pytest.raises(DirectoryError) as e:
        run_import(db, imported, origin="test", dry_run=False)
    assert "user051@corp.test" in str(e.value)
    assert f"uid=user050,{PEOPLE}" in str(e.value) and f"uid=user051,{PEOPLE}" in str(e.value)
    _unchanged(db, imported)


def test_invalid_address_names_the_entry(
    slapd: Slapd, db: SQLiteDirectoryDB, tmp_path: Path, imported: DirectorySettings
) -> None:
    slapd.ldapmodify(f"dn: uid=user060,{PEOPLE}\nchangetype: modify\nreplace: mail\nmail: not an address\n")
    with pytest.raises(DirectoryError, match=rf"entry uid=user060,{PEOPLE}: mail 'not an address' is not an address"):
        run_import(db, imported, origin="test", dry_run=False)
    _unchanged(db, imported)


def test_a_mass_disappearance_is_refused(
    slapd: Slapd, db: SQLiteDirectoryDB, tmp_path: Path, imported: DirectorySettings
) -> None:
    wrong_base = settings(slapd, tmp_path, base_dn="ou=services,dc=corp,dc=test")
    with pytest.raises(DirectoryError, match="would disable 200 of 200 users"):
        run_import(db, wrong_base, origin="test", dry_run=False)
    _unchanged(db, imported)


# -- TLS: ldaps:// and StartTLS, certificate and host name checked --------------------------


@pytest.fixture
def tls_slapd(tmp_path: Path) -> Iterator[tuple[Slapd, Path]]:
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    chain, key, ca_file = tmp_path / "slapd.pem", tmp_path / "slapd.key", tmp_path / "ca.pem"
    issued.cert_chain_pems[0].write_to_path(chain)
    issued.private_key_pem.write_to_path(key)
    ca.cert_pem.write_to_path(ca_file)
    server = Slapd(tmp_path / "ldap", tls=(chain, key))
    server.load_ldif(people(5, {}))
    with server:
        yield server, ca_file


def test_ldaps_and_starttls_with_the_servers_ca(
    tls_slapd: tuple[Slapd, Path], db: SQLiteDirectoryDB, tmp_path: Path
) -> None:
    slapd, ca_file = tls_slapd
    plan, _ = run_import(db, settings(slapd, tmp_path, url=slapd.ldaps_url, ca_file=ca_file), origin="t", dry_run=True)
    assert len(plan.diff.added) == 5
    s = settings(slapd, tmp_path, start_tls=True, ca_file=ca_file)
    plan, _ = run_import(db, s, origin="t", dry_run=True)
    assert len(plan.diff.added) == 5


@pytest.mark.parametrize("start_tls", [False, True])
def test_tls_refuses_an_unknown_ca_and_a_wrong_host_name(
    tls_slapd: tuple[Slapd, Path], db: SQLiteDirectoryDB, tmp_path: Path, start_tls: bool
) -> None:
    slapd, ca_file = tls_slapd
    url = slapd.url if start_tls else slapd.ldaps_url
    with pytest.raises(DirectoryError, match="certificate verify failed"):
        run_import(db, settings(slapd, tmp_path, url=url, start_tls=start_tls), origin="t", dry_run=True)
    wrong_name = url.replace("127.0.0.1", "localhost")
    with pytest.raises(DirectoryError, match=r"certificate verify failed.*(Hostname mismatch|not valid for)"):
        run_import(
            db,
            settings(slapd, tmp_path, url=wrong_name, start_tls=start_tls, ca_file=ca_file),
            origin="t",
            dry_run=True,
        )
    assert db.generation() == 0
