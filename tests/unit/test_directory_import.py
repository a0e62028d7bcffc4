"""Pure parts of the directory import: LDAP attribute mapping, merge rules, diff, stored form, combined view."""

from __future__ import annotations

import datetime
from dataclasses import replace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from mailstandby.config import DirectoryMergeSettings
from mailstandby.core.model import Address
from mailstandby.directory.base import Device, Forwarding, Key, NoticeKind, Platform, Preferences, User
from mailstandby.directory.devices import DeviceRecord
from mailstandby.directory.ldapmap import PRESETS, LDAPUser, entry_to_user, mapping_for
from mailstandby.directory.merge import build, plan
from mailstandby.directory.records import Stored, from_json, to_json
from mailstandby.directory.static import DirectoryError
from mailstandby.directory.view import DirectoryView, combine

AD = PRESETS["active-directory"]
OPENLDAP = PRESETS["openldap"]


def raw(**attrs: str | list[str] | bytes) -> dict[str, list[bytes]]:
    out = {}
    for k, v in attrs.items():
        values = v if isinstance(v, list) else [v]
        out[k.replace("__", ";")] = [x if isinstance(x, bytes) else x.encode() for x in values]
    return out


def der_cert() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = datetime.datetime.now(datetime.UTC)
    builder = x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
    builder = builder.serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


# -- LDAP mapping ------------------------------------------------------------------


def test_ad_uppercase_smtp_is_primary_and_other_types_are_ignored() -> None:
    u = entry_to_user(
        "CN=Ann,DC=corp",
        raw(
            mail="ann@corp.test",
            proxyAddresses=["smtp:ann@corp.test", "SMTP:Ann.Admin@corp.test", "X500:/o=x/cn=ann", "SIP:ann@corp.test"],
            displayName="Ann Admin",
            userAccountControl="512",
            mobile="+1 (555) 010-0100",
        ),
        AD,
    )
    assert u is not None
    assert (u.address, u.aliases, u.enabled, u.display_name) == (
        "Ann.Admin@corp.test",
        ("ann@corp.test",),
        True,
        "Ann Admin",
    )
    assert u.devices == (Device("ldap-mobile", phone="+15550100100"),)


@pytest.mark.parametrize(("uac", "enabled"), [("512", True), ("514", False), ("66050", False), ("66048", True)])
def test_ad_account_disabled_bit(uac: str, enabled: bool) -> None:
    u = entry_to_user("CN=x", raw(mail="x@corp.test", userAccountControl=uac), AD)
    assert u is not None and u.enabled is enabled


def test_ad_address_falls_back_to_mail_then_upn_and_none_without_either() -> None:
    assert (
        entry_to_user("CN=a", raw(mail="a@corp.test", proxyAddresses="smtp:b@corp.test"), AD).address == "a@corp.test"
    )
    assert entry_to_user("CN=u", raw(userPrincipalName="u@corp.test"), AD).address == "u@corp.test"
    assert entry_to_user("CN=svc", raw(displayName="service"), AD) is None


def test_openldap_alternate_addresses_and_binary_certificate() -> None:
    cert = der_cert()
    u = entry_to_user(
        "uid=bo,ou=people",
        raw(mail="bo@corp.test", mailAlternateAddress=["b.o@corp.test", "BO@corp.test"], userCertificate__binary=cert),
        OPENLDAP,
    )
    assert u is not None and u.aliases == ("b.o@corp.test",)  # the primary again (any case) is no alias
    [key] = u.keys
    assert key.kind == "smime" and key.data.startswith("-----BEGIN CERTIFICATE-----\n")
    assert x509.load_pem_x509_certificate(key.data.encode()).public_bytes(Encoding.DER) == cert


@pytest.mark.parametrize(
    ("attrs", "error"),
    [
        (raw(mail="not an address"), r"entry uid=x: mail 'not an address' is not an address"),
        (raw(mail="x@corp.test", proxyAddresses="smtp:bad"), r"entry uid=x: proxyAddresses 'bad' is not an address"),
        (raw(mail=b"\xff@corp.test"), r"entry uid=x: mail: value is not UTF-8 text"),
        (
            raw(mail="x@corp.test", userAccountControl="lots"),
            r"entry uid=x: userAccountControl: 'lots' is not a number",
        ),
        (raw(mail="x@corp.test", mobile="ring me"), r"entry uid=x: phone number 'ring me' is not a number"),
        (raw(mail="x@corp.test", userCertificate=b"\x30\x03junk"), r"entry uid=x: certificate does not parse"),
    ],
)
def test_bad_values_name_the_dn(attrs: dict[str, list[bytes]], error: str) -> None:
    with pytest.raises(DirectoryError, match=error):
        entry_to_user("uid=x", attrs, AD)


