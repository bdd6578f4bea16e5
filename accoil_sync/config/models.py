"""Settings models. Every section is frozen and forbids unknown keys, so a typo is an error, not a no-op."""

from __future__ import annotations

from contextvars import ContextVar
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from accoil_sync.config.scoring import ScoringConfig
from accoil_sync.traits.names import sanitize_score_name

# False while a command that never calls a vendor (``emulate --messy`` reading the source) loads the config:
# an enabled destination's missing credentials are then no error.
credentials_required: ContextVar[bool] = ContextVar("credentials_required", default=True)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _refuse_empty_secrets(section: BaseModel) -> None:
    """``WRITE_KEY=`` in an environment sets an empty secret: every request would then fail at the vendor
    with a 401 that looks like a revoked key. Say so at load time instead."""
    for name in type(section).model_fields:
        value = getattr(section, name)
        if isinstance(value, SecretStr) and not value.get_secret_value().strip():
            raise ValueError(
                f"{name} is set but empty (an empty environment variable?); unset it or give a value"
            )


class ColumnMap(_Section):
    """Canonical column -> column name in the source (CSV header, JSON key, Parquet field, SQL alias)."""

    user_id: str = "user_id"
    account_id: str = "account_id"
    email: str = "email"
    domain: str = "domain"
    name: str = "name"
    score_name: str = "score_name"
    score: str = "score"
    segments: str = "segments"
    activation: str = "activation"
    adoption_recent: str = "adoption_recent"
    adoption_ever: str = "adoption_ever"
    last_active: str = "last_active"
    frequency: str = "frequency"
    active_users: str = "active_users"
    total_users: str = "total_users"
    computed_at: str = "computed_at"


class EventColumnMap(_Section):
    """Canonical event column -> column name in the events source (``kind = "events"``)."""

    user_id: str = "user_id"
    account_id: str = "account_id"
    event: str = "event"
    timestamp: str = "timestamp"
    email: str | None = Field(None, description="optional: the user's email, the latest one wins")
    loaded_at: str | None = Field(
        None,
        description="SQL sources: when the row was loaded (the incremental watermark); default timestamp",
    )


class SourceConfig(_Section):
    kind: Literal["files", "duckdb", "sqlalchemy", "events"] = "files"
    users: str | None = Field(None, description="files: a path or glob; duckdb/sqlalchemy: a SQL query")
    accounts: str | None = Field(
        None,
        description="files: a path or glob; duckdb/sqlalchemy: a SQL query; kind = 'events': the accounts' "
        "name and domain (a path or glob, or a query when events_from is duckdb/sqlalchemy)",
    )
    events: str | None = Field(
        None,
        description="kind = 'events': a path or glob, or a SQL query when events_from is duckdb/sqlalchemy",
    )
    events_from: Literal["files", "duckdb", "sqlalchemy"] = "files"
    preset: Literal["segment", "rudderstack"] | None = Field(
        None, description="events from a Segment or RudderStack warehouse schema (tracks + groups tables)"
    )
    warehouse_schema: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$", description="preset: the schema holding tracks/groups"
    )
    event_columns: EventColumnMap = EventColumnMap()
    as_of: date | None = Field(
        None, description="kind = 'events': score as of the end of this UTC day (default: today); --as-of"
    )
    format: Literal["auto", "csv", "jsonl", "parquet"] = "auto"
    csv_delimiter: str = Field(",", min_length=1, max_length=1)
    encoding: str = "utf-8"
    database: str | None = Field(None, description="duckdb: database file to open read-only")
    url: SecretStr | None = Field(None, description="sqlalchemy: database URL (may hold a password)")
    columns: ColumnMap = ColumnMap()
    chunk_size: int = Field(50_000, ge=100, le=1_000_000)
    max_future_skew_hours: float = Field(
        24, ge=0, description="last_active/computed_at later than now plus this are rejected as bad rows"
    )

    @model_validator(mode="after")
    def _needs_input(self) -> SourceConfig:
        _refuse_empty_secrets(self)
        if self.kind == "events":
            if self.users:
                raise ValueError(
                    "source.kind = 'events' computes the users' metrics; remove source.users (source.accounts "
                    "may name the accounts' name and domain)"
                )
            if not self.events and self.preset is None:
                raise ValueError(
                    "source.kind = 'events' needs source.events (a glob or query) or source.preset"
                )
            if self.preset is not None and self.events_from == "files":
                raise ValueError(
                    "source.preset reads a warehouse: set source.events_from = 'duckdb' or 'sqlalchemy'"
                )
            if self.events_from == "sqlalchemy" and self.url is None:
                raise ValueError(
                    "source.events_from = 'sqlalchemy' needs source.url (env ACCOIL_SYNC_SOURCE__URL)"
                )
            return self
        if self.events or self.preset or self.as_of:
            raise ValueError("source.events, source.preset and source.as_of need source.kind = 'events'")
        if not self.users and not self.accounts:
            raise ValueError("set source.users and/or source.accounts")
        if self.kind == "sqlalchemy" and self.url is None:
            raise ValueError("source.kind = 'sqlalchemy' needs source.url (env ACCOIL_SYNC_SOURCE__URL)")
        return self


