"""Rejections that can heal are re-checked on later runs, on a back-off and within a budget, so a record
created in the CRM is picked up without --full-refresh; --retry-rejected re-checks every rejection now."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from accoil_sync.config.settings import Settings
from accoil_sync.connectors import Capabilities, Change, Connector, Outcome
from accoil_sync.sync.runner import RunResult, execute
from accoil_sync.sync.state import StateStore
from accoil_sync.traits import ObjectKind, TraitsEncoder
from tests.conftest import WriteConfig, write


class Crm:
    """Updates only the keys that exist in it; the others are rejected as ``not_found`` (or ``invalid``
    for the keys in ``invalid``)."""

    name = "jsonl"

    def __init__(self, existing: set[str], invalid: frozenset[str] = frozenset()) -> None:
        self.capabilities = Capabilities(max_batch=50, max_concurrency=1)
        self.encoder = TraitsEncoder()
        self.existing = existing
        self.invalid = invalid
        self.sent: list[str] = []

    async def ensure_schema(self) -> None:
        return None

    async def deliver(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Outcome]:
        self.sent += [c.key for c in batch]
        return [
            Outcome.ok(c.key, f"id-{c.key}")
            if c.key in self.existing
            else Outcome.reject(c.key, f"email '{c.key}@x' is not valid")
            if c.key in self.invalid
            else Outcome.reject(c.key, f"no contact with email {c.key}@example.com", "not_found")
            for c in batch
        ]

    async def aclose(self) -> None:
        return None


def sync(settings: Settings, crm: Crm, **kw: object) -> RunResult:
    crm.sent = []

    def make(name: str, s: Settings, run_id: str) -> Connector:
        return crm

    return asyncio.run(execute(settings, deliver=True, connector_factory=make, **kw))  # type: ignore[arg-type]


def age(settings: Settings, hours: float, keys: Sequence[str] | None = None) -> None:
    """Move the last attempt of rejected records ``hours`` into the past (the clock, not the test, waits)."""
    db = sqlite3.connect(settings.state.path)
    db.execute(
        "UPDATE records SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', julianday(substr(updated_at, 1, 19)) "
        "- ? / 24.0) WHERE status = 'rejected' AND (? IS NULL OR key IN (SELECT value FROM json_each(?)))",
        (hours, None if keys is None else 1, None if keys is None else json.dumps(list(keys))),
    )
    db.commit()
    db.close()


@pytest.fixture
def settings(make_settings: WriteConfig, tmp_path: Path) -> Settings:
    write(tmp_path / "users.csv", "user_id,score\n" + "".join(f"u{i},{i}\n" for i in range(1, 7)))
    return make_settings()


def test_a_record_created_in_the_crm_is_picked_up_after_the_back_off(settings: Settings) -> None:
    crm = Crm({"u1", "u2", "u3", "u4"})
    first = sync(settings, crm)
    assert sorted(crm.sent) == [f"u{i}" for i in range(1, 7)] and first.exit_code == 1
    crm.existing |= {"u5"}  # someone creates u5 in the CRM; the metrics do not change
    sync(settings, crm)
    assert crm.sent == []  # within the first hour's back-off: nothing re-checked
    age(settings, 1.5)
    result = sync(settings, crm)
    assert sorted(crm.sent) == ["u5", "u6"]
    assert result.plans["jsonl"].counts[ObjectKind.USER].rechecking == 2
    store = StateStore(settings.state.path)
    assert [(f.key, f.attempts) for f in store.failures()] == [("u6", 2)]
    store.close()
    age(settings, 1.5)  # u6 failed twice: its next re-check is due 2 h after the last one
    sync(settings, crm)
    assert crm.sent == []
    age(settings, 1)
    sync(settings, crm)
    assert crm.sent == ["u6"]


def test_the_budget_takes_the_oldest_attempts_first_and_invalid_ones_wait_for_a_change(
    make_settings: WriteConfig, tmp_path: Path
) -> None:
    write(tmp_path / "users.csv", "user_id,score\n" + "".join(f"u{i},{i}\n" for i in range(1, 7)))
    settings = make_settings(extra="recheck_per_run = 2\n")  # appended to [destinations.jsonl]
    crm = Crm(set(), invalid=frozenset({"u6"}))
    sync(settings, crm)
    age(settings, 5)
    age(settings, 1, ["u3", "u4"])  # tried 6 h ago, the others 5 h ago: u3 and u4 are the oldest
    sync(settings, crm)
    assert sorted(crm.sent) == ["u3", "u4"]  # two, the oldest attempts; u6 (invalid) is never re-checked
    age(settings, 24)
    sync(settings, crm)
    assert sorted(crm.sent) == ["u1", "u2"]  # then the next oldest (u3/u4 were tried last)


def test_retry_rejected_re_checks_every_rejection_now(settings: Settings) -> None:
    crm = Crm({"u1"}, invalid=frozenset({"u2"}))
    sync(settings, crm)
    crm.existing |= {"u2", "u3"}
    result = sync(settings, crm, retry_rejected=True)
    assert sorted(crm.sent) == ["u2", "u3", "u4", "u5", "u6"]
    assert result.deliveries["jsonl"].counts["ok"] == 2
    sync(settings, crm)
    assert crm.sent == []  # back to the back-off
