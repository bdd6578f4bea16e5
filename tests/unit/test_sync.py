"""Planner, delivery engine and state: field-level diffs, nothing for unchanged objects, failures re-planned,
and a crash between acknowledgement and commit re-plans only what was not committed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from accoil_sync.config.settings import Settings
from accoil_sync.connectors import Capabilities, Change, Connector, Outcome
from accoil_sync.errors import DestinationUnavailable
from accoil_sync.sync.runner import RunResult, execute
from accoil_sync.sync.state import MIGRATIONS, Acknowledged, Failed, StateStore
from accoil_sync.traits import ObjectKind, TraitsEncoder
from tests.conftest import WriteConfig, write

HEADER = "user_id,score,segments,activation\n"


class SimulatedKill(BaseException):
    """Stands in for kill -9: nothing after it runs in the sync, not even exception handlers."""


class FakeConnector:
    """Records every batch; rejects keys in ``reject``, fails retryably keys in ``flaky``."""

    def __init__(self, max_batch: int = 2) -> None:
        self.name = "jsonl"
        self.capabilities = Capabilities(max_batch=max_batch, max_concurrency=1)
        self.encoder = TraitsEncoder()
        self.batches: list[list[Change]] = []
        self.reject: set[str] = set()
        self.flaky: set[str] = set()
        self.crash_after_batches: int | None = None
        self.unavailable_after: int | None = None

    async def ensure_schema(self) -> None:
        return None

    async def deliver(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Outcome]:
        if self.unavailable_after is not None and len(self.batches) >= self.unavailable_after:
            raise DestinationUnavailable("401 Unauthorized: token revoked", status=401)
        self.batches.append(list(batch))
        if self.crash_after_batches is not None and len(self.batches) > self.crash_after_batches:
            # The destination has the batch, the process dies before the state commit.
            raise SimulatedKill("between acknowledgement and commit")
        out = []
        for c in batch:
            if c.key in self.reject:
                out.append(Outcome.reject(c.key, "INVALID_EMAIL: bad email"))
            elif c.key in self.flaky:
                out.append(Outcome.retry(c.key, "503 Service Unavailable"))
            else:
                out.append(Outcome.ok(c.key, dest_id=f"id-{c.key}"))
        return out

    async def aclose(self) -> None:
        return None

    @property
    def sent(self) -> list[Change]:
        return [c for b in self.batches for c in b]


def run(settings: Settings, fake: FakeConnector, deliver: bool = True, **kw: object) -> RunResult:
    def factory(name: str, s: Settings, run_id: str) -> Connector:
        return fake

    return asyncio.run(execute(settings, deliver=deliver, connector_factory=factory, **kw))  # type: ignore[arg-type]


@pytest.fixture
def users(tmp_path: Path) -> Path:
    return write(
        tmp_path / "users.csv", HEADER + "u1,10,A;B,50\nu2,20,A,60\nu3,30,,70\nu4,40,B,80\nu5,50,,90\n"
    )


def test_first_sync_then_unchanged_rerun_sends_nothing(users: Path, make_settings: WriteConfig) -> None:
    settings = make_settings()
    fake = FakeConnector()
    first = run(settings, fake)
    assert first.exit_code == 0
    assert sorted(c.key for c in fake.sent) == ["u1", "u2", "u3", "u4", "u5"]
    assert all(len(b) <= 2 for b in fake.batches)
    again = FakeConnector()
    second = run(settings, again)
    assert again.sent == []
    counts = second.plans["jsonl"].counts[ObjectKind.USER]
    assert (counts.unchanged, counts.writes) == (5, 0)


def test_planner_emits_field_level_diffs(users: Path, make_settings: WriteConfig) -> None:
    settings = make_settings()
    run(settings, FakeConnector())
    write(users, HEADER + "u1,10,A;B,50\nu2,25,A,60\nu3,30,C,70\nu4,40,B,80\nu5,50,,90\n")
    result = run(settings, FakeConnector(), deliver=False)
    changes = {c.key: c for c in result.samples["jsonl"]}
    assert set(changes) == {"u2", "u3"}
    assert changes["u2"].fields == {"Accoil_Default_Score": 25}
    assert changes["u2"].previous == {"Accoil_Default_Score": 20}
    assert changes["u3"].fields == {"Accoil_Default_Segments": ["C"]}
    assert result.plans["jsonl"].counts[ObjectKind.USER].changed == 2


def test_an_object_with_several_profiles_is_planned_once_with_every_profiles_traits(
    tmp_path: Path, make_settings: WriteConfig
) -> None:
    write(
        tmp_path / "users.csv",
        "user_id,score_name,score\nu1,Default,10\nu2,Default,20\nu1,product usage,33\nu3,product usage,5\n",
    )
    profiles = '[[profiles]]\nname = "Default"\n[[profiles]]\nname = "product usage"\n'
    settings = make_settings(extra=profiles)
    fake = FakeConnector(max_batch=10)
    run(settings, fake)
    sent = {c.key: c.fields for c in fake.sent}
    assert len(fake.sent) == 3
    assert sent["u1"] == {"Accoil_Default_Score": 10, "Accoil_ProductUsage_Score": 33}
    assert sent["u2"] == {"Accoil_Default_Score": 20} and sent["u3"] == {"Accoil_ProductUsage_Score": 5}


def test_removed_metric_is_cleared_and_removal_policy(users: Path, make_settings: WriteConfig) -> None:
    settings = make_settings(extra='removal = "clear"\n')
    run(settings, FakeConnector())
    write(users, HEADER + "u1,10,A;B,\nu2,20,A,60\n")
    # Three of five gone is a source much smaller than last time: nothing is removed until allowed.
    guarded = FakeConnector()
    held = run(settings, guarded)
    assert [(c.key, c.op, c.fields) for c in guarded.sent] == [
        ("u1", "upsert", {"Accoil_Default_Activation": None})  # an emptied field is still cleared
    ]
    assert "40% of the 5 at the last accepted run" in held.withheld["user"]
    assert held.exit_code == 5 and held.kept == {"jsonl": 3} and not held.holds
    fake = FakeConnector()
    run(settings, fake, allow_mass_change=True)
    by_key = {c.key: c for c in fake.sent}
    assert {k for k, c in by_key.items() if c.op == "clear"} == {"u3", "u4", "u5"}
    assert by_key["u3"].fields == {"Accoil_Default_Score": None, "Accoil_Default_Activation": None}
    quiet = FakeConnector()
    run(settings, quiet)
    assert quiet.sent == []


def test_keep_policy_leaves_removed_objects_alone(users: Path, make_settings: WriteConfig) -> None:
    settings = make_settings()
    run(settings, FakeConnector())
    write(users, HEADER + "u1,10,A;B,50\n")
    fake = FakeConnector()
    run(settings, fake)
    assert fake.sent == []


def test_rejected_waits_for_change_retryable_is_replanned(users: Path, make_settings: WriteConfig) -> None:
    settings = make_settings()
    fake = FakeConnector()
    fake.reject, fake.flaky = {"u2"}, {"u3"}
    result = run(settings, fake)
    assert result.exit_code == 1
    assert result.deliveries["jsonl"].reasons == {"invalid": 1, "vendor_error": 1}
    second = FakeConnector()
    result = run(settings, second)
    assert [c.key for c in second.sent] == ["u3"]  # the retryable one only
    counts = result.plans["jsonl"].counts[ObjectKind.USER]
    assert (counts.still_rejected, counts.retrying) == (1, 1)
    # Nothing failed in this run, but the destination still lacks u2's values: not a clean exit -- on
    # every run until it is dealt with -- though the run itself settled (serve's last-success gauge).
    quiet = FakeConnector()
    result = run(settings, quiet)
    assert quiet.sent == [] and not result.deliveries["jsonl"].failed
    assert result.exit_code == 1 and result.status == "partial" and result.settled
    # A team that knows these records (a duplicate email upstream, say) can leave them to `failures`.
    relaxed = settings.model_copy(
        update={"safety": settings.safety.model_copy(update={"fail_on_old_rejections": False})}
    )
    assert run(relaxed, FakeConnector()).exit_code == 0
    write(users, HEADER + "u1,10,A;B,50\nu2,21,A,60\nu3,30,,70\nu4,40,B,80\nu5,50,,90\n")
    third = FakeConnector()
    result = run(settings, third)
    assert [c.key for c in third.sent] == ["u2"]  # its metrics changed: tried again
    assert result.exit_code == 0 and result.settled
    store = StateStore(settings.state.path)
    assert store.failure_counts() == []
    store.close()


def test_crash_between_ack_and_commit_replans_only_uncommitted(
    users: Path, make_settings: WriteConfig
) -> None:
    settings = make_settings()
    fake = FakeConnector(max_batch=2)
    fake.crash_after_batches = 1
    with pytest.raises(SimulatedKill):
        run(settings, fake)
    committed = {c.key for c in fake.batches[0]}
    delivered_not_committed = {c.key for c in fake.batches[1]}
    resume = FakeConnector(max_batch=2)
    run(settings, resume)
    resent = {c.key for c in resume.sent}
    assert resent == {"u1", "u2", "u3", "u4", "u5"} - committed
    assert delivered_not_committed <= resent
    # the re-sent changes carry the same delivery version, so idempotency keys repeat
    first_versions = {c.key: c.version for c in fake.batches[1]}
    assert all(c.version == first_versions.get(c.key, c.version) for c in resume.sent)
    store = StateStore(settings.state.path)
    statuses = [r.status for r in store.runs()]
    store.close()
    assert statuses == ["ok", "failed"]


def test_unavailable_destination_stops_with_exit_3_and_resumes(
    users: Path, make_settings: WriteConfig
) -> None:
    settings = make_settings()
    fake = FakeConnector(max_batch=2)
    fake.unavailable_after = 1
    result = run(settings, fake)
    assert result.exit_code == 3
    assert "401" in (result.deliveries["jsonl"].stopped or "")
    resume = FakeConnector(max_batch=2)
    assert run(settings, resume).exit_code == 0
    assert {c.key for c in resume.sent} == {"u1", "u2", "u3", "u4", "u5"} - {c.key for c in fake.sent}


def test_full_refresh_ignores_state_and_limit_caps_writes(users: Path, make_settings: WriteConfig) -> None:
    settings = make_settings()
    limited = FakeConnector()
    result = run(settings, limited, limit=3)
    assert len(limited.sent) == 3 and result.deliveries["jsonl"].limited == 2
    rest = FakeConnector()
    run(settings, rest)
    assert len(rest.sent) == 2
    full = FakeConnector()
    run(settings, full, full_refresh=True)
    assert len(full.sent) == 5
    assert all(len(c.fields) == 3 or c.key in {"u3", "u5"} for c in full.sent)


def test_plan_order_is_deterministic(users: Path, make_settings: WriteConfig, tmp_path: Path) -> None:
    write(tmp_path / "accounts.csv", "account_id,score\nb,1\na,2\n")
    settings = make_settings(accounts="accounts.csv")
    fake = FakeConnector(max_batch=100)
    run(settings, fake)
    assert [(c.kind.value, c.key) for c in fake.sent] == [
        ("account", "a"),
        ("account", "b"),
        ("user", "u1"),
        ("user", "u2"),
        ("user", "u3"),
        ("user", "u4"),
        ("user", "u5"),
    ]


def test_jsonl_destination_and_sync_log(users: Path, make_settings: WriteConfig) -> None:
    settings = make_settings()
    result = asyncio.run(execute(settings, deliver=True))
    assert result.exit_code == 0
    lines = [json.loads(line) for line in Path("out/deliveries.jsonl").read_text().splitlines()]
    assert [line["key"] for line in lines] == ["u1", "u2", "u3", "u4", "u5"]
    assert lines[0]["fields"]["Accoil_Default_Segments"] == ["A", "B"]
    (log,) = Path("state/synclog").glob("run-*.parquet")
    table = pq.read_table(log)
    assert table.num_rows == 5
    assert set(table.column("outcome").to_pylist()) == {"ok"}
    assert table.column("changed_fields").to_pylist()[0] == [
        "Accoil_Default_Activation",
        "Accoil_Default_Score",
        "Accoil_Default_Segments",
    ]
    # Records changing different sets of fields each keep their own, sorted.
    logged = dict(
        zip(table.column("key").to_pylist(), table.column("changed_fields").to_pylist(), strict=True)
    )
    assert logged == {line["key"]: sorted(line["fields"]) for line in lines}
    assert len({tuple(v) for v in logged.values()}) == 2


def test_state_store_commit_is_all_or_nothing(tmp_path: Path) -> None:
    from accoil_sync.sync.state import Acknowledged

    store = StateStore(tmp_path / "s.db")
    assert store.schema_version == len(MIGRATIONS)
    with pytest.raises(RuntimeError), store.transaction() as db:
        db.execute(
            "INSERT INTO runs (run_id, command, started_at, status) VALUES ('x', 'sync', 'now', 'running')"
        )
        raise RuntimeError("killed mid-transaction")
    assert store.runs() == []
    store.commit_batch("d", "user", [Acknowledged("k", "fp", {"a": 1}, "id1")], [])
    store.commit_batch("d", "user", [Acknowledged("k", "fp2", {"b": 2}, None)], [])
    (record,) = store.load("d", "user", ["k"]).values()
    assert (record.fields, record.dest_id, record.version) == ({"a": 1, "b": 2}, "id1", 2)
    store.close()


def test_state_store_keeps_values_exactly_and_records_failures(tmp_path: Path) -> None:
    """A batch's rows reach SQLite as one JSON array: floats, big integers, escapes and non-BMP text come
    back exactly, the stored text is sorted-key JSON, a cleared (None) field is dropped, and failures count
    their attempts."""
    import orjson

    from accoil_sync.sync.state import Acknowledged, Failed

    tricky = {
        "z": 0.1,
        "a": 1e-7,
        "big": 12345678901234567,
        "huge": 1.5e300,
        "tiny": 5e-324,
        "text": 'h\u00e9llo "q" \\ \n \u2028 \U0001f600',
        "list": ["x", "y"],
        "gone": None,
    }
    store = StateStore(tmp_path / "s.db")
    store.commit_batch("d", "user", [Acknowledged("k1", "fp", tricky, None, replace=True)], [])
    store.commit_batch("d", "user", [], [Failed("k2", "fp2", "retryable", "503")])
    store.commit_batch("d", "user", [], [Failed("k2", "fp2", "rejected", "400 bad")])
    kept = {k: v for k, v in tricky.items() if v is not None}
    (text,) = store.db.execute("SELECT fields FROM records WHERE key = 'k1'").fetchone()
    assert text == orjson.dumps(kept, option=orjson.OPT_SORT_KEYS).decode()
    assert store.load("d", "user", ["k1"])["k1"].fields == kept
    failed = store.db.execute(
        "SELECT status, failed_fingerprint, last_error, attempts FROM records WHERE key = 'k2'"
    ).fetchone()
    assert failed == ("rejected", "fp2", "400 bad", 2)
    store.close()


def test_a_version_1_store_migrates_forward_and_keeps_its_records(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0])
    db.execute(
        "INSERT INTO records (destination, kind, key, fingerprint, fields, updated_at) "
        "VALUES ('hubspot', 'user', 'u1', 'abc', '{}', 'now')"
    )
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    store = StateStore(path)
    try:
        assert store.schema_version == len(MIGRATIONS)
        assert [r for _, r in store.fingerprints("hubspot", "user")] == [[("u1", "abc")]]
        store.set_fact("alert_open", "run-1")
        assert store.get_fact("alert_open") == "run-1"
    finally:
        store.close()


def test_an_objects_rows_stay_together_across_fetches_and_chunks() -> None:
    """The planner reads one row per staged profile row; an object's rows must become one candidate even
    when a fetch or a chunk boundary falls between them."""
    from accoil_sync.sync.planner import _objects

    class Cursor:
        def __init__(self, rows: list[tuple[object, ...]]) -> None:
            self.rows = rows

        def fetchmany(self, size: int) -> list[tuple[object, ...]]:
            out, self.rows = self.rows[:size], self.rows[size:]
            return out

    keys = ["a", "b", "b", "c", "d", "d", "d", "e"]
    rows = [(k, "fp", False, True, None, f"{k}{n}") for n, k in enumerate(keys)]
    chunks = list(_objects(Cursor(rows), 2, single=False))
    assert [len(c) for c in chunks] == [2, 2, 1]
    got = [(row[0], docs) for chunk in chunks for row, docs in chunk]
    assert got == [
        ("a", ["a0"]),
        ("b", ["b1", "b2"]),
        ("c", ["c3"]),
        ("d", ["d4", "d5", "d6"]),
        ("e", ["e7"]),
    ]
    # One profile: one staged row per key, taken as it comes (and the same as merging would give).
    unique = [(k, "fp", False, True, None, f"{k}0") for k in "abcde"]
    fast = [(row[0], docs) for chunk in _objects(Cursor(unique), 2, single=True) for row, docs in chunk]
    merged = [(row[0], docs) for chunk in _objects(Cursor(unique), 2, single=False) for row, docs in chunk]
    assert fast == merged == [(k, [f"{k}0"]) for k in "abcde"]


def test_engine_bounds_requests_in_flight_and_batches_awaiting_commit(tmp_path: Path) -> None:
    """A request slot is freed once the destination answers, so sending goes on while commits wait -- but
    never more than ``max_concurrency`` requests at once nor twice that many answered-but-uncommitted
    batches, however slow the state store is; and every batch is committed before the run returns."""
    from accoil_sync.sync.engine import Engine
    from accoil_sync.sync.synclog import SyncLog

    class Slow(FakeConnector):
        def __init__(self) -> None:
            super().__init__(max_batch=1)
            self.capabilities = Capabilities(max_batch=1, max_concurrency=2)
            self.in_flight = self.most_in_flight = 0

        async def deliver(self, kind: ObjectKind, batch: Sequence[Change]) -> list[Outcome]:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            await asyncio.sleep(0.001)
            self.in_flight -= 1
            return await super().deliver(kind, batch)

    state = StateStore(tmp_path / "state.db")
    engine = Engine(Slow(), state, SyncLog(tmp_path / "log", "r1"), "r1")
    answered: list[str] = []
    committed: list[str] = []
    most_waiting = 0
    real_commit = engine.committer.commit

    async def slow_commit(
        destination: str,
        kind: str,
        acked: list[Acknowledged],
        failed: list[Failed],
        lines: list[tuple[object, ...]] | None = None,
    ) -> None:
        nonlocal most_waiting
        answered.extend(a.key for a in acked)
        most_waiting = max(most_waiting, len(answered) - len(committed))
        await asyncio.sleep(0.01)  # a state store ten times slower than the destination
        await real_commit(destination, kind, acked, failed, lines)
        committed.extend(a.key for a in acked)

    engine.committer.commit = slow_commit  # type: ignore[method-assign,assignment]
    changes = [
        Change("jsonl", ObjectKind.USER, f"u{i:02d}", "upsert", {"a": i}, {}, None, f"fp{i}")
        for i in range(30)
    ]
    report = asyncio.run(engine.run(changes))
    connector = engine.connector
    assert isinstance(connector, Slow)
    assert connector.most_in_flight == 2
    assert 2 < most_waiting <= 4  # commits did wait behind the answers, within the bound
    assert sorted(committed) == [c.key for c in changes] and report.counts["ok"] == 30
    assert len(state.load("jsonl", "user", [c.key for c in changes])) == 30
