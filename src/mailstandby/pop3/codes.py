"""Every POP3 status line mailstandby sends, by name, with its RFC anchor.

A reply is `+OK text` or `-ERR [CODE] text` (RFC 1939 §3; response codes from
RFC 2449 §8 and RFC 3206). Names say the status and, for -ERR, the response
code: `ERR_AUTH_*` carries [AUTH], `ERR_SYS_TEMP_*` [SYS/TEMP], `ERR_IN_USE_*`
[IN-USE]; a test checks that names and codes agree. Texts follow Dovecot where
a client or an administrator might grep for them; details go to the log.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    """A POP3 status line: +OK or -ERR, an optional response code, a text."""

    ok: bool
    text: str
    code: str = ""  # RFC 2449 §8 response code without brackets, e.g. "AUTH", "SYS/TEMP"

    def wire(self) -> bytes:
        status = "+OK" if self.ok else "-ERR"
        code = f" [{self.code}]" if self.code else ""
        text = f" {self.text}" if self.text else ""
        return f"{status}{code}{text}\r\n".encode()

    def with_text(self, text: str) -> Reply:
        return Reply(self.ok, text, self.code)


class CommandError(Exception):
    """Answer the command with `reply`; `bad` says whether it counts towards max_bad_commands."""

    def __init__(self, reply: Reply, *, detail: str = "", bad: bool = True) -> None:
        super().__init__(reply.text)
        self.reply = reply
        self.detail = detail  # for the log only; never contains a password
        self.bad = bad


# +OK
OK = Reply(True, "")
OK_CAPA = Reply(True, "Capability list follows")  # RFC 2449 §5
OK_BEGIN_TLS = Reply(True, "Begin TLS negotiation now.")  # RFC 2595 §4
OK_USER = Reply(True, "")  # RFC 1939 §7: the same for every name (no user enumeration)
OK_LOGGED_IN = Reply(True, "Logged in.")
OK_SASL_MECHS = Reply(True, "")  # AUTH without a mechanism: the list (before RFC 5034; Outlook asks)
OK_BYE = Reply(True, "Logging out.")  # RFC 1939 §6
OK_DELETED = Reply(True, "Marked to be deleted.")  # RFC 1939 §5 DELE
OK_RSET = Reply(True, "")  # RFC 1939 §5 RSET
OK_NOOP = Reply(True, "")

# -ERR without a response code
ERR_UNKNOWN = Reply(False, "Unknown command.")
ERR_SYNTAX = Reply(False, "Invalid arguments.")
ERR_BAD_STATE = Reply(False, "Command not valid in this state.")
ERR_LINE_TOO_LONG = Reply(False, "Line too long.")  # RFC 2449 §4: 255 octets with CRLF
ERR_NUL = Reply(False, "NUL character in command.")
ERR_BAD_UTF8 = Reply(False, "Invalid UTF-8 in command.")
ERR_NO_MESSAGE = Reply(False, "There's no message with that number.")  # RFC 1939 §5
ERR_ALREADY_DELETED = Reply(False, "Message is deleted.")  # RFC 1939 §5 DELE, RETR, LIST
ERR_NO_USER = Reply(False, "No username given.")  # PASS before USER
ERR_TLS_ACTIVE = Reply(False, "TLS is already active.")  # RFC 2595 §4
ERR_TLS_UNAVAILABLE = Reply(False, "TLS support isn't enabled.")
ERR_UNKNOWN_MECHANISM = Reply(False, "Unsupported authentication mechanism.")  # RFC 5034 §4
ERR_SASL_ABORTED = Reply(False, "Authentication aborted by client.")  # RFC 5034 §4: "*"
ERR_TOO_MANY_BAD = Reply(False, "Too many bad commands.")
ERR_TIMEOUT = Reply(False, "Disconnected for inactivity.")
ERR_SHUTTING_DOWN = Reply(False, "server shutting down")  # CONTRIBUTING.md, Shutdown: POP3's goodbye is -ERR
ERR_MESSAGE_GONE = Reply(False, "Message was expunged by another session.")

# -ERR [AUTH]: RFC 3206 §4 (the credentials or their transport are the problem)
ERR_AUTH_FAILED = Reply(False, "Authentication failed.", "AUTH")  # RELIABILITY A2: one reply for every failure
ERR_AUTH_PLAINTEXT = Reply(
    False, "Plaintext authentication disallowed on non-secure (SSL/TLS) connections.", "AUTH"
)  # RELIABILITY A1, RFC 2595 §2.2

# -ERR [SYS/TEMP]: RFC 3206 §5 (our problem, try again later)
ERR_SYS_TEMP_MAILDROP = Reply(False, "Unable to open the maildrop, try again later.", "SYS/TEMP")
ERR_SYS_TEMP_ERROR = Reply(False, "Temporary internal error, try again later.", "SYS/TEMP")
ERR_SYS_TEMP_SESSION_TOO_LONG = Reply(False, "Session time limit reached, reconnect.", "SYS/TEMP")  # RELIABILITY X1
# RELIABILITY X2: connection caps, refused at connect
ERR_SYS_TEMP_TOO_MANY = Reply(False, "Too many connections, try again later.", "SYS/TEMP")
ERR_SYS_TEMP_TOO_MANY_FROM_CLIENT = Reply(False, "Too many connections from your address, try again later.", "SYS/TEMP")
ERR_SYS_TEMP_LOGIN_TIMEOUT = Reply(False, "Disconnected: no login in time.", "SYS/TEMP")  # pop3 login_timeout
ERR_SYS_TEMP_NOT_REMOVED = Reply(
    False, "Some deleted messages were not removed.", "SYS/TEMP"
)  # RFC 1939 §6 QUIT in UPDATE

# -ERR [IN-USE]: RFC 2449 §8.1.1 (RELIABILITY A8: too many sessions for this user)
ERR_IN_USE_TOO_MANY = Reply(False, "Too many sessions for this user from this address.", "IN-USE")


def greeting(hostname: str) -> Reply:
    """RFC 1939 §4: the banner, without an APOP timestamp (APOP is not offered)."""
    return Reply(True, f"{hostname} mailstandby POP3 ready.")


def ok_octets(size: int) -> Reply:
    """RFC 1939 §5 RETR: the size in octets before the multi-line message."""
    return Reply(True, f"{size} octets")


def ok_stat(count: int, size: int) -> Reply:
    """RFC 1939 §5 STAT: exactly `+OK nn mm`."""
    return Reply(True, f"{count} {size}")


def ok_listing(number: int, value: str) -> Reply:
    """RFC 1939 §5 LIST n / UIDL n: `+OK n value`."""
    return Reply(True, f"{number} {value}")


def ok_messages(count: int, size: int) -> Reply:
    return Reply(True, f"{count} messages ({size} octets)")
