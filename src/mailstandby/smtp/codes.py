"""Every SMTP reply mailstandby sends, by name, with its RFC anchor.

Codes and enhanced codes are the contract (RFC 5321, RFC 3463); the texts
follow Postfix where a client or an administrator might grep for them. Client
text is generic; details go to the log.
"""

from __future__ import annotations

from mailstandby.core.reply import Reply

# 2xx
C211_HELP_STATUS = Reply(211, "2.0.0", "mailstandby")
C214_HELP = Reply(214, "2.0.0", "See https://www.rfc-editor.org/rfc/rfc5321")
C221_BYE = Reply(221, "2.0.0", "Bye")
C250_OK = Reply(250, "2.0.0", "Ok")
C250_SENDER_OK = Reply(250, "2.1.0", "Ok")
C250_RCPT_OK = Reply(250, "2.1.5", "Ok")
C250_RESET = Reply(250, "2.0.0", "Ok")
C252_CANNOT_VRFY = Reply(
    252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery"
)  # RFC 5321 §3.5.3
C220_READY_TLS = Reply(220, "2.0.0", "Ready to start TLS")  # RFC 3207 §4

C221_FORBIDDEN_COMMAND = Reply(
    221, "2.7.0", "Error: I can break rules, too. Goodbye."
)  # Postfix smtpd_forbidden_commands

C235_AUTH_OK = Reply(235, "2.7.0", "Authentication successful")  # RFC 4954 §6

# 3xx
C354_START_DATA = Reply(354, "", "End data with <CR><LF>.<CR><LF>")

# 4xx: temporary
C421_SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, try again later")  # RFC 3463 X.3.2
C421_TOO_MANY_CONNECTIONS = Reply(421, "4.3.2", "Too many connections, try again later")
# Postfix smtpd_client_connection_count_limit and _rate_limit ("too many connections from <ip>"), RELIABILITY X2
C421_TOO_MANY_FROM_CLIENT = Reply(421, "4.7.0", "Error: too many connections from your address")
C421_TOO_MANY_ERRORS = Reply(421, "4.7.0", "Error: too many errors")  # Postfix smtpd_hard_error_limit
# Postfix anvil (smtpd_client_*_rate_limit), RELIABILITY X2/R9; the client is told which limit, not the figures
C450_MESSAGE_RATE = Reply(450, "4.7.1", "Error: too much mail from your address")
C450_RECIPIENT_RATE = Reply(450, "4.7.1", "Error: too many recipients from your address")
C421_TIMEOUT = Reply(421, "4.4.2", "Error: timeout exceeded")  # RFC 3463 X.4.2
C451_LOCAL_ERROR = Reply(451, "4.3.0", "Error: queue file write error")  # Postfix cleanup_strerror.c
C452_NO_SPACE = Reply(452, "4.3.1", "Insufficient system storage")  # RFC 3463 X.3.1
C451_CONTENT_CHECK = Reply(451, "4.7.1", "Try again later")  # content check deferred (rspamd soft reject)
C452_TOO_MANY_RCPTS = Reply(452, "4.5.3", "Error: too many recipients")  # RFC 5321 §4.5.3.1.10
C454_TLS_UNAVAILABLE = Reply(454, "4.7.0", "TLS not available due to temporary reason")  # RFC 3207

C454_AUTH_TEMPORARY = Reply(454, "4.7.0", "Temporary authentication failure")  # RFC 4954 §6