def test_attribute_overrides() -> None:
    m = mapping_for("openldap", {"mobile": "telephoneNumber", "aliases": "mailAlternateAddress, mailLocalAddress"})
    assert "telephoneNumber" in m.attributes() and "mobile" not in m.attributes()
    u = entry_to_user("uid=x", raw(mail="x@corp.test", mailLocalAddress="y@corp.test", telephoneNumber="5550100"), m)
    assert u.aliases == ("y@corp.test",) and u.devices[0].phone == "5550100"
    assert mapping_for("openldap", {}, "(uid=*)").filter == "(uid=*)"
    with pytest.raises(DirectoryError, match=r"unknown field.*phone"):
        mapping_for("openldap", {"phone": "mobile"})


# -- merge rules ---------------------------------------------------------------------


def record(user: str, *devices: Device, keys: tuple[Key, ...] = (), name: str = "") -> DeviceRecord:
    rec = DeviceRecord(user, rows=[f"devices.csv: row {i}" for i in range(2, 2 + len(devices))])
    rec.devices += devices
    rec.keys += keys
    if name:
        rec.settings["display_name"] = (name, "devices.csv: row 2")
    rec.settings["forward"] = (Forwarding.FULL, "devices.csv: row 2")
    return rec


LDAP_KEY = Key("smime", "ldap-cert")
GW_KEY = Key("pgp", "gateway-key")


def ldap_users() -> list[LDAPUser]:
    return [
        LDAPUser(
            "uid=ann",
            User(
                "ann@corp.test",
                ("a@corp.test",),
                display_name="Ann",
                keys=(LDAP_KEY,),
                devices=(Device("ldap-mobile", phone="+15550100"),),
            ),
        ),
        LDAPUser("uid=ben", User("ben@corp.test", devices=(Device("ldap-mobile", phone="+15550101"),))),
    ]


def test_device_rows_join_by_alias_and_fields_follow_the_merge_settings() -> None:
    phone = Device("IMEI-1", Platform.IOS, "+15550199")
    devices = {"a@corp.test": record("a@corp.test", phone, keys=(GW_KEY,), name="Ann from MDM")}
    fresh = build([], ldap_users(), devices, DirectoryMergeSettings())
    ann, ben = (s.user for s in fresh.users)
    assert ann.devices == (phone,) and ann.display_name == "Ann" and ann.keys == (LDAP_KEY, GW_KEY)
    assert ann.preferences.forward is Forwarding.FULL
    assert ben.devices == (Device("ldap-mobile", phone="+15550101"),)  # no gateway data: LDAP's mobile stays
    assert ben.preferences == Preferences()

    other = DirectoryMergeSettings(display_name="devices", devices="union", keys="ldap")
    ann = build([], ldap_users(), devices, other).users[0].user
    assert ann.display_name == "Ann from MDM" and len(ann.devices) == 2 and ann.keys == (LDAP_KEY,)


def test_one_address_two_users_is_an_error_naming_both() -> None:
    clash = [*ldap_users(), LDAPUser("uid=eve", User("eve@corp.test", ("A@corp.test",)))]
    with pytest.raises(DirectoryError, match=r"entry uid=eve: address A@corp.test also belongs to entry uid=ann"):
        build([], clash, {}, DirectoryMergeSettings())
    with pytest.raises(DirectoryError, match=r"entry uid=ben: address ben@corp.test also belongs to config user x@"):
        build([User("x@corp.test", ("ben@corp.test",))], ldap_users(), {}, DirectoryMergeSettings())
    twice = [*ldap_users(), LDAPUser("uid=ben2", User("ben@corp.test"))]
    with pytest.raises(DirectoryError, match=r"entry uid=ben2: address ben@corp.test also belongs to entry uid=ben"):
        build([], twice, {}, DirectoryMergeSettings())
    # a disabled account keeping an old address does not block the user who has it now
    old = LDAPUser("uid=old", User("old@corp.test", ("a@corp.test",), enabled=False))
    assert len(build([], [*ldap_users(), old], {}, DirectoryMergeSettings()).users) == 3


# -- diff -----------------------------------------------------------------------------


def stored_users(*users: User, source: str = "ldap") -> dict[str, Stored]:
    return {Address.parse(u.address).key: Stored(source, u) for u in users}


