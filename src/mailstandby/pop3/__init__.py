"""POP3 access to standby mailboxes: codec (pure) → session (RFC 1939 states) → server (listeners)."""