# 5xx: permanent
C500_UNKNOWN = Reply(500, "5.5.2", "Error: command not recognized")
C500_LINE_TOO_LONG = Reply(500, "5.5.6", "Error: line too long")  # RFC 5321 §4.5.3.1.4
C500_BAD_UTF8 = Reply(500, "5.5.2", "Error: bad UTF-8 syntax")  # Postfix smtpd.c
C500_NUL = Reply(500, "5.5.2", "Error: NUL character in command")
C501_SYNTAX = Reply(501, "5.5.4", "Syntax error in parameters or arguments")
C501_BAD_ADDRESS = Reply(501, "5.1.7", "Bad address syntax")  # RFC 3463 X.1.7 (sender) / X.1.3
C501_BAD_RCPT_ADDRESS = Reply(501, "5.1.3", "Bad recipient address syntax")
C501_BAD_SIZE = Reply(501, "5.5.4", "Bad message size syntax")  # RFC 1870 §6; Postfix smtpd.c
C501_BAD_NOTIFY = Reply(501, "5.5.4", "Error: Bad NOTIFY parameter syntax")  # RFC 3461 §4.1; Postfix
C501_BAD_ORCPT = Reply(501, "5.5.4", "Error: Bad ORCPT parameter syntax")  # RFC 3461 §4.2; Postfix
C501_BAD_RET = Reply(501, "5.5.4", "Bad RET parameter syntax")  # RFC 3461 §4.3; Postfix
C501_BAD_ENVID = Reply(501, "5.5.4", "Bad ENVID parameter syntax")  # RFC 3461 §4.4; Postfix
C501_INVALID_HELO = Reply(501, "5.5.2", "Helo command rejected: Invalid name")  # Postfix reject_invalid_helo_hostname
# RFC 3030 §2: a BDAT line that cannot be parsed leaves the chunk size unknown; Postfix closes (521)
C521_BDAT_SYNTAX = Reply(521, "5.5.4", "Syntax: BDAT count [LAST]")
C503_AFTER_BDAT = Reply(503, "5.5.1", "Error: command not allowed after BDAT")  # RFC 3030 §2; Postfix
C551_BDAT_DISCARDED = Reply(551, "5.0.0", "Discarded data after earlier error")  # RFC 3030 §2; Postfix
C501_NEED_HELO_ARG = Reply(501, "5.5.4", "Syntax: EHLO hostname")
C501_AUTH_CANCELLED = Reply(501, "5.7.0", "Authentication cancelled")  # RFC 4954 §4
C501_BAD_BASE64 = Reply(501, "5.5.2", "Cannot decode response")  # RFC 4954 §4
C503_ALREADY_AUTHENTICATED = Reply(503, "5.5.1", "Error: already authenticated")  # Postfix smtpd_sasl_proto.c
C504_AUTH_MECHANISM = Reply(504, "5.5.4", "Unrecognized authentication type")  # RFC 4954 §6
C530_AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")  # RFC 4954 §6
C535_AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")  # RFC 4954 §6
C538_ENCRYPTION_REQUIRED = Reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
C553_NOT_OWNER = Reply(
    553, "5.7.1", "Sender address rejected: not owned by user"
)  # Postfix reject_sender_login_mismatch
C553_HEADER_NOT_OWNER = Reply(
    553, "5.7.1", "Header address rejected: From/Sender not owned by user"
)  # RFC 6409 §8 (the MSA may refuse what the user is not authorized to send as)
C552_HEADER_TOO_BIG = Reply(552, "5.3.4", "Message header size exceeds limit")  # RFC 3463 X.3.4
C502_NOT_IMPLEMENTED = Reply(502, "5.5.1", "Error: command not implemented")
C503_NEED_HELO = Reply(503, "5.5.1", "Error: send HELO/EHLO first")
C503_NEED_MAIL = Reply(503, "5.5.1", "Error: need MAIL command")
C503_NEED_RCPT = Reply(503, "5.5.1", "Error: need RCPT command")
C503_NESTED_MAIL = Reply(503, "5.5.1", "Error: nested MAIL command")
C503_MAIL_IN_PROGRESS = Reply(503, "5.5.1", "Error: MAIL transaction in progress")
C503_TLS_ACTIVE = Reply(503, "5.5.1", "Error: TLS already active")
C550_UNKNOWN_USER = Reply(550, "5.1.1", "Recipient address rejected: User unknown")  # RFC 3463 X.1.1
C550_BARE_NEWLINE = Reply(
    550, "5.5.2", "Error: bare <CR> or <LF> received, possible SMTP smuggling"
)  # Postfix smtpd_forbid_bare_newline
C552_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed limit")  # RFC 3463 X.3.4
C552_FILE_TOO_BIG = Reply(552, "5.3.4", "Error: message file too big")  # Postfix, EFBIG
C553_NEED_SMTPUTF8 = Reply(553, "5.6.7", "Must declare SMTPUTF8 to send unicode address")  # RFC 6531 §3.7.4.1
C554_TOO_MANY_HOPS = Reply(554, "5.4.0", "Error: too many hops")  # RFC 5321 §6.3; Postfix hopcount_limit
C521_PREGREET = Reply(521, "5.5.1", "Protocol error")  # Postfix postscreen pregreet (drop); RFC 7504
C554_NO_VALID_RCPTS = Reply(554, "5.5.1", "Error: no valid recipients")
C554_RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied")  # RFC 3463 X.7.1
C554_SPAM = Reply(554, "5.7.1", "Message rejected as spam")  # RFC 3463 X.7.1 (rspamd action `reject`)
C554_SYNC = Reply(554, "5.5.0", "Error: SMTP protocol synchronization")  # Postfix smtpd_forbid_unauth_pipelining
C555_PARAM = Reply(555, "5.5.4", "Unsupported option")  # RFC 5321 §4.1.1.11
C530_MUST_STARTTLS = Reply(530, "5.7.0", "Must issue a STARTTLS command first")  # RFC 3207


def greeting(hostname: str) -> Reply:
    """RFC 5321 §4.2: the 220 banner (no enhanced code before EHLO)."""
    return Reply(220, "", f"{hostname} ESMTP mailstandby")


def ehlo(hostname: str, keywords: list[str]) -> Reply:
    """RFC 5321 §4.1.1.1: the EHLO reply, one keyword per line."""
    return Reply(250, "", "\n".join([hostname, *keywords]))


def challenge(text: str) -> Reply:
    """RFC 4954 §4: a server challenge (base64 text, may be empty)."""
    return Reply(334, "", text)


def chunk_received(size: int) -> Reply:
    """RFC 3030 §2: the reply to a BDAT chunk that is not the last."""
    return Reply(250, "2.0.0", f"Ok: {size} bytes")


def queued(queue_id: str) -> Reply:
    """The reply to end-of-data once the message is on stable storage."""
    return Reply(250, "2.0.0", f"Ok: queued as {queue_id}")
