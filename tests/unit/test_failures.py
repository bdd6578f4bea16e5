"""Failures as a stable reason class plus details kept apart: ``status`` groups by class, ``failures`` lists
and exports the keys, and no email reaches INFO logs or alerts; an unchanged problem is alerted once."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from accoil_sync.config.settings import Settings
from accoil_sync.connectors import Capabilities, Change, Connector, Outcome
from accoil_sync.serve.alerts import Alerter, assess
from accoil_sync.sync.runner import RunResult, execute
from accoil_sync.sync.state import Failed, StateStore
from accoil_sync.traits import ObjectKind, TraitsEncoder
from tests.conftest import WriteConfig, write
from tests.unit.test_cli import cli

N = 40


class Rejecting:
    """Rejects every user: even keys as not found (by email), odd keys as invalid emails."""

    name = "jsonl"

    def __init__(self) -> None:
        self.capabilities = Capabilities(max_batch=10, max_concurrency=1)
        self.encoder = TraitsEncoder()

    async def ensure_schema(self) -> None:
        return None

    async def deliver(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Outcome]:
        out = []
        for c in batch:
            number = int(c.key[1:])
            if number % 2 == 0:
                out.append(
                    Outcome.reject(c.key, f"not found in HubSpot by email {c.key}@example.com", "not_found")
                )
            else:
                out.append(Outcome.reject(c.key, f"email '{c.key}@bad' is not one HubSpot accepts [bold]"))
        return out

    async def aclose(self) -> None:
        return None


def sync(settings: Settings, connector: Any) -> RunResult:
    def make(name: str, s: Settings, run_id: str) -> Connector:
        return connector  # type: ignore[no-any-return]

    return asyncio.run(execute(settings, deliver=True, connector_factory=make))


@pytest.fixture
def settings(make_settings: WriteConfig, tmp_path: Path) -> Settings:
    write(tmp_path / "users.csv", "user_id,score\n" + "".join(f"u{i},{i}\n" for i in range(N)))
    return make_settings()


def test_run_reasons_are_classes_and_no_email_reaches_info_logs_or_alerts(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="accoil_sync"):
        result = sync(settings, Rejecting())
    report = result.deliveries["jsonl"]
    assert dict(report.reasons) == {"not_found": N // 2, "invalid": N // 2}
    assert caplog.records and not any("@" in r.getMessage() for r in caplog.records)
    problem = assess(result, None, 0.05).problem
    assert problem is not None and "@" not in problem
    assert "jsonl not_found 20" in problem and "jsonl invalid 20" in problem
    # the details are kept: in the state store, per key
    store = StateStore(settings.state.path)
    reasons = {f.key: f.reason for f in store.failures()}
    store.close()
    assert reasons["u2"] == "not found in HubSpot by email u2@example.com"


def test_status_groups_by_class_and_failures_lists_and_exports_the_keys(settings: Settings) -> None:
    sync(settings, Rejecting())
    status = json.loads(cli("status", "-c", "accoil-sync.toml", "--json").stdout)
    assert sorted((c["class"], c["count"]) for c in status["classes"]) == [("invalid", 20), ("not_found", 20)]
    assert status["runs"][0]["reasons"] == {"jsonl": {"invalid": 20, "not_found": 20}}
    human = cli("status", "-c", "accoil-sync.toml")
    assert "not_found" in human.stdout and "@" not in human.stdout
    assert "(invalid" in human.stdout  # the classes break the failed counts down, not added to them

    exported = cli("failures", "-c", "accoil-sync.toml", "--class", "not_found", "--format", "csv")
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert sorted(r["key"] for r in rows) == sorted(f"u{i}" for i in range(0, N, 2))
    assert {r["class"] for r in rows} == {"not_found"} and {r["status"] for r in rows} == {"rejected"}
    assert rows[0]["reason"].startswith("not found in HubSpot by email ")

    target = Path("failing.json")
    written = cli("failures", "-c", "accoil-sync.toml", "--format", "json", "-o", str(target), "--limit", "5")
    assert written.returncode == 0 and "5 failing record(s) written" in written.stderr
    data = json.loads(target.read_text())
    assert len(data) == 5 and set(data[0]) >= {"key", "class", "reason", "attempts", "last_tried"}

    table = cli("failures", "-c", "accoil-sync.toml", "--class", "invalid")
    assert table.returncode == 0 and "u1@bad" in table.stdout  # reasons shown as text, on request

    wrong = cli("failures", "-c", "accoil-sync.toml", "--class", "nope")
    assert wrong.returncode == 2 and "--class" in wrong.stderr and "not_found" in wrong.stderr
    assert "invalid option" in wrong.stderr  # the command line's mistake, not the configuration's


def test_rows_from_before_classes_are_grouped_by_a_fallback_class(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.db")
    store.commit_batch(
        "hubspot",
        "user",
        [],
        [Failed("a", "fp", "rejected", "x@y bad"), Failed("b", "fp", "retryable", "503")],
    )
    assert sorted(store.failure_classes()) == [
        ("hubspot", "rejected", "invalid", 1),
        ("hubspot", "retryable", "vendor_error", 1),
    ]
    store.close()


async def test_an_unchanged_problem_is_alerted_once_a_changed_one_again_then_recovery(tmp_path: Path) -> None:
    from accoil_sync.sources.stage import SourceStats
    from accoil_sync.sync.engine import DeliveryReport

    posts: list[str] = []

    def webhook(request: httpx.Request) -> httpx.Response:
        posts.append(json.loads(request.content)["text"])
        return httpx.Response(200)

    def result(reasons: dict[str, int]) -> RunResult:
        out = RunResult("r", SourceStats())
        report = DeliveryReport("hubspot")
        report.counts.update({"ok": 50, "rejected": sum(reasons.values())})
        report.reasons.update(reasons)
        out.deliveries["hubspot"] = report
        return out

    store = StateStore(tmp_path / "s.db")
    alerter = Alerter(
        "https://hooks.example.com/x",
        0.05,
        store,
        client=httpx.AsyncClient(transport=httpx.MockTransport(webhook)),
    )
    await alerter.after_run("r1", result({"not_found": 10}), None)
    await alerter.after_run("r2", result({"not_found": 12}), None)  # same problem, other counts
    assert len(posts) == 1 and "hubspot not_found 10" in posts[0]
    await alerter.after_run("r3", result({"not_found": 12, "conflict": 5}), None)  # a new class
    assert len(posts) == 2 and "conflict" in posts[1]
    await alerter.after_run("r4", result({}), None)
    await alerter.after_run("r5", result({}), None)
    assert len(posts) == 3 and "recovered" in posts[2]
    await alerter.after_run("r6", result({"not_found": 10}), None)  # back again after recovering: posted
    assert len(posts) == 4
    await alerter.aclose()
    store.close()


def test_per_request_lines_are_debug_only() -> None:
    from accoil_sync import logs

    logs.setup("INFO", "json", stream=io.StringIO())
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert logging.getLogger("accoil_sync").isEnabledFor(logging.INFO)
    logs.setup("DEBUG", "json", stream=io.StringIO())
    assert logging.getLogger("httpx").isEnabledFor(logging.DEBUG)