class StateConfig(_Section):
    path: Path = Path(".accoil-sync/state.db")
    synclog_retention_days: int = Field(30, ge=0, description="0 keeps sync logs forever")
    on_busy: Literal["refuse", "wait"] = Field(
        "refuse", description="when another run holds the store's lease: refuse at once (exit 75) or wait"
    )
    wait_seconds: float = Field(3600, ge=0, description="on_busy = 'wait': give up (exit 75) after this")

    @field_validator("path")
    @classmethod
    def _a_file(cls, value: Path) -> Path:
        if value.is_dir():
            raise ValueError(
                f"{str(value)!r} is a directory; give a file path such as '{value / 'state.db'}'"
            )
        if value.exists() and not value.is_file():
            raise ValueError(f"{str(value)!r} is not a regular file (a device?); give a file path")
        return value

    @property
    def directory(self) -> Path:
        return self.path.parent


class SafetyConfig(_Section):
    """Guards against a broken export wiping what the vendors hold (README "Safety")."""

    allow_mass_change: bool = Field(
        False,
        description="let every destination take changes over its thresholds, and removals from a source that "
        "is empty or much smaller than last time (same as --allow-mass-change; meant for one run)",
    )
    min_source_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="a source with fewer objects than this share of the last accepted run removes nothing",
    )
    fail_on_invalid_rows: bool = Field(
        True,
        description="exit 4 when the source had invalid rows and every delivery succeeded (false: exit 0)",
    )
    fail_on_old_rejections: bool = Field(
        True,
        description="exit 1 while records stay rejected from an earlier run (false: only this run's failures "
        "decide; the records stay in `status` and `failures`)",
    )
    warnings: bool = Field(True, description="sanity warnings on data that looks unlike what it claims")


class ProfileConfig(_Section):
    name: str = Field(min_length=1, description="the score_name value in the source rows")
    window_days: int = Field(7, ge=1, le=366, description="the X in 'active N of the last X days'")
    scoring: ScoringConfig | None = Field(
        None, description="source.kind = 'events': how to compute the metrics"
    )

    @field_validator("name")
    @classmethod
    def _sanitisable(cls, value: str) -> str:
        sanitize_score_name(value)  # raises ValueError with the reason
        return value

    @model_validator(mode="after")
    def _scoring_window(self) -> ProfileConfig:
        if self.scoring is not None and self.window_days not in (1, 7, 30):
            raise ValueError(f"window_days must be 1, 7 or 30 for a scored profile (got {self.window_days})")
        return self

    @property
    def score_name(self) -> str:
        return sanitize_score_name(self.name)


class DestinationBase(_Section):
    enabled: bool = False
    removal: Literal["keep", "clear"] = Field(
        "keep", description="what to do with objects that disappear from the source"
    )
    max_concurrency: int = Field(4, ge=1, le=64)
    timeout_seconds: float = Field(30, gt=0, le=600)
    max_attempts: int = Field(6, ge=1, le=20, description="tries per request, the first included")
    max_removed_share: float = Field(
        0.2,
        ge=0,
        le=1,
        description="hold this destination when one run would clear more than this share of the objects "
        "it holds for being absent from the source",
    )
    max_removed_count: int | None = Field(
        None, ge=0, description="hold when one run would clear more than this many objects (unset: no cap)"
    )
    max_changed_share: float = Field(
        0.9,
        ge=0,
        le=1,
        description="hold when one run would change the values of more than this share of the objects it holds",
    )
    max_changed_count: int | None = Field(
        None, ge=0, description="hold when one run would change more than this many objects (unset: no cap)"
    )
    # sync/heal.py: rejections that can heal (not_found, conflict, ambiguous) are planned again
    recheck_per_run: int = Field(1000, ge=0, description="healable rejections re-checked per run and kind")
    recheck_after_hours: float = Field(1, gt=0, description="first re-check after; doubles with each attempt")
    recheck_max_hours: float = Field(168, gt=0, description="the longest wait between two re-checks")

    def secret_fields(self) -> tuple[str, ...]:
        return ()

    @model_validator(mode="after")
    def _no_empty_secret(self) -> DestinationBase:
        _refuse_empty_secrets(self)
        return self


