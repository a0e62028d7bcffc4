"""Failback sync: everything that exists only on the standby goes into the primary mailboxes, exactly once.

Public interface (docs/sync.md): `SyncEngine` (engine.py) with `run()` and
`status()`; its results `SyncReport`, `SyncStatus`, `Progress` (plan.py); its
errors `SyncError` and `PrimaryUnavailable`.
"""
