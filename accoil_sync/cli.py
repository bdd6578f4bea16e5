"""The ``accoil-sync`` command."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from accoil_sync import __version__, logs
from accoil_sync.config.settings import Settings, load_settings, masked_dump, secret_values
from accoil_sync.errors import ConfigError, UserError
from accoil_sync.sync.runner import EXIT_USAGE, RunResult, execute
from accoil_sync.sync.state import StateStore
from accoil_sync.traits.names import ObjectKind

app = typer.Typer(
    name="accoil-sync",
    help="Push engagement metrics (Accoil_* traits) to Segment, Intercom and HubSpot.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

# Off a terminal rich would wrap at 80 columns; logs and CI output read better unwrapped.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="TOML config file (default: $ACCOIL_SYNC_CONFIG or ./accoil-sync.toml)"
    ),
]
DestinationOption = Annotated[
    list[str] | None, typer.Option("--destination", "-d", help="Only this destination (repeatable).")
]
FullRefresh = Annotated[
    bool, typer.Option("--full-refresh", help="Ignore state: send every field of every object.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
LogFormat = Annotated[str, typer.Option("--log-format", help="auto, human or json.")]
LogLevel = Annotated[str | None, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")]
AsOf = Annotated[
    str | None,
    typer.Option("--as-of", help="Events source: score as of the end of this UTC day (YYYY-MM-DD)."),
]


def _version(value: bool) -> None:
    if value:
        out.print(f"accoil-sync {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """accoil-sync: reverse-ETL for engagement metrics."""


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except UserError as exc:
        err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(EXIT_USAGE) from None


def _load(config: Path | None, log_format: str, log_level: str | None, as_of: str | None = None) -> Settings:
    settings = load_settings(config)
    fmt = log_format if log_format != "auto" else settings.log.format
    logs.setup(log_level or settings.log.level, fmt, secret_values(settings))
    return _with_as_of(settings, as_of)


def _with_as_of(settings: Settings, as_of: str | None) -> Settings:
    """``--as-of`` is ``source.as_of`` for this run: reproducible scores and back-fills."""
    if as_of is None:
        return settings
    if settings.source.kind != "events":
        raise ConfigError(
            [("--as-of", "only an events source (source.kind = 'events') is scored as of a day")]
        )
    try:
        day = date.fromisoformat(as_of)
    except ValueError:
        raise ConfigError([("--as-of", f"{as_of!r} is not a date (YYYY-MM-DD)")]) from None
    return settings.model_copy(update={"source": settings.source.model_copy(update={"as_of": day})})


def _progress_factory() -> tuple[Progress | None, Callable[[str, int], Callable[[int], None]] | None]:
    if not sys.stderr.isatty():
        return None, None
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )

    def factory(name: str, total: int) -> Callable[[int], None]:
        task = progress.add_task(f"{name}: records sent", total=total or None)
        return lambda n: progress.advance(task, n)

    return progress, factory


def _run(settings: Settings, **kwargs: Any) -> RunResult:
    progress, factory = _progress_factory() if kwargs.get("deliver") else (None, None)
    if progress is not None:
        with progress:
            return asyncio.run(execute(settings, progress=factory, **kwargs))
    return asyncio.run(execute(settings, **kwargs))


@app.command()
def plan(
    config: ConfigOption = None,
    destination: DestinationOption = None,
    full_refresh: FullRefresh = False,
    as_json: JsonOption = False,
    as_of: AsOf = None,
    log_format: LogFormat = "auto",
    log_level: LogLevel = None,
) -> None:
    """Dry run: what a sync would send, per destination, with a sample of field-level changes."""
    with _user_errors():
        settings = _load(config, log_format, log_level or ("WARNING" if as_json else None), as_of)
        result = _run(settings, deliver=False, destinations=destination, full_refresh=full_refresh)
        explanations = _explain_samples(settings, result)
    if as_json:
        data = result.to_json()
        if explanations:
            data["explanations"] = [e.to_json() for e in explanations]
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        _print_result(result, delivered=False)
        for e in explanations:
            out.print(
                "  why: " + "; ".join(line.strip() for line in e.lines()), markup=False, highlight=False
            )
    raise typer.Exit(result.exit_code)


def _explain_samples(settings: Settings, result: RunResult, limit: int = 10) -> list[Any]:
    """For an events source: why each sampled object has its score (top events, next band)."""
    if settings.source.kind != "events":
        return []
    from accoil_sync.scoring import Scorer

    wanted = sorted({(c.kind.value, c.key) for samples in result.samples.values() for c in samples})[:limit]
    if not wanted:
        return []
    with Scorer(settings.source, settings.profiles, settings.state.directory) as scorer:
        scorer.run()  # the rollup is current: nothing new is read, the same day is scored again
        return [e for kind, key in wanted for e in scorer.explain(key) if e.kind == kind]


@app.command()
def sync(
    config: ConfigOption = None,
    destination: DestinationOption = None,
    full_refresh: FullRefresh = False,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Send at most N changes per destination.")
    ] = None,
    as_json: JsonOption = False,
    as_of: AsOf = None,
    log_format: LogFormat = "auto",
    log_level: LogLevel = None,
) -> None:
    """Send what changed since the last acknowledged delivery. Exit 0 all delivered, 1 some records failed,
    2 usage or config error, 3 a destination was unreachable or refused auth."""
    with _user_errors():
        settings = _load(config, log_format, log_level, as_of)
        result = _run(
            settings, deliver=True, destinations=destination, full_refresh=full_refresh, limit=limit
        )
    if as_json:
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False, default=str))
    else:
        _print_result(result, delivered=True)
    raise typer.Exit(result.exit_code)


@app.command()
def status(
    config: ConfigOption = None,
    runs: Annotated[int, typer.Option("--runs", min=1, help="How many recent runs to show.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """Recent runs, records currently failing, and the most common failure reasons."""
    with _user_errors():
        settings = load_settings(config)
    if not settings.state.path.exists():
        err.print(f"no state yet at {settings.state.path}: run `accoil-sync sync` first")
        raise typer.Exit(0)
    store = StateStore(settings.state.path)
    try:
        recent = store.runs(runs)
        failing = store.failure_counts()
        reasons = store.common_failures()
    finally:
        store.close()
    if as_json:
        print(
            json.dumps(
                {
                    "runs": [dataclasses.asdict(run) for run in recent],
                    "failing": [{"destination": d, "status": s, "count": n} for d, s, n in failing],
                    "reasons": [{"destination": d, "reason": r, "count": n} for d, r, n in reasons],
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
        per = "; ".join(f"{d}: " + ", ".join(f"{k} {v}" for k, v in c.items()) for d, c in r.counts.items())
        table.add_row(
            r.run_id,
            r.started_at[:19],
            (r.ended_at or "")[:19],
            r.status,
            str(r.exit_code or ""),
            str(r.invalid_rows),
            per or (r.message or ""),
        )
    out.print(table)
    if failing:
        out.print("Records failing now: " + ", ".join(f"{d} {s} {n}" for d, s, n in failing))
        t = Table(title="Most common failure reasons")
        for col in ("destination", "count", "reason"):
            t.add_column(col)
        for dest, reason, n in reasons:
            t.add_row(dest, str(n), reason or "")
        out.print(t)
    else:
        out.print("No record is failing.")


@app.command()
def score(
    config: ConfigOption = None,
    as_of: AsOf = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Directory for users.<fmt> and accounts.<fmt>.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    explain_key: Annotated[
        list[str] | None,
        typer.Option("--explain", help="Explain this user or account key (repeatable); writes no file."),
    ] = None,
    as_json: JsonOption = False,
    log_format: LogFormat = "auto",
    log_level: LogLevel = None,
) -> None:
    """Compute the metrics from the events source and write them (default ./scores/), or --explain a key."""
    from accoil_sync.scoring import Scorer

    with _user_errors():
        settings = _load(config, log_format, log_level or ("WARNING" if as_json else None), as_of)
        if settings.source.kind != "events":
            raise ConfigError(
                [("source.kind", "`score` computes metrics from events: set source.kind = 'events'")]
            )
        if fmt not in ("parquet", "csv"):
            raise ConfigError([("--format", f"{fmt!r} is not parquet or csv")])
        with Scorer(settings.source, settings.profiles, settings.state.directory) as scorer:
            scorer.run()
            if explain_key:
                found = [e for key in explain_key for e in scorer.explain(key)]
                missing = [key for key in explain_key if not any(e.key == key for e in found)]
                if as_json:
                    print(json.dumps([e.to_json() for e in found], indent=2, ensure_ascii=False))
                else:
                    for e in found:
                        out.print("\n".join(e.lines()), markup=False, highlight=False)
                for key in missing:
                    err.print(f"{key!r} is neither a user nor an account as of {scorer.as_of}", markup=False)
                raise typer.Exit(1 if missing else 0)
            written = scorer.write(output or Path("scores"), fmt)
            counts = {
                kind: scorer.con.sql(f"SELECT count(*) FROM {scorer.table(kind)}").fetchall()[0][0]
                for kind in ObjectKind
            }
    summary = {
        "as_of": str(scorer.as_of),
        "rollup": scorer.report.mode,
        "events_read": scorer.report.rows,
        "skipped_events": scorer.report.bad,
        "rows": {kind.value + "s": n for kind, n in counts.items()},
        "files": [str(p) for p in written],
    }
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        out.print(
            f"scored as of {summary['as_of']} ({scorer.report.mode} rollup, {scorer.report.rows} new event rows): "
            f"{counts[ObjectKind.USER]} user rows, {counts[ObjectKind.ACCOUNT]} account rows -> "
            + ", ".join(str(p) for p in written),
            markup=False,
            highlight=False,
        )


@config_app.command("check")
def config_check(config: ConfigOption = None) -> None:
    """Validate the configuration and print it with secrets masked (exit 2 when invalid)."""
    with _user_errors():
        settings = load_settings(config)
    print(json.dumps(masked_dump(settings), indent=2))
    err.print(
        f"configuration OK; enabled destinations: {', '.join(settings.destinations.enabled()) or 'none'}"
    )


def _print_result(result: RunResult, delivered: bool) -> None:
    data = result.to_json()
    src = Table(title=f"Source (run {result.run_id})")
    for col in ("kind", "rows", "valid", "invalid", "duplicate keys", "objects"):
        src.add_column(col)
    for kind, s in data["source"].items():
        src.add_row(
            kind + "s",
            str(s["rows"]),
            str(s["valid"]),
            str(s["invalid"]),
            str(s["duplicates"]),
            str(s["objects"]),
        )
    out.print(src)
    if result.errors:
        shown = result.errors[:20]
        out.print(f"[yellow]{result.source.invalid} invalid row problem(s), kept out of delivery:[/yellow]")
        for e in shown:
            out.print(f"  {e}", highlight=False, markup=False)
        if result.source.invalid > len(shown):
            out.print(f"  ... and {result.source.invalid - len(shown)} more (plan --json lists them)")
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
                str(c["clear"]),
                str(c["still_rejected"]),
                str(counts.get("ok", 0)) if delivered else "-",
                str(counts.get("retryable", 0) + counts.get("rejected", 0)) if delivered else "-",
            )
    out.print(table)
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
        delivery = dest.get("delivery", {})
        if delivery.get("stopped"):
            out.print(f"[red]{name} stopped:[/red] {delivery['stopped']}")
        for reason, n in list(delivery.get("reasons", {}).items())[:5]:
            out.print(f"  {name} failure x{n}: {reason}", highlight=False, markup=False)
        if delivery.get("limited"):
            out.print(f"  {name}: {delivery['limited']} change(s) left for the next run by --limit")


@app.command()
def emulate(
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1.")] = 8765,
    profile: Annotated[
        str, typer.Option("--profile", help="clean, unlimited, flaky, storm, errors, drops or slow.")
    ] = "clean",
    seed: Annotated[int, typer.Option("--seed", help="Seed for the injected faults.")] = 0,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    persist: Annotated[
        Path | None,
        typer.Option("--persist", help="SQLite file that keeps the vendors' holdings across restarts."),
    ] = None,
) -> None:
    """Serve local Segment, Intercom and HubSpot look-alikes (base URLs /segment, /intercom, /hubspot)."""
    from accoil_sync.emulator import Emulator
    from accoil_sync.emulator.server import serve_forever

    try:
        emulator = Emulator(profile, seed, persist=persist)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    base = f"http://{host}:{port}"
    err.print(
        f"emulator ({profile}) on {base}: segment {base}/segment, intercom {base}/intercom, "
        f"hubspot {base}/hubspot; state at {base}/_emulator/state",
        markup=False,
    )
    serve_forever(emulator, host, port)


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option("--host", help="Overrides serve.host.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Overrides serve.port.")] = None,
    no_scheduler: Annotated[
        bool, typer.Option("--no-scheduler", help="Serve the card and health endpoints only; run no syncs.")
    ] = False,
    log_format: LogFormat = "auto",
    log_level: LogLevel = None,
) -> None:
    """Serve the HubSpot card backend, /healthz, /readyz, /metrics, and run syncs on serve.schedule."""
    import uvicorn

    from accoil_sync.serve.alerts import Alerter
    from accoil_sync.serve.app import create_app
    from accoil_sync.serve.scheduler import Scheduler

    with _user_errors():
        settings = _load(config, log_format, log_level)
        check_serve(settings)
    cfg = settings.serve
    scheduler = None
    if not no_scheduler:
        webhook = cfg.alert_webhook_url.get_secret_value() if cfg.alert_webhook_url else None
        alerter = Alerter(webhook, cfg.alert_rejected_share, StateStore(settings.state.path))
        scheduler = Scheduler(settings, alerter=alerter)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, scheduler),
            host=host or cfg.host,
            port=port or cfg.port,
            log_config=None,  # our handlers (JSON, redaction) already sit on the root logger
            proxy_headers=True,
            access_log=False,  # access lines would carry card query strings (emails) and details-link tokens
            timeout_graceful_shutdown=int(cfg.shutdown_grace_seconds) + 5,
        )
    )
    server.run()


def check_serve(settings: Settings) -> None:
    """What ``serve`` needs beyond a valid file: fail at start, naming the field, not at the first request."""
    problems = []
    if settings.destinations.card.enabled and settings.serve.hubspot_client_secret is None:
        problems.append(
            (
                "serve.hubspot_client_secret",
                "required to verify HubSpot's card requests (env ACCOIL_SYNC_SERVE__HUBSPOT_CLIENT_SECRET)",
            )
        )
    if problems:
        raise ConfigError(problems)


@app.command()
def demo(config: ConfigOption = None) -> None:
    """Run the shipped example end to end: plan, sync, and a second sync that must send nothing."""
    from accoil_sync.demo import EXAMPLE_CONFIG, run_demo

    with _user_errors():
        raise typer.Exit(run_demo(config or EXAMPLE_CONFIG))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
