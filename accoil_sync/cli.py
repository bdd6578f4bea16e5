"""The ``accoil-sync`` command."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from rich.markup import escape

from accoil_sync import __version__, cli_run, logs
from accoil_sync.cli_output import err, out, print_failures, print_result, print_status
from accoil_sync.config.settings import Settings, load_settings, masked_dump, secret_values
from accoil_sync.connectors.base import ReasonClass
from accoil_sync.errors import ConfigError, StateStoreError, SyncBusy, UserError
from accoil_sync.sync.lease import Lease
from accoil_sync.sync.runner import EXIT_USAGE, RunResult
from accoil_sync.sync.state import StateStore
from accoil_sync.traits.names import ObjectKind

REASON_CLASSES: tuple[str, ...] = get_args(ReasonClass)

app = typer.Typer(
    name="accoil-sync",
    help="Push engagement metrics (Accoil_* traits) to Segment, Intercom and HubSpot.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


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
RetryRejected = Annotated[
    bool,
    typer.Option(
        "--retry-rejected",
        help="Re-check every rejected record now (any class, no back-off or budget); others wait for "
        "their metrics to change, healable ones (not_found, conflict, ambiguous) are re-checked on a back-off.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
AllowMassChange = Annotated[
    bool,
    typer.Option(
        "--allow-mass-change",
        help="This run only: let destinations take changes or removals over their safety thresholds, and "
        "remove objects missing from a source that is empty or much smaller than last time.",
    ),
]
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
def _user_errors(as_json: bool = False) -> Iterator[None]:
    """A user's mistake ends the command with its message and exit code, never a traceback; under
    ``--json`` stdout carries it too, so a machine reading stdout is not left with nothing."""
    try:
        yield
    except (UserError, StateStoreError, SyncBusy) as exc:  # 2, or 74 / 75: the message says what to do
        code = getattr(exc, "exit_code", EXIT_USAGE)
        # A driver's words (a SQL error) could quote a secret: masked here as in every log line.
        words = logs.redact(str(exc))
        err.print(f"[red]error:[/red] {escape(words)}", markup=True, highlight=False)
        if as_json:
            print(json.dumps({"error": words, "exit_code": code}, indent=2))
        raise typer.Exit(code) from None


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


@app.command()
def plan(
    config: ConfigOption = None,
    destination: DestinationOption = None,
    full_refresh: FullRefresh = False,
    allow_mass_change: AllowMassChange = False,
    resolve: Annotated[
        bool,
        typer.Option(
            "--resolve",
            help="Also look each planned record up in the CRMs (read-only): how many would update an existing "
            "record, be created, not found, ambiguous or in conflict.",
        ),
    ] = False,
    retry_rejected: RetryRejected = False,
    as_json: JsonOption = False,
    as_of: AsOf = None,
    log_format: LogFormat = "auto",
    log_level: LogLevel = None,
) -> None:
    """Dry run: what a sync would send, per destination, with a sample of field-level changes and the
    safety verdict (exit codes as for sync)."""
    with _user_errors(as_json):
        settings = _load(config, log_format, log_level or ("WARNING" if as_json else None), as_of)
        result = cli_run.run(
            settings,
            log_format,
            deliver=False,
            destinations=destination,
            full_refresh=full_refresh,
            allow_mass_change=allow_mass_change,
            resolve=resolve,
            retry_rejected=retry_rejected,
        )
        explanations = _explain_samples(settings, result)
    if as_json:
        data = result.to_json()
        if explanations:
            data["explanations"] = [e.to_json() for e in explanations]
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        print_result(result, delivered=False)
        for e in explanations:
            out.print(
                "  why: " + "; ".join(line.strip() for line in e.lines()), markup=False, highlight=False
            )
    raise typer.Exit(result.exit_code)


def _explain_samples(settings: Settings, result: RunResult, limit: int = 10) -> list[Any]:
    """For an events source: why each sampled object has its score (top events, next band), as the
    scoring of this run computed it (the staged records carry it: nothing is scored again)."""
    if settings.source.kind != "events":
        return []
    from accoil_sync.traits.explanation import Explanation

    records = {
        (c.kind.value, c.key): c.record
        for samples in result.samples.values()
        for c in samples
        if c.record is not None
    }
    return [
        Explanation.from_json(doc)
        for wanted in sorted(records)[:limit]
        for doc in sorted(records[wanted].explanations.values(), key=lambda d: str(d.get("profile")))
    ]


@app.command()
def sync(
    config: ConfigOption = None,
    destination: DestinationOption = None,
    full_refresh: FullRefresh = False,
    retry_rejected: RetryRejected = False,
    accept_new_state: Annotated[
        bool,
        typer.Option(
            "--accept-new-state",
            help="Sync into a new, empty state store although earlier deliveries exist: re-sends everything.",
        ),
    ] = False,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Send at most N changes per destination.")
    ] = None,
    allow_mass_change: AllowMassChange = False,
    as_json: JsonOption = False,
    as_of: AsOf = None,
    log_format: LogFormat = "auto",
    log_level: LogLevel = None,
) -> None:
    """Send what changed since the last acknowledged delivery. Exit 0 all delivered, 1 some records failed,
    2 usage or config error, 3 a destination was unreachable or refused auth, 4 all delivered but the
    source had invalid rows, 5 a destination held by a safety threshold, 74 the state store cannot be used
    (or is new while earlier deliveries exist), 75 another run holds the state store's lease, 130
    interrupted."""
    with _user_errors(as_json):
        settings = _load(config, log_format, log_level, as_of)
        result = cli_run.run(
            settings,
            log_format,
            deliver=True,
            destinations=destination,
            full_refresh=full_refresh,
            retry_rejected=retry_rejected,
            accept_new_state=accept_new_state,
            limit=limit,
            allow_mass_change=allow_mass_change,
        )
    if as_json:
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False, default=str))
    else:
        print_result(result, delivered=True)
    raise typer.Exit(result.exit_code)


def _read_state(settings: Settings) -> StateStore:
    """The state store, read-only (``status`` and ``failures`` work on a store they may not write)."""
    if not settings.state.path.exists():
        err.print(f"no state yet at {settings.state.path}: run `accoil-sync sync` first")
        raise typer.Exit(0)
    return StateStore(settings.state.path, readonly=True)


@app.command()
def status(
    config: ConfigOption = None,
    runs: Annotated[int, typer.Option("--runs", min=1, help="How many recent runs to show.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """Recent runs, and the records failing now grouped by reason class (`failures` lists them)."""
    with _user_errors(as_json):
        store = _read_state(load_settings(config))
        try:
            recent = store.runs(runs)
            per_run = {r.run_id: store.run_reasons(r.run_id) for r in recent}
            failing = store.failure_counts()
            classes = store.failure_classes()
            lease = Lease(store, "")
            running = lease.describe_holder() if lease.holder_now() is not None else None
        finally:
            store.close()
    print_status(recent, per_run, failing, classes, running, as_json)


@app.command()
def failures(
    config: ConfigOption = None,
    destination: Annotated[
        str | None, typer.Option("--destination", "-d", help="Only this destination.")
    ] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="user or account.")] = None,
    reason_class: Annotated[
        str | None,
        typer.Option("--class", help="invalid, not_found, conflict, ambiguous or vendor_error."),
    ] = None,
    failing_status: Annotated[str | None, typer.Option("--status", help="rejected or retryable.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most N records.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
) -> None:
    """The records failing now, oldest attempt first: key, status, reason class and the vendor's reason.
    Exports with --format csv|json (the reasons may hold emails: treat the export as personal data)."""
    with _user_errors():
        problems = []
        if fmt not in ("table", "csv", "json"):
            problems.append(("--format", f"{fmt!r} is not one of table, csv, json"))
        if kind is not None and kind not in ("user", "account"):
            problems.append(("--kind", f"{kind!r} is not user or account"))
        if reason_class is not None and reason_class not in REASON_CLASSES:
            problems.append(("--class", f"{reason_class!r} is not one of {', '.join(REASON_CLASSES)}"))
        if failing_status is not None and failing_status not in ("rejected", "retryable"):
            problems.append(("--status", f"{failing_status!r} is not rejected or retryable"))
        if problems:
            raise ConfigError(problems)
        store = _read_state(load_settings(config))
        try:
            found = store.failures(
                destination=destination,
                kind=kind,
                reason_class=reason_class,
                status=failing_status,
                limit=limit,
            )
        finally:
            store.close()
    print_failures(found, fmt, output)


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

    with _user_errors(as_json):
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
    """Validate the configuration and print it with secrets masked (exit 2 when invalid, or when a source
    file setting matches no file)."""
    from accoil_sync.sources.files import unmatched

    with _user_errors():
        settings = load_settings(config)
        if problems := unmatched(settings.source):
            raise ConfigError(problems)
    print(json.dumps(masked_dump(settings), indent=2))
    err.print(
        f"configuration OK; enabled destinations: {', '.join(settings.destinations.enabled()) or 'none'}"
    )


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
    messy: Annotated[
        bool,
        typer.Option(
            "--messy",
            help="Start with CRMs that already hold data, made from the configured source's rows "
            "(pre-existing records without our keys, case-variant and additional emails, shared domains, "
            "deleted records).",
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Serve local Segment, Intercom and HubSpot look-alikes (base URLs /segment, /intercom, /hubspot)."""
    from accoil_sync.emulator import Emulator
    from accoil_sync.emulator.server import serve_forever

    try:
        emulator = Emulator(profile, seed, persist=persist)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    if messy:
        from accoil_sync.emulator.messy import source_rows

        with _user_errors():
            users, accounts = source_rows(load_settings(config, credentials=False))
        made = emulator.seed_messy(users, accounts)
        for vendor, manifest in made.items():
            counts = ", ".join(
                f"{len(v)} {k.replace('_', ' ')}" for k, v in manifest.items() if isinstance(v, dict)
            )
            err.print(f"messy {vendor}: {counts}", markup=False)
    base = f"http://{host}:{port}"
    err.print(
        f"emulator (faults: {profile}; CRMs: {'messy, seeded above' if messy else 'empty'}) on {base}: segment {base}/segment, intercom {base}/intercom, "
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
    from accoil_sync.serve.child import run_in_child
    from accoil_sync.serve.scheduler import Scheduler

    with _user_errors():
        settings = _load(config, log_format, log_level)
        check_serve(settings)
    cfg = settings.serve
    scheduler = None
    if not no_scheduler:
        webhook = cfg.alert_webhook_url.get_secret_value() if cfg.alert_webhook_url else None
        alerter = Alerter(webhook, cfg.alert_rejected_share, StateStore(settings.state.path))
        scheduler = Scheduler(settings, alerter=alerter, executor=run_in_child)  # syncs off the card's loop
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
