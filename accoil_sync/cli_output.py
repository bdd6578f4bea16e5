"""What the commands print: the run's tables and warnings, ``status`` and ``failures``."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import sys
from pathlib import Path
from textwrap import shorten
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from accoil_sync.connectors.base import HEALABLE
from accoil_sync.sync.ledger import FailingRecord, RunSummary
from accoil_sync.sync.runner import RunResult

# Off a terminal rich would wrap at 80 columns; logs and CI output read better unwrapped.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

FAILURE_COLUMNS = (
    "destination",
    "kind",
    "key",
    "status",
    "class",
    "reason",
    "attempts",
    "last_tried",
    "dest_id",
)


def print_resolutions(data: dict[str, Any]) -> None:
    """``plan --resolve``: verdicts per destination and kind, then the reported records with their reasons."""
    resolved = {name: dest["resolve"] for name, dest in data["destinations"].items() if "resolve" in dest}
    if not resolved:
        return
    table = Table(title="Resolve (read-only lookups)")
    for col in ("destination", "kind", "update", "create", "not found", "ambiguous", "conflict"):
        table.add_column(col)
    for name, r in resolved.items():
        for kind, c in r["counts"].items():
            table.add_row(
                name, kind, *(str(c[v]) for v in ("update", "create", "not_found", "ambiguous", "conflict"))
            )
    out.print(table)
    for name, r in resolved.items():
        if r["stopped"]:
            out.print(f"[yellow]{name}: resolving stopped: {r['stopped']}[/yellow]", highlight=False)
        for item in r["reported"]:
            out.print(
                f"  {name} {item['kind']} {item['key']!r}: {item['verdict']}: {item['detail']}",
                highlight=False,
                markup=False,
            )


def print_result(result: RunResult, delivered: bool) -> None:
    data = result.to_json()
    src = Table(title=f"Source (run {result.run_id})")
    for col in ("kind", "rows read", "valid", "invalid", "file errors", "duplicate keys", "objects"):
        src.add_column(col)
    for kind, s in data["source"].items():
        src.add_row(
            kind + "s",
            str(s["rows_read"]),
            str(s["valid"]),
            str(s["invalid_rows"]),
            str(s["file_errors"]),
            str(s["duplicates"]),
            str(s["objects"]),
        )
    out.print(src)
    if result.errors:
        shown = result.errors[:20]
        files = sum(s.file_errors for s in result.source.by_kind.values())
        whole = f" ({files} with a whole file or its rest)" if files else ""
        out.print(
            f"[yellow]{result.source.invalid} invalid row problem(s){whole}, kept out of delivery:[/yellow]"
        )
        for e in shown:
            out.print(f"  {e}", highlight=False, markup=False)
        if result.source.invalid > len(shown):
            out.print(f"  ... and {result.source.invalid - len(shown)} more (plan --json lists them)")
    for warning in result.warnings:
        out.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    for kind, reason in result.withheld.items():
        out.print(f"[yellow]no {kind} is removed this run:[/yellow] {escape(reason)}")
    for reason in result.shrunk.values():
        out.print(
            f"[yellow]warning:[/yellow] {escape(reason)}; every object it lacks keeps its values "
            '(removal = "keep")'
        )
    for kind, key, profile, n, rows in result.duplicates[:10]:
        out.print(
            f"  duplicate {kind} {key!r} (profile {profile}) x{n} at {', '.join(rows)}: the last row wins",
            highlight=False,
            markup=False,
        )
    table = Table(title="Sync" if delivered else "Plan")
    for col in (
        "destination",
        "kind",
        "new",
        "changed",
        "unchanged",
        "state only",
        "clear",
        "still rejected",
        "sent ok",
        "failed",
    ):
        table.add_column(col)
    for name, dest in data["destinations"].items():
        delivery = dest.get("delivery", {})
        for kind, c in dest["plan"].items():
            counts = delivery.get("by_kind", {}).get(kind, {})
            table.add_row(
                name,
                kind,
                str(c["new"]),
                str(c["changed"]),
                str(c["unchanged"]),
                # changed in the source in a way this destination does not encode: stored, not sent
                str(c["refresh"]),
                str(c["clear"]),
                str(c["still_rejected"]),
                str(counts.get("ok", 0)) if delivered else "-",
                str(counts.get("retryable", 0) + counts.get("rejected", 0)) if delivered else "-",
            )
    out.print(table)
    print_resolutions(data)
    for name, dest in data["destinations"].items():
        for s in dest["sample"]:
            changes = ", ".join(
                f"{f}: {v['from']!r} -> {v['to']!r}" for f, v in list(s["changes"].items())[:4]
            )
            more = len(s["changes"]) - 4
            out.print(
                f"  {name} {s['kind']} {s['key']} {s['op']}: {changes}{f' (+{more} more)' if more > 0 else ''}",
                highlight=False,
                markup=False,
            )
        for hold in dest["held"]:
            verb = "held" if delivered else "would be held"
            out.print(f"[red]{verb}:[/red] {escape(hold['message'])}")
        if dest["removals_withheld"]:
            out.print(
                f"  {name}: {dest['removals_withheld']} object(s) absent from the source kept (removals withheld)"
            )
        delivery = dest.get("delivery", {})
        if delivery.get("stopped"):
            out.print(f"[red]{name} stopped:[/red] {delivery['stopped']}")
        for reason_class, n in delivery.get("reasons", {}).items():
            keys = delivery.get("example_keys", {}).get(reason_class, [])[:3]
            out.print(
                f"  {name} failure x{n}: {reason_class}"
                + (f" (e.g. {', '.join(keys)})" if keys else "")
                + f"; reasons: accoil-sync failures -d {name} --class {reason_class}",
                highlight=False,
                markup=False,
            )
        if cleared := delivery.get("cleared_sample"):
            out.print(
                f"  {name}: cleared, gone from the source: "
                + ", ".join(f"{c['kind']} {c['key']}" for c in cleared[:5])
                + (" ..." if len(cleared) > 5 else ""),
                highlight=False,
                markup=False,
            )
        if delivery.get("limited"):
            out.print(f"  {name}: {delivery['limited']} change(s) left for the next run by --limit")
        if still := sum(c["still_rejected"] for c in dest["plan"].values()):
            out.print(
                f"  {name}: {still} record(s) still rejected from an earlier run, not sent again until their "
                f"values change or --retry-rejected; reasons: accoil-sync failures -d {name} --status rejected",
                highlight=False,
                markup=False,
            )


def print_status(
    recent: list[RunSummary],
    per_run: dict[str, dict[str, dict[str, int]]],
    failing: list[tuple[str, str, int]],
    classes: list[tuple[str, str, str, int]],
    running: str | None,
    as_json: bool,
) -> None:
    """``status``: recent runs, then the records failing now by reason class."""
    if as_json:
        print(
            json.dumps(
                {
                    "running": running,
                    "runs": [{**dataclasses.asdict(run), "reasons": per_run[run.run_id]} for run in recent],
                    "failing": [{"destination": d, "status": s, "count": n} for d, s, n in failing],
                    "classes": [
                        {"destination": d, "status": s, "class": c, "count": n} for d, s, c, n in classes
                    ],
                },
                indent=2,
                default=str,
            )
        )
        return
    table = Table(title="Recent runs")
    for col in ("run", "started", "ended", "status", "exit", "invalid rows", "per destination"):
        table.add_column(col)
    for r in recent:
        # The failures' reason classes break the failed counts down, in parentheses: not more records.
        per = "; ".join(
            f"{d}: "
            + ", ".join(f"{k} {v}" for k, v in c.items())
            + (
                " (" + ", ".join(f"{cls} {n}" for cls, n in by_class.items()) + ")"
                if (by_class := per_run[r.run_id].get(d, {}))
                else ""
            )
            for d, c in r.counts.items()
        )
        table.add_row(
            r.run_id,
            r.started_at[:19],
            (r.ended_at or "")[:19],
            r.status,
            "" if r.exit_code is None else str(r.exit_code),
            str(r.invalid_rows),
            per or (r.message or ""),
        )
    out.print(table)
    if running is not None:
        out.print(f"A sync holds the state store's lease now: {running}", highlight=False, markup=False)
    if classes:
        out.print("Records failing now: " + ", ".join(f"{d} {s} {n}" for d, s, n in failing))
        t = Table(title="Failing now, by reason class")
        for col in ("destination", "status", "class", "count"):
            t.add_column(col)
        for dest, state, cls, n in classes:
            t.add_row(dest, state, cls, str(n))
        out.print(t)
        out.print(
            "`accoil-sync failures` lists the keys with their reasons (--format csv|json to export); "
            f"rejections classed {', '.join(sorted(HEALABLE))} are re-checked on later runs, "
            "`sync --retry-rejected` re-checks every rejection now.",
            highlight=False,
            markup=False,
        )
    else:
        out.print("No record is failing.")


def print_failures(found: list[FailingRecord], fmt: str, output: Path | None) -> None:
    """``failures``: a table on the terminal, or csv/json to stdout or ``output``."""
    rows = [
        (
            f.destination,
            f.kind,
            f.key,
            f.status,
            f.reason_class,
            f.reason,
            f.attempts,
            f.updated_at,
            f.dest_id,
        )
        for f in found
    ]
    if fmt == "table" and output is None:
        table = Table(title=f"{len(rows)} failing record(s)")
        for col in FAILURE_COLUMNS:
            table.add_column(col)
        for row in rows:
            # Rich wraps long reasons; only a very long one is shortened, at a word (csv and json keep all).
            table.add_row(*(Text(shorten("" if v is None else str(v), 400, placeholder=" ...")) for v in row))
        out.print(table)
        return
    with (
        output.open("w", encoding="utf-8", newline="") if output else contextlib.nullcontext(sys.stdout)
    ) as fh:
        if fmt == "json":
            json.dump(
                [dict(zip(FAILURE_COLUMNS, row, strict=True)) for row in rows],
                fh,
                indent=2,
                ensure_ascii=False,
            )
            fh.write("\n")
        else:
            writer = csv.writer(fh)
            writer.writerow(FAILURE_COLUMNS)
            writer.writerows(rows)
    if output is not None:
        err.print(f"{len(rows)} failing record(s) written to {output}", highlight=False, markup=False)
