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
    QUEUE_LOOKED_UP = "queue.looked-up"  # a delivery in doubt searched in the primary mailbox (found or not)
    QUEUE_LOOKUP_FAILED = "queue.lookup-failed"  # the search could not tell: the delivery is sent again
    QUEUE_TAKEN_OVER = "queue.taken-over"  # a claim another node left (expired lease) taken by this node
    QUEUE_CLAIM_LOST = "queue.claim-lost"  # an outcome not written: another node took the claim meanwhile
    STORE_QUARANTINED = "store.quarantined"
    STORE_PERMISSIONS_FIXED = "store.permissions-fixed"  # group/other access taken away at start-up
    STORE_UNAVAILABLE = "store.unavailable"  # the database is away: a command was answered "try again later"
    LISTENER_REFUSED = "listener.refused"  # a connection over a cap, or from outside an allow-list
    LISTENER_TOO_SLOW = "listener.too-slow"  # a peer sent a request below the minimum data rate
    TLS_RELOADED = "tls.reloaded"  # new connections get the certificate now on disk
    TLS_RELOAD_REFUSED = "tls.reload-refused"  # the new certificate/key did not load; the old one stays
    POP3_LOGIN = "pop3.login"
    POP3_LOGIN_FAILED = "pop3.login-failed"
    POP3_REJECTED = "pop3.rejected"
    POP3_SESSION_ABUSE = "pop3.session-abuse"
    POP3_UPDATE = "pop3.update"
    IMAP_LOGIN = "imap.login"
    IMAP_LOGIN_FAILED = "imap.login-failed"
    IMAP_REJECTED = "imap.rejected"
    IMAP_SESSION_ABUSE = "imap.session-abuse"
    FAILOVER_TRANSITION = "failover.transition"
    FAILOVER_IGNORED = "failover.ignored"  # manual control: the monitor's verdict is only reported
    MONITOR_HEALTH = "monitor.health-changed"
    MONITOR_VERDICT = "monitor.verdict"
    ADMIN_ACTION = "admin.action"
    ADMIN_LOGIN_FAILED = "admin.login-failed"
    # notify: user notifications, forwarding, setup links
    NOTIFY_ANNOUNCED = "notify.announced"
    NOTIFY_SENT = "notify.sent"
    NOTIFY_RETRY = "notify.retry"
    NOTIFY_FAILED = "notify.failed"
    NOTIFY_FORWARD = "notify.forward"
    NOTIFY_SETUP = "notify.setup"
    DIRECTORY_IMPORTED = "directory.imported"
    DIRECTORY_IMPORT_FAILED = "directory.import-failed"
    DIRECTORY_RELOADED = "directory.reloaded"
    # milter event sink: one per message at end of body (see milter.policy.Action), then the takeover
    MILTER_PASS = "milter.pass"
    MILTER_JOURNAL = "milter.journal"
    MILTER_TAKE_ALL = "milter.take-all"
    MILTER_TAKE_SOME = "milter.take-some"
    MILTER_TAKEN = "milter.taken"
    MILTER_TAKEOVER_FAILED = "milter.takeover-failed"
    LOOP_LAG = "loop.lag"  # the event loop was held past node.loop_lag_warning (CPU work on the loop)
    SYNC_RUN = "sync.run"
    SYNC_REFUSED = "sync.refused"
    SYNC_GAVE_UP = "sync.gave-up"
    SYNC_LOGIN_REFUSED = "sync.login-refused"
    SYNC_PRIMARY_FAILED = "sync.primary-failed"
