"""Test directory trees for the slapd fixture: OpenLDAP inetOrgPerson people and AD-style users."""

from __future__ import annotations

import base64
import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

SERVICE_DN = "cn=mailstandby,ou=services,dc=corp,dc=test"
SERVICE_PASSWORD = "bind-pw-7f3a"
PEOPLE = "ou=people,dc=corp,dc=test"
AD = "ou=ad,dc=corp,dc=test"


def certificate(address: str) -> bytes:
    """A self-signed S/MIME certificate (DER) for `address`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.EMAIL_ADDRESS, address)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(address)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.DER)


def base() -> str:
    return f"""\
dn: dc=corp,dc=test
objectClass: dcObject
objectClass: organization
o: Corp
dc: corp

dn: ou=services,dc=corp,dc=test
objectClass: organizationalUnit
ou: services

dn: {SERVICE_DN}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: mailstandby
userPassword: {SERVICE_PASSWORD}

dn: {PEOPLE}
objectClass: organizationalUnit
ou: people

dn: {AD}
objectClass: organizationalUnit
ou: ad

"""


def person(n: int, *, cert: bytes | None = None) -> str:
    """user{n:03d}: every 5th has an alternate address, every 3rd a mobile number."""
    uid = f"user{n:03d}"
    lines = [
        f"dn: uid={uid},{PEOPLE}",
        "objectClass: inetOrgPerson",
        "objectClass: mailRecipient",
        f"uid: {uid}",
        f"cn: User {n}",
        f"sn: {n}",
        f"displayName: User Number {n}",
        f"mail: {uid}@corp.test",
    ]
    if n % 5 == 0:
        lines.append(f"mailAlternateAddress: u{n}@corp.test")
    if n % 3 == 0:
        lines.append(f"mobile: +1 555 01{n:02d}")
    if cert is not None:
        lines.append(f"userCertificate;binary:: {base64.b64encode(cert).decode()}")
    return "\n".join(lines) + "\n\n"


def people(count: int, certs: dict[int, bytes]) -> str:
    return base() + "".join(person(n, cert=certs.get(n)) for n in range(1, count + 1))


def ad_user(cn: str, *, mail: str = "", proxies: tuple[str, ...] = (), upn: str = "", uac: int = 512) -> str:
    """An entry shaped like Active Directory's (objectClass user and its mandatory system attributes)."""
    lines = [
        f"dn: cn={cn},{AD}",
        "objectClass: user",
        f"cn: {cn}",
        f"sn: {cn.split()[-1]}",
        "instanceType: 4",
        "objectCategory: cn=Person,cn=Schema,cn=Configuration,dc=corp,dc=test",
        "nTSecurityDescriptor:: AQAEgA==",
        f"displayName: {cn}",
        f"userAccountControl: {uac}",
    ]
    lines += [f"mail: {mail}"] if mail else []
    lines += [f"proxyAddresses: {p}" for p in proxies]
    lines += [f"userPrincipalName: {upn}"] if upn else []
    return "\n".join(lines) + "\n\n"
