"""Running an import (gather, validate, apply in one transaction) and keeping the server's view fresh.

`gather` reads every source and validates everything before anything is
written: an unreachable LDAP server, refused credentials, a bad row or entry
raise `DirectoryError` and the stored directory stays as it was.

`DirectoryService` is what the server runs: `load()` at start-up (the stored
import, so LDAP on the dead primary is not needed), `refresh()` on the
`refresh_interval` timer, and `watch()` which notices a new generation
written by `mailstandby directory import` and swaps the view.
"""

from __future__ import annotations

import asyncio
import logging

from mailstandby.config import DirectorySettings
from mailstandby.core.events import Event
from mailstandby.directory.devices import check_columns, read_exports
from mailstandby.directory.ldap import fetch
from mailstandby.directory.ldapmap import mapping_for
from mailstandby.directory.merge import Fresh, Plan, build, plan
from mailstandby.directory.static import DirectoryError, StaticDirectory, static_users
from mailstandby.directory.stored import DirectoryStore, StoredDirectory
from mailstandby.directory.view import DirectoryView, combine

log = logging.getLogger(__name__)


def configured(settings: DirectorySettings) -> bool:
    """True when there is anything to import (LDAP or device exports)."""
    return bool(settings.ldap.url or settings.devices.files)


def check(settings: DirectorySettings) -> None:
    """What can be checked without reaching a source: the attribute mapping and column names."""
    mapping_for(settings.ldap.preset, settings.ldap.attributes, settings.ldap.filter)
    check_columns(settings.devices.columns)


def gather(settings: DirectorySettings) -> Fresh:
    """Read and validate every source; raises DirectoryError naming the source and the row or DN."""
    notes: list[str] = []
    ldap_users = None
    if settings.ldap.url:
        result = fetch(settings.ldap)
        ldap_users = result.users
        notes += [f"entry {dn}: no mail address; skipped" for dn in result.skipped]
    records = read_exports(list(settings.devices.files), settings.devices.columns)
    fresh = build(
        static_users(settings), ldap_users, records, settings.merge, unknown_users=settings.devices.unknown_users
    )
    return Fresh(fresh.users, notes + fresh.notes)


def run_import(
    records: StoredDirectory, settings: DirectorySettings, *, origin: str, dry_run: bool
) -> tuple[Plan, Fresh]:
    """An import applied to `records` in one transaction (the command line's way)."""
    fresh = gather(settings)
    applied = records.apply_import(
        fresh, origin=origin, max_disable_fraction=settings.max_disable_fraction, dry_run=dry_run
    )
    return applied, fresh


def current(records: StoredDirectory, settings: DirectorySettings) -> DirectoryView:
    """The combined directory (config file + stored import) as the server would see it now."""
    return DirectoryView(combine(settings.domains, static_users(settings), records.load()), records.generation())


class DirectoryService:
    """Keeps `view` equal to the config file's users combined with the stored import.

    Reading and combining a large directory takes a while (about 1 s for 20,000 users here), so
    it runs in a thread on a connection of its own and only the swap happens on the event loop; the
    store's writer thread (which also accepts mail) only writes a plan made beforehand.
    """

    def __init__(self, view: DirectoryView, store: DirectoryStore, settings: DirectorySettings) -> None:
        self.view = view
        self.store = store
        self.settings = settings
        self._static = list(static_users(settings))

    def _build(self) -> tuple[StaticDirectory, int]:
        gen, users = self.store.snapshot()
        return combine(self.settings.domains, self._static, users), gen

    def _swap(self, built: tuple[StaticDirectory, int]) -> None:
        directory, gen = built
        self.view.replace(directory, gen)
        log.info(
            "%s: generation %d, %d users in %d domains",
            Event.DIRECTORY_RELOADED,
            gen,
            len(directory),
            len(directory.domains),
        )

    def load(self) -> None:
        """Swap in the stored import now (at start-up, before anything is accepted)."""
        self._swap(self._build())

    async def reload(self) -> None:
        self._swap(await asyncio.to_thread(self._build))

    async def refresh(self) -> Plan:
        """Import from the configured sources now and apply it; raises DirectoryError, keeping the old one."""
        fresh = await asyncio.to_thread(gather, self.settings)
        fraction = self.settings.max_disable_fraction

        def planned() -> tuple[int, Plan]:
            gen, previous = self.store.snapshot()
            return gen, plan(previous, fresh.users, max_disable_fraction=fraction)

        gen, p = await asyncio.to_thread(planned)
        # written by the store's writer; planned again there if another import landed meanwhile
        applied = await self.store.write_plan(
            p, planned_at=gen, fresh=fresh, origin="server", max_disable_fraction=fraction
        )
        for note in fresh.notes:
            log.info("%s: note: %s", Event.DIRECTORY_IMPORTED, note)
        log.info("%s: %s", Event.DIRECTORY_IMPORTED, applied.diff.summary())
        await self.reload()
        return applied

    async def run_refresh(self, interval: float) -> None:
        while True:
            try:
                await self.refresh()
            except DirectoryError as e:
                log.error("%s: the previous directory stays in force: %s", Event.DIRECTORY_IMPORT_FAILED, e)
            except Exception:
                log.exception("%s: the previous directory stays in force", Event.DIRECTORY_IMPORT_FAILED)
            await asyncio.sleep(interval)

    async def watch(self, interval: float) -> None:
        """Reload when another process (the command line) applied an import."""
        while True:
            await asyncio.sleep(interval)
            try:
                if self.store.generation() != self.view.generation:
                    await self.reload()
            except Exception:
                log.exception("%s: reload failed; the previous directory stays in force", Event.DIRECTORY_IMPORT_FAILED)
