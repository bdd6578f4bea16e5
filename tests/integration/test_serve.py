"""``serve``: health and readiness, metrics, the trigger API, the sync lease, graceful shutdown, alerts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from accoil_sync.config.settings import Settings
from accoil_sync.connectors import build_connector
from accoil_sync.connectors.base import Capabilities, Change, Connector, Outcome
from accoil_sync.errors import DestinationUnavailable
from accoil_sync.serve.alerts import Alerter
from accoil_sync.serve.app import create_app
from accoil_sync.serve.scheduler import Busy, Scheduler, Started
from accoil_sync.sync.lease import Lease
from accoil_sync.sync.runner import STOPPED_AT_ONCE
from accoil_sync.sync.state import StateStore
from accoil_sync.traits.encoders import Encoder, TraitsEncoder
from accoil_sync.traits.names import ObjectKind
from tests.conftest import WriteConfig

TOKEN = "trigger-token-for-tests"


class Scripted:
    """A destination that takes ``delay`` seconds per batch of two and can be told to refuse auth."""

    name = "jsonl"

    def __init__(self, delay: float = 0.0, unavailable: bool = False) -> None:
        self.capabilities = Capabilities(max_batch=2, max_concurrency=1)
        self.encoder: Encoder = TraitsEncoder()
        self.delay = delay
        self.unavailable = unavailable
        self.acked: list[str] = []
        self.started = asyncio.Event()

    async def ensure_schema(self) -> None:
        return None

    async def deliver(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Outcome]:
        self.started.set()
        if self.unavailable:
            raise DestinationUnavailable("401: token revoked")
        await asyncio.sleep(self.delay)
        self.acked += [c.key for c in batch]
        return [Outcome.ok(c.key) for c in batch]

    async def aclose(self) -> None:
        return None


def factory(connector: Scripted) -> Any:
    def make(name: str, settings: Settings, run_id: str) -> Connector:
        return connector if name == "jsonl" else build_connector(name, settings, run_id)

    return make


@pytest.fixture
def settings(examples: object, make_settings: WriteConfig, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("ACCOIL_SYNC_SERVE__TRIGGER_TOKEN", TOKEN)
    monkeypatch.setenv("ACCOIL_SYNC_SERVE__HUBSPOT_CLIENT_SECRET", "s3cret")
    return make_settings(users="examples/users.csv", accounts="examples/accounts.csv")


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve")


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def wait_for(scheduler: Scheduler) -> None:
    assert scheduler.current is not None
    await asyncio.wait_for(asyncio.shield(scheduler.current), 30)


async def test_health_readiness_and_metrics(settings: Settings) -> None:
    async with client(create_app(settings)) as c:
        assert (await c.get("/healthz")).json() == {"status": "ok"}
        not_ready = await c.get("/readyz")
        assert not_ready.status_code == 503
        assert "no state store yet (run a sync first)" in not_ready.json()["problems"]
    StateStore(settings.state.path).close()
    async with client(create_app(settings)) as c:
        assert (await c.get("/readyz")).status_code == 200
        await c.get("/card/crm?associatedObjectType=CONTACT")  # unsigned: counted as a 401
        metrics = (await c.get("/metrics")).text
    assert 'accoil_sync_card_requests_total{endpoint="crm",status="401"}' in metrics
    assert "accoil_sync_card_request_duration_seconds_bucket" in metrics
    assert "accoil_sync_runs_total" in metrics or "# HELP accoil_sync_runs" in metrics


async def test_trigger_needs_the_bearer_token_and_refuses_a_second_run(settings: Settings) -> None:
    slow = Scripted(delay=0.2)
    scheduler = Scheduler(settings, connector_factory=factory(slow))
    async with client(create_app(settings, scheduler)) as c:
        assert (await c.post("/syncs/trigger")).status_code == 401
        wrong = await c.post("/syncs/trigger", headers=bearer("nope"))
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Bearer")
        started = await c.post("/syncs/trigger", headers=bearer())
        assert started.status_code == 202
        run_id = started.json()["run_id"]
        again = await c.post("/syncs/trigger", headers=bearer())
        assert again.status_code == 409 and run_id in again.json()["detail"]
        await wait_for(scheduler)
        status = (await c.get(f"/syncs/{run_id}", headers=bearer())).json()
        assert (await c.get("/syncs/nope", headers=bearer())).status_code == 404
    assert status["status"] == "partial"  # the example's three bad rows
    assert status["counts"]["jsonl"]["ok"] == 11 == len(slow.acked)
    await scheduler.shutdown(0)


async def test_the_trigger_api_is_off_without_a_token(examples: object, make_settings: WriteConfig) -> None:
    settings = make_settings(users="examples/users.csv")
    async with client(create_app(settings)) as c:
        assert (await c.post("/syncs/trigger", headers=bearer())).status_code == 404


def test_the_lease_lets_one_holder_in_and_expires(tmp_path: Any) -> None:
    store = StateStore(tmp_path / "s.db")
    a, b = Lease(store, "replica-a", ttl=0.3), Lease(store, "replica-b", ttl=0.3)
    assert a.acquire() and not b.acquire()
    assert a.renew() and not b.renew()
    assert b.holder_now() == "replica-a"
    import time

    time.sleep(0.35)  # replica-a died without releasing
    assert b.acquire() and not a.renew()
    b.release()
    assert a.acquire()
    store.close()


async def test_a_second_replica_does_not_start_while_the_first_holds_the_lease(settings: Settings) -> None:
    first = Scheduler(settings, connector_factory=factory(Scripted(delay=0.2)), holder="replica-a")
    second = Scheduler(settings, connector_factory=factory(Scripted()), holder="replica-b")
    assert isinstance(first.trigger("api"), Started)
    await asyncio.sleep(0.05)
    outcome = second.trigger("api")
    assert isinstance(outcome, Busy) and "replica-a" in outcome.reason
    await wait_for(first)
    assert isinstance(second.trigger("api"), Started)
    await wait_for(second)
    await first.shutdown(0)
    await second.shutdown(0)


async def test_graceful_shutdown_finishes_the_batch_in_flight_and_the_next_run_sends_the_rest(
    settings: Settings,
) -> None:
    slow = Scripted(delay=0.3)
    scheduler = Scheduler(settings, connector_factory=factory(slow))
    assert isinstance(scheduler.trigger("api"), Started)
    await slow.started.wait()
    await scheduler.shutdown(grace=10)
    assert slow.acked and len(slow.acked) < 11  # the batch in flight finished; no new batch began
    store = StateStore(settings.state.path)
    (last,) = store.runs(limit=1)
    committed = {k for part, rows in store.fingerprints("jsonl", "user") for k, *_ in rows} | {
        k for part, rows in store.fingerprints("jsonl", "account") for k, *_ in rows
    }
    store.close()
    assert last.status == "interrupted"
    assert committed == set(slow.acked)  # acknowledged == committed
    rest = Scripted()
    after = Scheduler(settings, connector_factory=factory(rest))
    after.trigger("api")
    await wait_for(after)
    await after.shutdown(0)
    assert sorted(slow.acked + rest.acked) == sorted(set(slow.acked + rest.acked))  # nothing twice
    assert len(slow.acked) + len(rest.acked) == 11  # nothing lost


async def test_shutdown_past_the_grace_abandons_the_batch_and_commits_nothing_of_it(
    settings: Settings,
) -> None:
    stuck = Scripted(delay=30)
    scheduler = Scheduler(settings, connector_factory=factory(stuck))
    scheduler.trigger("api")
    await stuck.started.wait()
    await scheduler.shutdown(grace=0.1)
    store = StateStore(settings.state.path)
    committed = [k for _, rows in store.fingerprints("jsonl", "user") for k, *_ in rows]
    (last,) = store.runs(limit=1)
    store.close()
    assert committed == [] and stuck.acked == []
    assert last.status == "interrupted" and last.message == STOPPED_AT_ONCE


async def test_a_cron_schedule_starts_runs(examples: object, make_settings: WriteConfig) -> None:
    settings = make_settings(users="examples/users.csv", extra='[serve]\nschedule = "* * * * * *"\n')
    done = Scripted()
    scheduler = Scheduler(settings, connector_factory=factory(done))
    scheduler.start()
    for _ in range(300):
        if scheduler.last:
            break
        await asyncio.sleep(0.01)
    await scheduler.shutdown(5)
    assert scheduler.last["status"] == "partial"  # the example's bad rows; everything valid was sent
    assert len(done.acked) == 7


async def test_alerts_on_failure_and_once_on_recovery(settings: Settings) -> None:
    posts: list[dict[str, Any]] = []

    def webhook(request: httpx.Request) -> httpx.Response:
        posts.append(json.loads(request.content))
        return httpx.Response(200, text="ok")

    async def run(connector: Scripted) -> None:
        store = StateStore(settings.state.path)
        alerter = Alerter(
            "https://hooks.example.com/T0/B0/secret",
            0.05,
            store,
            client=httpx.AsyncClient(transport=httpx.MockTransport(webhook)),
        )
        scheduler = Scheduler(settings, alerter=alerter, connector_factory=factory(connector))
        scheduler.trigger("schedule")
        await wait_for(scheduler)
        await scheduler.shutdown(0)
        store.close()

    await run(Scripted(unavailable=True))
    assert len(posts) == 1 and "401: token revoked" in posts[0]["text"]
    await run(Scripted())  # recovers (3 invalid source rows are not rejected records)
    assert len(posts) == 2 and "recovered" in posts[1]["text"]
    await run(Scripted())  # still healthy: no message
    assert len(posts) == 2


def test_rejected_share_above_the_threshold_is_an_alert() -> None:
    from accoil_sync.serve.alerts import assess
    from accoil_sync.sources.stage import SourceStats
    from accoil_sync.sync.engine import DeliveryReport
    from accoil_sync.sync.runner import RunResult

    result = RunResult("r1", SourceStats())
    report = DeliveryReport("hubspot")
    report.counts.update({"ok": 90, "rejected": 10})
    report.reasons.update({"invalid": 10})
    result.deliveries["hubspot"] = report
    assert assess(result, None, 0.05).problem == (
        "10 of 100 records rejected (10.0%, threshold 5.0%): hubspot invalid 10; `accoil-sync failures` lists them"
    )
    assert assess(result, None, 0.2).problem is None


async def test_a_sync_in_its_own_process_reports_its_result_and_counters(
    settings: Settings, served: str, make_settings: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve`` runs syncs in a spawned child (off the card's event loop); what the child counted still
    reaches the parent's /metrics, and the run ledger and alerts see its result."""
    from accoil_sync.serve.child import run_in_child
    from accoil_sync.telemetry import API_CALLS, RECORDS
    from tests.integration.conftest import destination_section

    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__SEGMENT__WRITE_KEY", "wk_test_key")
    settings = make_settings(
        users="examples/users.csv",
        accounts="examples/accounts.csv",
        extra=destination_section(served, "segment"),
    )
    calls_before = API_CALLS.labels("segment")._value.get()
    ok_before = RECORDS.labels("segment", "ok")._value.get()
    alerts: list[tuple[str, str | None]] = []

    class Recording(Alerter):
        async def after_run(self, run_id: str, result: Any, error: str | None) -> None:
            alerts.append((result.status if result else "none", error))

    scheduler = Scheduler(settings, executor=run_in_child, alerter=Recording(None, 0.5, None))  # type: ignore[arg-type]
    async with client(create_app(settings, scheduler)) as c:
        started = await c.post("/syncs/trigger", headers=bearer())
        run_id = started.json()["run_id"]
        assert (await c.get("/healthz")).status_code == 200  # answered while the child works
        await wait_for(scheduler)
        status = (await c.get(f"/syncs/{run_id}", headers=bearer())).json()
        metrics = (await c.get("/metrics")).text
    await scheduler.shutdown(0)
    assert status["status"] == "partial" and status["counts"]["segment"]["ok"] == 11, status
    assert API_CALLS.labels("segment")._value.get() - calls_before >= 1  # counted in the child, merged here
    assert RECORDS.labels("segment", "ok")._value.get() - ok_before == 11  # once, not twice
    assert 'accoil_sync_api_calls_total{vendor="segment"}' in metrics
    assert alerts == [("partial", None)]


async def test_a_child_sync_that_fails_is_reported_not_raised(
    settings: Settings, make_settings: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    from accoil_sync.serve.child import run_in_child

    settings = make_settings(users="examples/missing.csv")
    scheduler = Scheduler(settings, executor=run_in_child)
    assert isinstance(scheduler.trigger("api"), Started)
    await wait_for(scheduler)
    await scheduler.shutdown(0)
    assert scheduler.last["status"] == "failed"
    failed = [r for r in caplog.records if "failed" in r.getMessage()]
    assert failed and "missing.csv" in failed[0].getMessage() and not failed[0].exc_info
