"""Who the users are: `[directory]`, inline users and their devices, the LDAP and device-gateway
imports and how their fields are merged."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mailstandby.config.base import Section


class DeviceEntry(Section):
    """A phone or pager of a user defined inline (`[[directory.users.devices]]`)."""

    id: str = Field(description="The device's id (as the device-management gateway knows it).")
    platform: Literal["ios", "android", "blackberry", "windows", "pager", "other"] = Field(
        "other", description="The device's platform."
    )
    phone: str = Field("", description="Phone number (E.164) where known.")
    sms_gateway: str = Field("", description="Carrier email-to-SMS address, e.g. 15551234567@txt.example.")
    push_url: str = Field("", description="An Apprise URL reaching this device (ntfy, Gotify, ...).")


class UserEntry(Section):
    address: str = Field(description="The user's primary address.")
    aliases: list[str] = Field([], description="Other addresses delivered to the same user.")
    # Notification profile (see docs/notifications.md).
    display_name: str = Field("", description="The user's name, for notifications.")
    alternates: list[str] = Field([], description="Other email addresses (personal, pager) for notifications.")
    notify_urls: list[str] = Field([], description="Apprise URLs (SMS providers, push, chat, webhooks).")
    devices: list[DeviceEntry] = Field([], description="Phones and pagers (`[[directory.users.devices]]`).")
    notify: list[Literal["failover", "failback", "sync-finished", "setup"]] | None = Field(
        None, description="Notices the user wants; unset: all of them."
    )
    forward: Literal["off", "full", "summary"] = Field(
        "off", description="During an outage, forward each message: whole to alternates, or a summary everywhere."
    )
    summary_length: int = Field(160, ge=20, le=2000, description="Characters of an SMS-sized summary.")
    quiet_hours: tuple[int, int] | None = Field(
        None, description="[start hour, end hour] (standby local time) without SMS/push notifications."
    )

    @field_validator("quiet_hours")
    @classmethod
    def _hours(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not all(0 <= h <= 23 for h in value):
            raise ValueError("hours must be 0..23")
        return value

    @field_validator("address", "aliases", "alternates")
    @classmethod
    def _addresses(cls, value: str | list[str]) -> str | list[str]:
        for a in [value] if isinstance(value, str) else value:
            local, at, domain = a.rpartition("@")
            if not at or not local or not domain or any(c.isspace() for c in a):
                raise ValueError(f"{a!r} is not an address (local@domain)")
        return value


class LDAPSettings(Section):
    """Users imported from the primary's LDAP / Active Directory (`mailstandby directory import`)."""

    url: str = Field("", description="`ldap://HOST[:PORT]` or `ldaps://HOST[:PORT]`; empty: no LDAP import.")
    start_tls: bool = Field(False, description="Upgrade an `ldap://` connection with StartTLS before binding.")
    tls_verify: bool = Field(True, description="Verify the server's certificate (ldaps and StartTLS).")
    ca_file: Path | None = Field(None, description="PEM CA bundle for the server's certificate; unset: system CAs.")
    bind_dn: str = Field("", description="DN (or AD `user@domain`) to bind as; empty: anonymous bind.")
    password_file: Path | None = Field(None, description="File holding the bind password (never in this file).")
    password_env: str = Field("", description="Environment variable holding the bind password (if no file).")
    base_dn: str = Field("", description="Subtree searched for users, e.g. `ou=people,dc=corp,dc=example`.")
    filter: str = Field("", description="LDAP filter selecting users; empty: the preset's filter.")
    preset: Literal["openldap", "active-directory"] = Field(
        "openldap", description="Attribute mapping preset (docs/directory.md); `attributes` overrides single entries."
    )
    attributes: dict[str, str] = Field(
        {},
        description='Per-field attribute overrides, e.g. `{ address = "mail", mobile = "telephoneNumber" }`;'
        " list fields take comma-separated names.",
    )
    page_size: int = Field(500, ge=1, le=10000, description="Simple paged results (RFC 2696) page size.")
    timeout: float = Field(30.0, gt=0, description="Seconds to connect and for each response.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if value and (not sep or scheme.lower() not in ("ldap", "ldaps") or not rest.strip("/")):
            raise ValueError("must be ldap://HOST[:PORT] or ldaps://HOST[:PORT]")
        return value

    @model_validator(mode="after")
    def _password_source(self) -> LDAPSettings:
        if self.url and self.bind_dn and self.password_file is None and not self.password_env:
            raise ValueError("bind_dn needs password_file or password_env (the password never goes in this file)")
        if self.url and not self.base_dn:
            raise ValueError("base_dn is required with url")
        return self


class DeviceImportSettings(Section):
    """Device-gateway exports (CSV or JSON) joined to users by address (`mailstandby directory import`)."""

    files: list[Path] = Field([], description="CSV (`.csv`) or JSON (`.json`) exports; columns in docs/directory.md.")
    columns: dict[str, str] = Field(
        {}, description='Our column name to the export\'s, e.g. `{ user = "UPN", device_id = "DeviceID" }`.'
    )
    unknown_users: Literal["skip", "error"] = Field(
        "skip", description="Rows naming no known user: `skip` (listed in the import report) or `error`."
    )


class DirectoryMergeSettings(Section):
    """Which source wins per field when LDAP and the device gateway both have one (empty values never win)."""

    display_name: Literal["ldap", "devices"] = Field("ldap", description="Source of the display name.")
    alternates: Literal["ldap", "devices", "union"] = Field("union", description="Alternate addresses.")
    notify_urls: Literal["ldap", "devices", "union"] = Field("union", description="Apprise notification URLs.")
    devices: Literal["ldap", "devices", "union"] = Field(
        "devices", description="Devices (LDAP knows only a `mobile` number)."
    )
    keys: Literal["ldap", "devices", "union"] = Field("union", description="S/MIME certificates and PGP keys.")


class DirectorySettings(Section):
    domains: list[str] = Field([], description="Domains served: recipients there are checked against the directory.")
    users: list[UserEntry] = Field([], description="Users defined inline (`[[directory.users]]`).")
    csv: Path | None = Field(
        None, description="CSV file of users: columns `address` and `aliases` (aliases separated by spaces or `;`)."
    )
    refresh_interval: float = Field(
        0.0, ge=0, description="Seconds between imports from LDAP and device exports by the server; 0: only by hand."
    )
    reload_interval: float = Field(
        5.0, gt=0, description="Seconds between checks for a directory imported by `mailstandby directory import`."
    )
    max_disable_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Refuse an import that would disable more than this fraction of the imported users.",
    )
    ldap: LDAPSettings = Field(default_factory=LDAPSettings)
    devices: DeviceImportSettings = Field(default_factory=DeviceImportSettings)
    merge: DirectoryMergeSettings = Field(default_factory=DirectoryMergeSettings)
