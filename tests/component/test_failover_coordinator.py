"""The failover coordinator on a real SQLite store, the queue's rerouting, and the admin API in-process.

Restart behaviour: the recorded state is applied again and its level-triggered
actions re-run (announce with the same occurrence id, a failback sync resumed).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_primary import FakePrimary
from smtp_harness import TIMEOUT
from tests.support.backends import build_store

from mailstandby.admin.api import Services, create_app
from mailstandby.admin.auth import AdminAuthenticator
from mailstandby.admin.metrics import StandbyCollector, registry
from mailstandby.auth import hash_password
from mailstandby.config import AdminSettings, PrimarySettings, QueueSettings, StoreSettings
from mailstandby.core.leadership import Lead, Solo
from mailstandby.core.model import Envelope, Mode, new_queue_id
from mailstandby.directory.base import NoticeKind, User
from mailstandby.directory.static import StaticDirectory
from mailstandby.failover.coordinator import Coordinator, Effects, UserDone
from mailstandby.failover.machine import Command
from mailstandby.monitor.verdict import Verdict, Why
from mailstandby.queue.runner import QueueRunner
from mailstandby.routing import Route, Router
from mailstandby.smtp.relay import RelayConnection
from mailstandby.store.base import NewMessage
from mailstandby.store.sqlite import SQLiteStore
from mailstandby.store.sqlite_failover import SQLiteFailoverStore
from mailstandby.store.sqlite_mailbox import SQLiteMailboxStore

ALICE, BOB = "alice@corp.test", "bob@corp.test"
DOWN = Verdict(True, None, Why.PRIMARY_DOWN)
UP = Verdict(False, None, Why.HEALTHY)
DIRECTORY = StaticDirectory(["corp.test"], [User(ALICE), User(BOB)])


async def until(condition: Any) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not condition():
            await asyncio.sleep(0.005)


class Rig:
    def __init__(self, data_dir: Path, settings: StoreSettings | None = None) -> None:
        self.data_dir = data_dir
        self.settings = settings or StoreSettings()  # url set: the PostgreSQL store
        self.announced: list[tuple[NoticeKind, frozenset[str] | None, str]] = []
        self.reroutes = 0
        self.synced: list[frozenset[str] | None] = []
        self.sync_gate = asyncio.Event()
        self.sync_gate.set()

    async def open(self, *, automatic: bool = True) -> Coordinator:
        self.store = build_store(self.data_dir, self.settings)
        await self.store.open()
        self.failover_store = SQLiteFailoverStore(self.store)
        self.router = Router(DIRECTORY)

        async def announce(kind: NoticeKind, users: frozenset[str] | None, occurrence: str) -> None:
            self.announced.append((kind, users, occurrence))

        async def sync(users: frozenset[str] | None, lead: Lead, user_done: UserDone) -> int:
            self.synced.append(users)
            await self.sync_gate.wait()
            return 0

        def reroute() -> None:
            self.reroutes += 1

        effects = Effects(reroute=reroute, announce=announce, sync=sync, dns=None)
        c = Coordinator(self.failover_store, self.router, Solo(), effects, automatic=automatic)
        await c.start()
        self.coordinator = c
        return c

    async def close(self) -> None:
        await self.coordinator.stop()
        await self.store.close()


@pytest.fixture
async def rig(tmp_path: Path, store_settings: StoreSettings) -> AsyncIterator[Rig]:
    r = Rig(tmp_path, store_settings)
    yield r
    await r.close()


async def test_an_outage_is_recorded_routed_and_announced(rig: Rig) -> None:
    c = await rig.open()
    await c.observe(DOWN)
    assert c.state.mode is Mode.FAILED_OVER and rig.router.mode is Mode.FAILED_OVER
    assert rig.reroutes == 1
    assert rig.announced == [(NoticeKind.FAILOVER, None, "failover-1")]
    assert rig.router.route(ALICE).route.value == "standby"
    (t,) = await rig.failover_store.transitions()
    assert (t["from"], t["to"], t["actor"], t["seq"]) == ("normal", "failed-over", "monitor", 1)
    audit = await rig.failover_store.audit_log(action="failover.")
    assert audit[0]["actor"] == "monitor" and audit[0]["detail"] == "primary-down"


async def test_a_restart_resumes_the_recorded_state_and_announces_idempotently(rig: Rig) -> None:
    await (await rig.open()).observe(DOWN)
    await rig.close()
    c = await rig.open()
    assert c.state.mode is Mode.FAILED_OVER and c.state.seq == 1
    assert rig.router.route(BOB).route.value == "standby"  # routing follows before any delivery
    assert rig.announced == [(NoticeKind.FAILOVER, None, "failover-1")] * 2  # same occurrence: one notice


async def test_a_failback_sync_resumes_after_a_restart_and_ends_in_normal(rig: Rig) -> None:
    rig.sync_gate.clear()
    c = await rig.open()
    await c.observe(DOWN)
    await c.observe(UP)
    assert c.state.mode is Mode.FAILING_BACK
    await until(lambda: rig.synced == [None])
    assert rig.router.route(ALICE).route.value == "primary"  # new mail goes to the primary again
    await rig.close()  # the sync is interrupted
    rig.sync_gate.set()
    c = await rig.open()
    async with asyncio.timeout(TIMEOUT):
        await c.wait_for(Mode.NORMAL)
    assert rig.synced == [None, None]


async def test_the_primary_failing_during_the_sync_stops_it(rig: Rig) -> None:
    rig.sync_gate.clear()
    c = await rig.open()
    await c.observe(DOWN)
    await c.observe(UP)
    await until(lambda: rig.synced == [None])
    sync_task = c._sync_task
    assert sync_task is not None and not sync_task.done()
    await c.observe(DOWN)
    assert sync_task.cancelled()
    assert c.state.mode is Mode.FAILED_OVER and c.state.seq == 2
    assert rig.announced[-1] == (NoticeKind.FAILOVER, None, "failover-2")


async def test_manual_control_reports_but_never_acts(rig: Rig) -> None:
    c = await rig.open(automatic=False)
    assert await c.observe(DOWN) is None
    assert c.state.mode is Mode.NORMAL and rig.reroutes == 0
    done = await c.declare(Command.FAILOVER, "ops", "the monitor is right", frozenset({BOB}))
    assert done is not None and c.state.users == {BOB}
    assert rig.router.route(BOB).route.value == "standby" and rig.router.route(ALICE).route.value == "primary"


# -- the queue follows the flip -----------------------------------------------------------------
async def test_mail_queued_for_a_dead_primary_goes_to_the_standby_on_failover(tmp_path: Path) -> None:
    fake = FakePrimary()
    await fake.start()
    await fake.stop()  # the primary is gone: connections are refused
    store = SQLiteStore(tmp_path, StoreSettings())
    await store.open()
    mailboxes = SQLiteMailboxStore(store)
    router = Router(DIRECTORY)
    primary = PrimarySettings(host="127.0.0.1", port=fake.port, connect_timeout=1.0, tls="none")
    settings = QueueSettings(concurrency=2, retry_initial=3600.0)  # no retry of its own during the test
    evidence: list[tuple[bool, str]] = []
    runner = QueueRunner(
        store,
        router,
        lambda: RelayConnection(primary, "standby.corp.test"),
        settings,
        hostname="standby.corp.test",
        standby=mailboxes,
        evidence=lambda ok, why: evidence.append((ok, why)),
    )
    await runner.start()
    try:
        body = b"From: <s@ext.test>\r\nSubject: waiting\r\n\r\nbody\r\n"
        m = NewMessage(new_queue_id(), Envelope("s@ext.test", [ALICE, BOB]), body, time.time())
        runner.submit(await store.accept(m))
        await until(lambda: any(d["attempts"] for d in store.deliveries(m.id)))
        assert evidence and evidence[0][0] is False  # the refused connection is reported to the monitor
        assert {d["state"] for d in store.deliveries(m.id)} == {"queued"}

        router.apply(Mode.FAILED_OVER, None)
        runner.reroute()
        await until(lambda: not runner.messages)
        assert {(d["rcpt"], d["state"], d["route"]) for d in store.deliveries(m.id)} == {
            (ALICE, "delivered", "standby"),
            (BOB, "delivered", "standby"),
        }
        for user in (ALICE, BOB):
            snap = await mailboxes.snapshot(user, "INBOX")
            assert [meta.journaled for meta in snap.messages] == [False]
    finally:
        await runner.stop(0)
        await store.close()


# -- the admin API, in process ----------------------------------------------------------------
def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


async def test_the_admin_api_demands_credentials_and_audits_every_command(rig: Rig) -> None:
    c = await rig.open()
    await rig.failover_store.set_admin_hash("ops", hash_password("s3cret-pw-staff"), actor="test")
    auth = AdminAuthenticator(rig.failover_store, rig.failover_store, AdminSettings(max_failures=3), failure_delay=0)
    metrics = registry(StandbyCollector(c.snapshot, _health, lambda: 0, lambda: 0))

    async def notices(**filters: str | None) -> list[dict[str, Any]]:
        return [{"user": BOB, "kind": "failover", "state": "sent", **{k: v for k, v in filters.items() if v}}]

    async def ready() -> dict[str, Any]:
        return {"unreachable": [ALICE]}

    app = create_app(
        Services(c, rig.failover_store, auth, _health, lambda: 7, metrics, notifications=notices, readiness=ready)
    )
    transport = httpx.ASGITransport(app=app, client=("192.0.2.1", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="https://admin") as http:
        assert (await http.get("/api/v1/status")).status_code == 401
        good = basic("ops", "s3cret-pw-staff")
        status = (await http.get("/api/v1/status", headers=good)).json()
        assert status["failover"]["mode"] == "normal" and status["queue"]["depth"] == 7

        r = await http.post("/api/v1/failback", headers=good, json={"reason": "nothing to fail back"})
        assert r.status_code == 409
        r = await http.post("/api/v1/failover", headers=good, json={})
        assert r.status_code == 400 and "reason" in r.json()["error"]
        r = await http.post("/api/v1/failover", headers=good, content=b"x" * 70_000)
        assert r.status_code == 400
        r = await http.post("/api/v1/failover", headers=good, json={"reason": "drill", "users": ["Bob@corp.test"]})
        assert r.status_code == 200 and r.json()["failover"]["users"] == [BOB]
        assert c.state.mode is Mode.FAILED_OVER

        assert (await http.get("/api/v1/notifications", params={"user": BOB})).status_code == 401
        shown = (await http.get("/api/v1/notifications", params={"user": BOB}, headers=good)).json()
        assert shown == [{"user": BOB, "kind": "failover", "state": "sent"}]
        assert (await http.get("/api/v1/readiness", headers=good)).json() == {"unreachable": [ALICE]}
        assert (await http.get("/api/v1/sync", headers=good)).status_code == 404  # no sync configured

        for _ in range(3):
            assert (await http.get("/api/v1/status", headers=basic("ops", "wrong"))).status_code == 401
        assert (await http.get("/api/v1/status", headers=good)).status_code == 429

    audit = await rig.failover_store.audit_log()
    seen = [(a["actor"], a["action"], a["outcome"], a["peer"]) for a in audit]
    assert ("ops", "admin.failback", "refused", "192.0.2.1") in seen
    assert ("ops", "admin.failover", "bad-request", "192.0.2.1") in seen
    assert ("ops", "failover.failed-over", "ok", "192.0.2.1") in seen
    assert seen.count(("ops", "admin.login", "failed", "192.0.2.1")) == 3
    assert ("ops", "admin.login", "throttled", "192.0.2.1") in seen


def _health() -> dict[str, Any]:
    return {"primary": {"status": "up", "detail": ""}, "addresses": {}, "rounds": 1, "latency": {}}


async def test_per_user_scope_fails_each_user_back_when_their_mailbox_answers(rig: Rig) -> None:
    c = await rig.open()
    await c.observe(Verdict(True, frozenset({ALICE, BOB}), Why.ADDRESSES_DOWN, (ALICE, BOB)))
    assert c.state.mode is Mode.FAILED_OVER and c.state.users == {ALICE, BOB}
    assert rig.router.route(ALICE).route is Route.STANDBY

    await c.observe(Verdict(True, frozenset({BOB}), Why.ADDRESSES_DOWN, (BOB,)))  # alice's mailbox answers again
    assert c.state.mode is Mode.FAILED_OVER and c.state.users == {BOB}
    assert rig.router.route(ALICE).route is Route.PRIMARY and rig.router.route(BOB).route is Route.STANDBY
    await until(lambda: (NoticeKind.FAILBACK, frozenset({ALICE}), "failback-1") in rig.announced)
    assert rig.synced == [frozenset({ALICE})]  # alice's outage mail goes back; bob's stays for now

    await c.observe(UP)
    await c.wait_for(Mode.NORMAL)
    assert rig.synced[-1] == {ALICE, BOB}  # the final failback resumes anything of alice's left
    assert (NoticeKind.FAILBACK, frozenset({BOB}), "failback-1") in rig.announced
    assert [a for a in rig.announced if a[0] is NoticeKind.FAILOVER] == [
        (NoticeKind.FAILOVER, frozenset({ALICE, BOB}), "failover-1")
    ]


async def test_a_restart_resumes_the_failback_of_users_released_during_the_outage(rig: Rig) -> None:
    c = await rig.open()
    await c.observe(Verdict(True, frozenset({ALICE, BOB}), Why.ADDRESSES_DOWN, (ALICE, BOB)))
    rig.sync_gate.clear()  # alice's sync will not finish before the crash
    await c.observe(Verdict(True, frozenset({BOB}), Why.ADDRESSES_DOWN, (BOB,)))
    await until(lambda: rig.synced == [frozenset({ALICE})])
    await rig.close()

    rig.synced.clear()
    rig.sync_gate.set()
    c = await rig.open()
    assert c.state.mode is Mode.FAILED_OVER and c.state.users == {BOB}
    await until(lambda: (NoticeKind.FAILBACK, frozenset({ALICE}), "failback-1") in rig.announced)
    assert rig.synced == [frozenset({ALICE})]