class JsonlDestination(DestinationBase):
    path: Path = Field(Path(".accoil-sync/out/deliveries.jsonl"), description="default: <state dir>/out/")
    batch_size: int = Field(1000, ge=1, le=100_000)


class CardDestination(DestinationBase):
    """The HubSpot card's data, kept in the state store (served by ``accoil-sync serve``)."""

    removal: Literal["keep", "clear"] = Field(
        "clear", description="objects gone from the source disappear from the card by default"
    )
    batch_size: int = Field(2000, ge=1, le=100_000)


class SegmentDestination(DestinationBase):
    region: Literal["us", "eu"] = "us"
    base_url: str | None = Field(None, description="overrides the regional host (e.g. the emulator)")
    write_key: SecretStr | None = None
    requests_per_second: float = Field(1000, gt=0, description="Segment's per-workspace HTTP API limit")
    # How accounts are sent (docs/CONFIG.md, "Segment: accounts as group calls"): "members" sends one
    # group call from each member user, so destinations link users to companies and no tracked user is
    # added; "synthetic" sends one group call per account from a stable anonymousId (one MTU per account).
    group_mode: Literal["members", "synthetic"] = "members"
    # members mode, an account no source user names: "skip" sends nothing until a member appears (it is
    # then linked with the account's traits); "synthetic" falls back to the anonymousId (one MTU each).
    memberless_accounts: Literal["skip", "synthetic"] = "skip"

    @property
    def url(self) -> str:
        if self.base_url:
            return self.base_url.rstrip("/")
        return {"us": "https://api.segment.io", "eu": "https://events.eu1.segmentapis.com"}[self.region]

    @model_validator(mode="after")
    def _key_when_enabled(self) -> SegmentDestination:
        if self.enabled and self.write_key is None:
            raise ValueError(
                "write_key is required when enabled (env ACCOIL_SYNC_DESTINATIONS__SEGMENT__WRITE_KEY)"
            )
        return self


class IntercomDestination(DestinationBase):
    region: Literal["us", "eu", "au"] = "us"
    base_url: str | None = None
    access_token: SecretStr | None = None
    api_version: str = Field("2.14", pattern=r"^2\.(1[3-9]|[2-9]\d)$", description="2.13 or newer")
    create_missing_contacts: bool = False
    attach_users_to_companies: bool = True
    # Tags accoil-sync manages carry this prefix, so a tag someone applied by hand is never one of ours
    # (accoil-sync removes only tags it applied). Empty is refused: it would make segment tags
    # indistinguishable from hand-made ones.
    tag_prefix: str = Field("Accoil: ", min_length=1, max_length=100)
    # Company name and website are the CRM's data once the company exists: set when accoil-sync creates
    # the company ("on_create"), or on every change ("always"); never cleared either way.
    company_details: Literal["on_create", "always"] = "on_create"
    # How long the list of data attributes is trusted before it is read again (0: every run).
    schema_ttl_hours: float = Field(24.0, ge=0)
    requests_per_10s: int = Field(1666, ge=1, description="10,000/min per app, spread over 10 s windows")

    @property
    def url(self) -> str:
        if self.base_url:
            return self.base_url.rstrip("/")
        return {
            "us": "https://api.intercom.io",
            "eu": "https://api.eu.intercom.io",
            "au": "https://api.au.intercom.io",
        }[self.region]

    @model_validator(mode="after")
    def _token_when_enabled(self) -> IntercomDestination:
        if self.enabled and self.access_token is None and credentials_required.get():
            raise ValueError(
                "access_token is required when enabled (env ACCOIL_SYNC_DESTINATIONS__INTERCOM__ACCESS_TOKEN)"
            )
        return self


HubSpotTier = Literal["free", "starter", "professional", "enterprise", "api_limit_increase"]


