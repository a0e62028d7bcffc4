"""One-tap phone setup: personal links, configuration profiles and the standard autoconfig URLs.

Routes (Starlette; the admin HTTP server mounts `setup_routes(service)`):

    GET  /setup/{token}                       plain page: host, ports, downloads, password form
    GET  /setup/{token}/standby.mobileconfig  Apple configuration profile (com.apple.mail.managed)
    GET  /setup/{token}/config-v1.1.xml       Mozilla autoconfig (clientConfig 1.1) for this user
    POST /setup/{token}/code                  send a one-time code to the user's registered destinations
    POST /setup/{token}/password              code + new password: sets the standby password (argon2id)
    GET  /.well-known/autoconfig/mail/config-v1.1.xml, /mail/config-v1.1.xml   generic autoconfig
    POST /autodiscover/autodiscover.xml       Outlook autodiscover (POX)

A link is personal, expires (`notify.link_lifetime`) and is single use: the
first profile download consumes it. The page itself does not (mail scanners
fetch links to look at them); it refuses a used or expired link all the same.
No page ever shows or embeds a password: the phone asks for it.
"""

from __future__ import annotations

import html
import logging
import plistlib
import secrets
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from mailstandby.auth import CredentialStore, HashingPool, password_problem
from mailstandby.config import NotifySettings
from mailstandby.core.events import Event
from mailstandby.core.model import Address
from mailstandby.directory.base import Directory, User
from mailstandby.http_body import read_body
from mailstandby.notify import compose, tokens
from mailstandby.notify.records import NotifyStore

log = logging.getLogger(__name__)

MAX_CODES = tokens.MAX_LIVE_CODES  # live one-time codes per user
MAX_FORM = 16 * 1024
MOBILECONFIG = "application/x-apple-aspen-config"


class SetupService:
    def __init__(
        self,
        store: NotifyStore,
        directory: Directory,
        settings: NotifySettings,
        *,
        hostname: str,
        key: bytes,
        credentials: CredentialStore,
        send_code: Callable[..., Awaitable[str | None]],
        clock: Callable[[], float] = time.time,
        hashing: HashingPool | None = None,
    ) -> None:
        self.store = store
        self.directory = directory
        self.settings = settings
        self.hostname = hostname
        self.key = key
        self.credentials = credentials
        self.send_code = send_code  # (user, nonce, *, limit) -> the code's hash, None past the limit
        self.clock = clock
        self.hashing = hashing or HashingPool()

    def user_of(self, token: str) -> tuple[User | None, tokens.TokenProblem | None]:
        row = self.store.find_token(tokens.token_hash(token))
        why = tokens.problem(row if row is None or row.purpose is tokens.Purpose.LINK else None, self.clock())
        if why is not None or row is None:
            return None, why
        return self._lookup(row.user), None

    def _lookup(self, address: str) -> User | None:
        try:
            return self.directory.lookup(Address.parse(address))
        except ValueError:
            return None

    async def consume(self, token: str) -> tuple[User | None, tokens.TokenProblem | None]:
        user, why = self.user_of(token)
        if user is None:
            return None, why or tokens.TokenProblem.UNKNOWN
        now = self.clock()
        hashed = tokens.token_hash(token)
        why = await self.store.consume_token(hashed, now)
        return (user, None) if why is None else (None, why)

    def info(self) -> dict[str, Any]:
        return compose.standby_info(self.settings, self.hostname)


# -- documents ------------------------------------------------------------------------------


def mobileconfig(user: User, info: dict[str, Any], organization: str) -> bytes:
    """An Apple configuration profile with one IMAP account (no password: the phone asks)."""
    ident = f"mailstandby.{info['host']}.{user.address}"
    account = {
        "PayloadType": "com.apple.mail.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": ident + ".mail",
        "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, ident + ".mail")).upper(),
        "PayloadDisplayName": "Standby mail",
        "EmailAccountDescription": f"{organization or 'Standby'} mail (standby)",
        "EmailAccountName": user.display_name or user.address,
        "EmailAccountType": "EmailTypeIMAP",
        "EmailAddress": user.address,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "IncomingMailServerHostName": info["host"],
        "IncomingMailServerPortNumber": info["imap"]["port"],
        "IncomingMailServerUseSSL": True,
        "IncomingMailServerUsername": user.address,
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": info["host"],
        "OutgoingMailServerPortNumber": info["submission"]["port"],
        "OutgoingMailServerUseSSL": True,
        "OutgoingMailServerUsername": user.address,
        "OutgoingPasswordSameAsIncomingPassword": True,
    }
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": ident,
        "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, ident)).upper(),
        "PayloadDisplayName": f"{organization or 'Standby'} mail (standby)",
        "PayloadOrganization": organization or info["host"],
        "PayloadRemovalDisallowed": False,
        "PayloadContent": [account],
    }
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML)