def test_plan_lists_added_changed_fields_and_disabled_with_reasons() -> None:
    previous = stored_users(User("a@corp.test"), User("b@corp.test"), User("c@corp.test"), User("d@corp.test"))
    fresh = [
        Stored("ldap", User("a@corp.test", ("x@corp.test",), display_name="A")),
        Stored("ldap", User("b@corp.test", enabled=False)),
        Stored("ldap", User("c@corp.test")),
        Stored("ldap", User("e@corp.test")),
    ]
    p = plan(previous, fresh)
    assert p.diff.added == ("e@corp.test",)
    assert [(c.address, c.fields) for c in p.diff.changed] == [("a@corp.test", ("aliases", "display_name"))]
    assert p.diff.disabled == (("b@corp.test", "disabled-in-source"), ("d@corp.test", "gone-from-source"))
    written = {s.user.address: s.user for s in p.write}
    assert set(written) == {"a@corp.test", "b@corp.test", "d@corp.test", "e@corp.test"}
    assert written["d@corp.test"] == User("d@corp.test", enabled=False)  # kept, disabled
    assert p.diff.lines()[-1] == "1 added, 1 changed, 2 disabled, 0 removed"

    again = plan(
        {**previous, **stored_users(written["d@corp.test"])}, [*fresh[:3], Stored("ldap", User("d@corp.test"))]
    )
    assert [(c.address, c.fields) for c in again.diff.changed] == [
        ("a@corp.test", ("aliases", "display_name")),
        ("d@corp.test", ("enabled",)),  # back in the source: enabled again
    ]


def test_plan_refuses_to_disable_too_many() -> None:
    previous = stored_users(*(User(f"u{n}@corp.test") for n in range(10)))
    keep = [Stored("ldap", User(f"u{n}@corp.test")) for n in range(4)]
    with pytest.raises(DirectoryError, match="would disable 6 of 10 users"):
        plan(previous, keep, max_disable_fraction=0.5)
    assert len(plan(previous, keep, max_disable_fraction=0.6).diff.disabled) == 6
    assert len(plan(stored_users(User("solo@corp.test")), [], max_disable_fraction=0.0).diff.disabled) == 1


# -- stored form and the combined view -----------------------------------------------------


def test_json_round_trip() -> None:
    u = User(
        "a@corp.test",
        ("b@corp.test",),
        enabled=False,
        display_name="Ä",
        alternates=("a@home.example",),
        notify_urls=("ntfy://x/y",),
        devices=(Device("d", Platform.ANDROID, "+1555", "1555@sms.example", "gotify://g/t"),),
        keys=(Key("pgp", "k"),),
        preferences=Preferences(frozenset({NoticeKind.SETUP}), Forwarding.SUMMARY, 99, (22, 6)),
    )
    assert from_json(to_json(u)) == u
    assert from_json(to_json(User("x@corp.test"))) == User("x@corp.test")


def test_combine_config_identity_wins_and_disabled_addresses_are_released() -> None:
    static = [User("ann@corp.test", ("ann.cfg@corp.test",))]
    imported = {
        **stored_users(User("ann@corp.test", ("a@corp.test",), display_name="Ann", devices=(Device("D1"),))),
        **stored_users(User("gone@corp.test", ("shared@corp.test",), enabled=False)),
        **stored_users(User("new@corp.test", ("shared@corp.test",))),
        **stored_users(User("old@corp.test"), source="config"),  # device data of a config user since removed
    }
    d = combine(["corp.test"], static, imported)
    ann = d.lookup(Address.parse("ann.cfg@corp.test"))
    assert ann is not None and ann.aliases == ("ann.cfg@corp.test",) and ann.devices == (Device("D1"),)
    assert d.lookup(Address.parse("a@corp.test")) is None
    assert d.lookup(Address.parse("shared@corp.test")).address == "new@corp.test"
    assert d.lookup(Address.parse("gone@corp.test")) is None
    assert d.lookup(Address.parse("old@corp.test")) is None
    assert {u.address for u in d.users()} == {"ann@corp.test", "new@corp.test", "gone@corp.test"}


def test_view_swaps_whole_directories() -> None:
    view = DirectoryView(combine(["corp.test"], [User("a@corp.test")], {}))
    holder = view  # what the intake, router and authenticator keep
    view.replace(combine(["corp.test"], [], stored_users(User("b@corp.test"))), generation=7)
    assert holder.lookup(Address.parse("a@corp.test")) is None
    assert holder.lookup(Address.parse("b@corp.test")) == User("b@corp.test")
    assert holder.generation == 7 and holder.serves("corp.test") and len(holder) == 1
    assert replace(User("b@corp.test"), enabled=False) not in list(holder.users())