class HubSpotDestination(DestinationBase):
    base_url: str = "https://api.hubapi.com"
    # Batches of 100 in flight: HubSpot publishes no concurrency limit for CRM calls, only the rolling
    # 10-second window, and 4 batches at about a fifth of a second each could not use a fresh window's 190
    # at once (BENCHMARKS.md: 0.84-1.00 of the limit with 4, 0.94-1.03 with 8).
    max_concurrency: int = Field(8, ge=1, le=64)
    access_token: SecretStr | None = None
    oauth_client_id: str | None = None
    oauth_client_secret: SecretStr | None = None
    oauth_refresh_token: SecretStr | None = None
    tier: HubSpotTier = "professional"
    contact_match: Literal["email", "property"] = "email"
    contact_id_property: str = Field("accoil_user_id", pattern=r"^[a-z][a-z0-9_]{0,98}$")
    company_match: Literal["property", "domain"] = "domain"
    company_id_property: str = Field("accoil_account_id", pattern=r"^[a-z][a-z0-9_]{0,98}$")
    create_missing: bool = False
    property_group: str = Field("accoil", pattern=r"^[a-z][a-z0-9_]{0,98}$")
    fill_company_details: bool = Field(
        False,
        description="write the source's name and domain on a matched company that has none (never overwrites)",
    )
    schema_ttl_hours: float = Field(
        24, ge=0, le=24 * 30, description="read HubSpot's properties again after this long (0: every run)"
    )

    @model_validator(mode="after")
    def _auth_when_enabled(self) -> HubSpotDestination:
        oauth = self.oauth_refresh_token is not None
        if oauth and (self.oauth_client_id is None or self.oauth_client_secret is None):
            raise ValueError("OAuth needs oauth_client_id, oauth_client_secret and oauth_refresh_token")
        if self.enabled and self.access_token is None and not oauth and credentials_required.get():
            raise ValueError(
                "access_token is required when enabled "
                "(env ACCOIL_SYNC_DESTINATIONS__HUBSPOT__ACCESS_TOKEN), or configure OAuth"
            )
        return self


class DestinationsConfig(_Section):
    jsonl: JsonlDestination = JsonlDestination()
    card: CardDestination = CardDestination()
    segment: SegmentDestination = SegmentDestination()
    intercom: IntercomDestination = IntercomDestination()
    hubspot: HubSpotDestination = HubSpotDestination()

    def enabled(self) -> dict[str, DestinationBase]:
        return {
            name: cfg
            for name in ("jsonl", "card", "segment", "intercom", "hubspot")
            if (cfg := getattr(self, name)).enabled
        }


SignatureVersion = Literal["v3", "v2"]


class ServeConfig(_Section):
    """``accoil-sync serve``: the HubSpot card backend, health and metrics, the scheduler and alerts."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^/?#]+(/[^?#]*)?$",
        description="the URL HubSpot calls (behind a proxy); signatures are checked against it",
    )
    hubspot_client_secret: SecretStr | None = Field(None, description="the HubSpot app's client secret")
    signature_versions: list[SignatureVersion] = Field(
        default_factory=lambda: list[SignatureVersion](["v3"]),
        min_length=1,
        description="add 'v2' only for old classic-card installs",
    )
    schedule: str | None = Field(None, description="cron expression for scheduled syncs, e.g. '*/15 * * * *'")
    trigger_token: SecretStr | None = Field(None, description="bearer token for POST /syncs/trigger")
    alert_webhook_url: SecretStr | None = Field(None, description="Slack-compatible incoming webhook")
    alert_rejected_share: float = Field(
        0.05, ge=0, le=1, description="alert when more than this share of a run's records were rejected"
    )
    segment_states: dict[str, Literal["DEFAULT", "SUCCESS", "WARNING", "DANGER", "INFO"]] = Field(
        default_factory=dict,
        description="segment name -> card STATUS colour, over the built-in mapping (docs/HUBSPOT_CARD.md)",
    )
    shutdown_grace_seconds: float = Field(30, ge=0, le=3600)
    lease_seconds: float = Field(120, ge=5, le=3600, description="a dead replica's sync lock expires after")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            from croniter import croniter

            if not croniter.is_valid(value):
                raise ValueError(f"{value!r} is not a cron expression (five fields, e.g. '*/15 * * * *')")
        return value

    @model_validator(mode="after")
    def _no_empty_secret(self) -> ServeConfig:
        _refuse_empty_secrets(self)
        return self


class LogConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "human", "json"] = "auto"