def autoconfig(domain: str, username: str, info: dict[str, Any], organization: str) -> bytes:
    """Mozilla autoconfig (clientConfig version 1.1) for IMAP, POP3 and submission."""
    root = ET.Element("clientConfig", version="1.1")
    provider = ET.SubElement(root, "emailProvider", id=domain)
    ET.SubElement(provider, "domain").text = domain
    ET.SubElement(provider, "displayName").text = f"{organization or domain} (standby)"
    ET.SubElement(provider, "displayShortName").text = organization or domain
    for kind, service, tag in (("imap", "imap", "incomingServer"), ("pop3", "pop3", "incomingServer"),
                               ("smtp", "submission", "outgoingServer")):  # fmt: skip
        server = ET.SubElement(provider, tag, type=kind)
        ET.SubElement(server, "hostname").text = info["host"]
        ET.SubElement(server, "port").text = str(info[service]["port"])
        ET.SubElement(server, "socketType").text = "SSL" if info[service]["security"] == "ssl" else "STARTTLS"
        ET.SubElement(server, "username").text = username
        ET.SubElement(server, "authentication").text = "password-cleartext"
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8")


def autodiscover(address: str, info: dict[str, Any]) -> bytes:
    """Outlook autodiscover (POX, outlook response schema 2006a) for IMAP and SMTP."""
    ns = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
    root = ET.Element("Autodiscover", xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006")
    response = ET.SubElement(root, "Response", xmlns=ns)
    account = ET.SubElement(response, "Account")
    ET.SubElement(account, "AccountType").text = "email"
    ET.SubElement(account, "Action").text = "settings"
    for kind, service in (("IMAP", "imap"), ("SMTP", "submission")):
        proto = ET.SubElement(account, "Protocol")
        ET.SubElement(proto, "Type").text = kind
        ET.SubElement(proto, "Server").text = info["host"]
        ET.SubElement(proto, "Port").text = str(info[service]["port"])
        ET.SubElement(proto, "LoginName").text = address
        ET.SubElement(proto, "SPA").text = "off"
        ET.SubElement(proto, "SSL").text = "on"
        if info[service]["security"] == "starttls":
            ET.SubElement(proto, "Encryption").text = "TLS"
        ET.SubElement(proto, "AuthRequired").text = "on"
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="utf-8")


# -- routes -----------------------------------------------------------------------------------

_REFUSED = {
    tokens.TokenProblem.UNKNOWN: "This setup link is not valid.",
    tokens.TokenProblem.EXPIRED: "This setup link has expired. Ask for a new one.",
    tokens.TokenProblem.USED: "This setup link has been used already. Ask for a new one.",
    tokens.TokenProblem.TOO_MANY_TRIES: "Too many wrong codes. Ask for a new code.",
}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    doc = (
        "<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
        f"<meta name='robots' content='noindex'><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(
        doc, status_code=status, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    )


def _refused(why: tokens.TokenProblem | None) -> HTMLResponse:
    text = _REFUSED.get(why or tokens.TokenProblem.UNKNOWN, _REFUSED[tokens.TokenProblem.UNKNOWN])
    return _page("Standby mail setup", f"<p>{html.escape(text)}</p>", status=410 if why else 404)


async def _form(request: Request) -> dict[str, str]:
    body = await read_body(request, MAX_FORM)  # 413 past the limit, never held whole
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


