"""Closed set of event names used in logs and metrics."""

from __future__ import annotations

from enum import StrEnum


class Event(StrEnum):
    SMTP_ACCEPTED = "smtp.accepted"
    SMTP_REJECTED = "smtp.rejected"
    SMTP_SESSION_ABUSE = "smtp.session-abuse"
    QUEUE_DELIVERED = "queue.delivered"
    QUEUE_DEFERRED = "queue.deferred"
    QUEUE_FAILED = "queue.failed"
    QUEUE_EXPIRED = "queue.expired"
    QUEUE_DSN_SENT = "queue.dsn-queued"
    QUEUE_DSN_SUPPRESSED = "queue.dsn-suppressed"
    STORE_QUARANTINED = "store.quarantined"
    POP3_LOGIN = "pop3.login"
    POP3_LOGIN_FAILED = "pop3.login-failed"
    POP3_REJECTED = "pop3.rejected"
    POP3_SESSION_ABUSE = "pop3.session-abuse"
    POP3_UPDATE = "pop3.update"
    IMAP_LOGIN = "imap.login"
    IMAP_LOGIN_FAILED = "imap.login-failed"
    IMAP_REJECTED = "imap.rejected"
    IMAP_SESSION_ABUSE = "imap.session-abuse"
    SYNC_RUN = "sync.run"
    SYNC_REFUSED = "sync.refused"
    SYNC_GAVE_UP = "sync.gave-up"
    SYNC_LOGIN_REFUSED = "sync.login-refused"
    SYNC_PRIMARY_FAILED = "sync.primary-failed"
