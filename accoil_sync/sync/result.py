"""What one run reports: its counts, holds, failures and exit code, as printed and as ``--json``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from accoil_sync.connectors.base import Change
from accoil_sync.sources.base import RowError
from accoil_sync.sources.stage import SourceStats
from accoil_sync.sync.engine import DeliveryReport
from accoil_sync.sync.guards import Hold
from accoil_sync.sync.planner import DestinationPlan
from accoil_sync.sync.resolve import ResolveReport

# Exit codes (README "Exit codes"): the one place they are defined.
EXIT_OK = 0  # every delivery succeeded and the source was clean
# some records failed at a destination (rejected, or retryable and left for later), or are still rejected
# from an earlier run: the destination does not hold their values, however many runs pass quietly since
EXIT_FAILED_RECORDS = 1
EXIT_USAGE = 2  # usage or configuration error, or the source cannot be read at all
EXIT_UNAVAILABLE = 3  # a destination was unreachable, refused the credentials or was stopped
EXIT_INVALID_ROWS = (
    4  # deliveries all succeeded, but the source had invalid rows (safety.fail_on_invalid_rows)
)
EXIT_HELD = 5  # a destination was held by a safety threshold: nothing was sent to it
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGTERM: stopped between batches, acknowledged writes kept
SAMPLE_SIZE = 5
STOPPED_AT_ONCE = (
    "stopped at once (a second signal, or shutdown past its grace): acknowledged writes are kept"
)


@dataclass(slots=True)
class RunResult:
    run_id: str
    source: SourceStats
    plans: dict[str, DestinationPlan] = field(default_factory=dict)
    deliveries: dict[str, DeliveryReport] = field(default_factory=dict)
    samples: dict[str, list[Change]] = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)
    error_summary: list[tuple[str, int]] = field(default_factory=list)
    duplicates: list[tuple[str, str, str, int, list[str]]] = field(default_factory=list)
    holds: dict[str, list[Hold]] = field(default_factory=dict)  # destinations held by a threshold
    withheld: dict[str, str] = field(default_factory=dict)  # kind -> why no object was removed
    # destination -> objects a destination with removal = "clear" kept only because removals were withheld
    kept: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # sanity warnings on the source data
    # kind -> why its source looks broken (empty, or much smaller than at the last accepted run) where no
    # destination removes objects, so nothing was withheld; exit 4 like any other source problem
    shrunk: dict[str, str] = field(default_factory=dict)
    fail_on_invalid_rows: bool = True
    fail_on_old_rejections: bool = True
    resolutions: dict[str, ResolveReport] = field(default_factory=dict)  # plan --resolve, per destination

    halted: bool = False  # stopped early by a shutdown

    @property
    def status(self) -> str:
        """The run ledger's word for this result: ok, partial, held, interrupted or failed."""
        if self.halted:
            return "interrupted"
        return {
            EXIT_OK: "ok",
            EXIT_FAILED_RECORDS: "partial",
            EXIT_INVALID_ROWS: "partial",
            EXIT_HELD: "held",
        }.get(self.exit_code, "failed")

    @property
    def exit_code(self) -> int:
        """The most serious outcome wins: interrupted, a destination stopped, held, records failed (in this
        run or still rejected from an earlier one), invalid source rows."""
        return self._code(still_rejected=True)

    @property
    def settled(self) -> bool:
        """Everything this run planned was delivered and nothing new went wrong -- what serve's last-success
        gauge tracks: records rejected by an earlier run keep the exit code at 1 until someone acts, but a
        staleness alert must not fire for them on every run."""
        return self._code(still_rejected=False) == EXIT_OK

    def _code(self, *, still_rejected: bool) -> int:
        if self.halted:
            return EXIT_INTERRUPTED
        if any(d.stopped for d in self.deliveries.values()):
            return EXIT_UNAVAILABLE
        if any(self.holds.values()) or any(self.kept.values()):
            return EXIT_HELD
        if any(d.failed for d in self.deliveries.values()):
            return EXIT_FAILED_RECORDS
        if any(r.rejections for r in self.resolutions.values()):  # plan --resolve: a sync would be refused
            return EXIT_FAILED_RECORDS
        if (
            still_rejected
            and self.fail_on_old_rejections
            and any(p.still_rejected for p in self.plans.values())
        ):
            return EXIT_FAILED_RECORDS
        if (self.source.invalid or self.shrunk) and self.fail_on_invalid_rows:
            return EXIT_INVALID_ROWS
        return EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "exit_code": self.exit_code,
            "status": self.status,
            "source": {
                kind.value: {
                    "rows": s.rows,
                    "valid": s.valid,
                    "invalid": s.invalid,
                    "duplicates": s.duplicates,
                    "objects": s.objects,
                    "file_errors": s.file_errors,
                    "rows_read": s.rows_read,
                    "invalid_rows": s.invalid_rows,
                    "held_objects": s.held,
                    "removals_withheld": self.withheld.get(kind.value),
                }
                for kind, s in self.source.by_kind.items()
            },
            "warnings": list(self.warnings),
            "source_shrunk": dict(self.shrunk),
            "invalid_rows": [
                {
                    "kind": e.kind.value,
                    "file": e.file,
                    "row": e.row,
                    "column": e.column,
                    "reason": e.reason,
                    "key": e.key,
                    "scope": e.scope,
                }
                for e in self.errors
            ],
            "duplicates": [
                {"kind": kind, "key": key, "profile": profile, "count": n, "rows": rows}
                for kind, key, profile, n, rows in self.duplicates
            ],
            "destinations": {
                name: {
                    "plan": {kind.value: _counts(c) for kind, c in plan.counts.items()},
                    "held": [h.to_json() for h in self.holds.get(name, [])],
                    "removals_withheld": self.kept.get(name, 0),
                    "sample": [
                        {
                            "kind": ch.kind.value,
                            "key": ch.key,
                            "op": ch.op,
                            "changes": {
                                f: {"from": ch.previous.get(f), "to": v} for f, v in ch.fields.items()
                            },
                        }
                        for ch in self.samples.get(name, [])
                    ],
                    **(
                        {
                            "delivery": {
                                "counts": dict(d.counts),
                                "by_kind": {k: dict(v) for k, v in d.by_kind.items()},
                                "reasons": dict(d.reasons),
                                "example_keys": {c: [k for k, _ in ex] for c, ex in d.examples.items()},
                                "cleared_sample": [{"kind": k, "key": key} for k, key in d.cleared],
                                "stopped": d.stopped,
                                "limited": d.limited,
                            }
                        }
                        if (d := self.deliveries.get(name))
                        else {}
                    ),
                    **({"resolve": r.to_json()} if (r := self.resolutions.get(name)) else {}),
                }
                for name, plan in self.plans.items()
            },
        }


def _counts(c: Any) -> dict[str, int]:
    return {
        k: getattr(c, k)
        for k in (
            "objects",
            "new",
            "changed",
            "unchanged",
            "refresh",
            "clear",
            "still_rejected",
            "retrying",
            "held",
            "rechecking",
        )
    }