class _Handlers:
    """One method per route; `service` does the work."""

    def __init__(self, service: SetupService) -> None:
        self.service = service

    async def page(self, request: Request) -> Response:
        token = request.path_params["token"]
        user, why = self.service.user_of(token)
        if user is None:
            return _refused(why)
        info = self.service.info()
        has_password = await self.service.credentials.password_hash(user.address) is not None
        rows = "".join(
            f"<tr><td>{label}</td><td>{html.escape(info['host'])}</td><td>{info[s]['port']}</td>"
            f"<td>{info[s]['security_text']}</td></tr>"
            for label, s in (("IMAP", "imap"), ("POP3", "pop3"), ("SMTP (sending)", "submission"))
        )
        esc = html.escape(token)
        body = (
            f"<p>User name: <b>{html.escape(user.address)}</b></p>"
            f"<table><tr><th></th><th>Server</th><th>Port</th><th>Security</th></tr>{rows}</table>"
            f"<p><a href='/setup/{esc}/standby.mobileconfig'>iPhone / iPad / Mac: install the profile</a></p>"
            f"<p><a href='/setup/{esc}/config-v1.1.xml'>Thunderbird / other: settings file</a></p>"
            "<p>This link works once: after a download it is used up.</p>"
        )
        if not has_password:
            body += (
                "<h2>Choose your standby password</h2>"
                f"<form method='post' action='/setup/{esc}/code'><button>Send me a code</button></form>"
                f"<form method='post' action='/setup/{esc}/password'>"
                "<label>Code <input name='code' autocomplete='one-time-code'></label> "
                f"<label>New password (at least {self.service.hashing.min_length} characters) <input type='password' "
                f"name='password' minlength='{self.service.hashing.min_length}' autocomplete='new-password'></label> "
                "<button>Set password</button></form>"
            )
        return _page("Standby mail setup", body)

    async def profile(self, request: Request) -> Response:
        user, why = await self.service.consume(request.path_params["token"])
        if user is None:
            return _refused(why)
        log.info("%s: profile downloaded by %s", Event.NOTIFY_SETUP, user.address)
        return Response(
            mobileconfig(user, self.service.info(), self.service.settings.organization),
            media_type=MOBILECONFIG,
            headers={"Cache-Control": "no-store", "Content-Disposition": 'attachment; filename="standby.mobileconfig"'},
        )

    async def personal_autoconfig(self, request: Request) -> Response:
        user, why = await self.service.consume(request.path_params["token"])
        if user is None:
            return _refused(why)
        domain = user.address.rpartition("@")[2]
        doc = autoconfig(domain, user.address, self.service.info(), self.service.settings.organization)
        return Response(doc, media_type="application/xml", headers={"Cache-Control": "no-store"})

    async def send_code(self, request: Request) -> Response:
        user, why = self.service.user_of(request.path_params["token"])
        if user is None:
            return _refused(why)
        if not compose.destinations(user):
            return _page("Standby mail setup", "<p>No alternate address or phone is registered for you.</p>", 409)
        # the live codes are counted in the transaction that adds the new one: parallel requests cannot pass
        if await self.service.send_code(user, secrets.token_urlsafe(12), limit=MAX_CODES) is None:
            return _page("Standby mail setup", "<p>Codes were sent already; please wait for them.</p>", 429)
        return _page("Standby mail setup", "<p>A code is on its way to your registered address or phone.</p>")

    async def set_password(self, request: Request) -> Response:
        token = request.path_params["token"]
        user, why = self.service.user_of(token)
        if user is None:
            return _refused(why)
        form = await _form(request)
        code, password = form.get("code", ""), form.get("password", "")
        problem = password_problem(password, account=user.address, min_length=self.service.hashing.min_length)
        if problem is not None:
            return _page("Standby mail setup", f"<p>{html.escape(problem)}</p>", 400)
        now = self.service.clock()
        hashed_code = tokens.code_hash(self.service.key, user.address, code)
        why = await self.service.store.try_code(user.address, hashed_code, now)
        peer = request.client.host if request.client else ""
        if why is not None:
            await self.service.credentials.audit(user.address, "setup-password", "refused", peer=peer, detail=why.value)
            return _page("Standby mail setup", f"<p>{html.escape(_REFUSED.get(why, 'Wrong code.'))}</p>", 403)
        hashed = await self.service.hashing.make_hash(password)  # only with a good code, off the event loop
        await self.service.credentials.set_password_hash(user.address, hashed)
        await self.service.credentials.audit(user.address, "setup-password", "ok", peer=peer)
        return _page(
            "Standby mail setup", f"<p>Your standby password is set. <a href='/setup/{html.escape(token)}'>Back</a></p>"
        )

    async def generic_autoconfig(self, request: Request) -> Response:
        email = request.query_params.get("emailaddress", "")
        domain = email.rpartition("@")[2].lower() if "@" in email else ""
        if not domain or not self.service.directory.serves(domain):
            domain, email = (request.url.hostname or self.service.hostname).removeprefix("autoconfig."), ""
        username = email or "%EMAILADDRESS%"
        doc = autoconfig(domain, username, self.service.info(), self.service.settings.organization)
        return Response(doc, media_type="application/xml")

    async def outlook(self, request: Request) -> Response:
        body = (await read_body(request, MAX_FORM)).decode("utf-8", "replace")
        address = _requested_address(body)
        if address is None or not self.service.directory.serves(address.rpartition("@")[2]):
            return Response(status_code=404)
        return Response(autodiscover(address, self.service.info()), media_type="application/xml")


def _requested_address(body: str) -> str | None:
    """The `<EMailAddress>` of an autodiscover request (no login: any client's bytes), found by plain
    string search in one pass, never a regex or an XML parser (entities) on it."""
    lowered = body.lower()
    start = lowered.find("<emailaddress>")
    end = lowered.find("</emailaddress>", start + 1)
    if start < 0 or end < 0:
        return None
    address = body[start + len("<emailaddress>") : end].strip()
    local, at, domain = address.partition("@")
    if not local or not at or not domain or "@" in domain or any(c.isspace() or c == "<" for c in address):
        return None
    return address


def setup_routes(service: SetupService) -> list[BaseRoute]:
    """The setup pages and autoconfig endpoints, to be mounted at the root of the public HTTPS server."""
    h = _Handlers(service)
    return [
        Route("/setup/{token}", h.page, methods=["GET"]),
        Route("/setup/{token}/standby.mobileconfig", h.profile, methods=["GET"]),
        Route("/setup/{token}/config-v1.1.xml", h.personal_autoconfig, methods=["GET"]),
        Route("/setup/{token}/code", h.send_code, methods=["POST"]),
        Route("/setup/{token}/password", h.set_password, methods=["POST"]),
        Route("/.well-known/autoconfig/mail/config-v1.1.xml", h.generic_autoconfig, methods=["GET"]),
        Route("/mail/config-v1.1.xml", h.generic_autoconfig, methods=["GET"]),
        Route("/autodiscover/autodiscover.xml", h.outlook, methods=["POST"]),
        Route("/Autodiscover/Autodiscover.xml", h.outlook, methods=["POST"]),
    ]
