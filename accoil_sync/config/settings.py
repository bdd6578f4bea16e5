"""The root settings object and how it is loaded: TOML file, then ``ACCOIL_SYNC_*`` env, then secrets files.

Precedence, highest first: environment variables, the secrets directory, the TOML file, defaults.
Secrets are refused in the TOML file: a config file gets committed and shared, a token must not be.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from accoil_sync.config.models import (
    DestinationsConfig,
    LogConfig,
    ProfileConfig,
    SafetyConfig,
    ServeConfig,
    SourceConfig,
    StateConfig,
    credentials_required,
)
from accoil_sync.errors import ConfigError

ENV_PREFIX = "ACCOIL_SYNC_"
DEFAULT_CONFIG = Path("accoil-sync.toml")
DEFAULT_SECRETS_DIR = Path("/run/secrets")
MASK = "**********"

_toml_data: ContextVar[dict[str, Any] | None] = ContextVar("_toml_data", default=None)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        secrets_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    source: SourceConfig
    state: StateConfig = StateConfig()
    profiles: list[ProfileConfig] = Field(default_factory=lambda: [ProfileConfig(name="Default")])
    destinations: DestinationsConfig = DestinationsConfig()
    log: LogConfig = LogConfig()
    serve: ServeConfig = ServeConfig()
    safety: SafetyConfig = SafetyConfig()

    @model_validator(mode="after")
    def _profiles_distinct(self) -> Settings:
        if not self.profiles:
            raise ValueError("profiles: configure at least one score profile")
        seen: dict[str, str] = {}
        for profile in self.profiles:
            # HubSpot lower-cases property names, so profiles must differ case-insensitively.
            folded = profile.score_name.lower()
            if folded in seen:
                raise ValueError(
                    f"profiles: {seen[folded]!r} and {profile.name!r} both become trait name part "
                    f"{profile.score_name!r} (compared case-insensitively); rename one"
                )
            seen[folded] = profile.name
        if self.source.kind == "events":
            unscored = [p.name for p in self.profiles if p.scoring is None]
            if unscored:
                raise ValueError(
                    f"profiles: {unscored} have no [profiles.scoring]; source.kind = 'events' computes every "
                    "profile from events (docs/SCORING.md)"
                )
        return self

    @model_validator(mode="after")
    def _jsonl_beside_state(self) -> Settings:
        """Unless set, the jsonl destination's file lives beside the state store (``<state dir>/out/``)."""
        jsonl = self.destinations.jsonl
        if "path" not in jsonl.model_fields_set:
            moved = jsonl.model_copy(update={"path": self.state.directory / "out" / "deliveries.jsonl"})
            # model_copy, not assignment: the sections are frozen and their defaults are shared
            object.__setattr__(self, "destinations", self.destinations.model_copy(update={"jsonl": moved}))
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = InitSettingsSource(settings_cls, init_kwargs=_toml_data.get() or {})
        # Secret files are named like the env vars without the prefix, e.g.
        # /run/secrets/destinations__hubspot__access_token.
        secrets = NestedSecretsSettingsSource(file_secret_settings, secrets_prefix="")
        return (init_settings, env_settings, secrets, toml)

    def profile_by_source_name(self) -> dict[str, ProfileConfig]:
        return {p.name: p for p in self.profiles}


def config_path(explicit: Path | None, environ: Mapping[str, str] | None = None) -> Path | None:
    """``--config`` wins, then ``ACCOIL_SYNC_CONFIG``, then ``./accoil-sync.toml`` if it exists."""
    environ = os.environ if environ is None else environ
    if explicit is not None:
        return explicit
    if env := environ.get(f"{ENV_PREFIX}CONFIG"):
        return Path(env)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def load_settings(
    path: Path | None = None, *, secrets_dir: Path | None = None, credentials: bool = True
) -> Settings:
    """Load and validate; every problem becomes a ``ConfigError`` naming the field, never a traceback.
    ``credentials=False``: for a command that reads the source only, enabled destinations may lack them."""
    path = config_path(path)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError([("--config", f"file {str(path)!r} does not exist")]) from None
        except IsADirectoryError:
            raise ConfigError([("--config", f"{str(path)!r} is a directory, not a TOML file")]) from None
        except OSError as exc:
            raise ConfigError([("--config", f"cannot read {str(path)!r}: {exc.strerror or exc}")]) from None
        except UnicodeDecodeError as exc:
            raise ConfigError(
                [(str(path), f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})")]
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([(str(path), f"not valid TOML: {exc}")]) from None
        _refuse_secrets_in_file(data, path)
        data.pop("config", None)
        _resolve_paths(data, path.resolve().parent)
    if secrets_dir is None and DEFAULT_SECRETS_DIR.is_dir():
        secrets_dir = DEFAULT_SECRETS_DIR
    token = _toml_data.set(data)
    required = credentials_required.set(credentials)
    try:
        return Settings(_secrets_dir=secrets_dir)
    except ValidationError as exc:
        problems = _problems(exc)
        if path is None and any(e["type"] == "missing" and e["loc"] == ("source",) for e in exc.errors()):
            # Nothing was read from a file: the likelier mistake is the missing file, not the section.
            problems = [
                (
                    field,
                    f"{message}; no config file was read (no ./{DEFAULT_CONFIG} here): pass "
                    f"-c FILE or set ACCOIL_SYNC_CONFIG"
                    if message.startswith("missing [source] section")
                    else message,
                )
                for field, message in problems
            ]
        raise ConfigError(problems) from None
    except SettingsError as exc:
        # pydantic-settings could not even parse a value, e.g. a list or table given in an environment
        # variable that is not JSON (ACCOIL_SYNC_PROFILES=Default).
        raise ConfigError([_settings_problem(exc)]) from None
    finally:
        credentials_required.reset(required)
        _toml_data.reset(token)


# Settings that name files, as (section path, key). Relative values written in the config file -- and the
# state store's default -- are relative to the file's directory, so that cron, systemd or a CI step run
# from anywhere reads and writes the same files. Values from the environment stay relative to the working
# directory, like any command-line path.
FILE_SETTINGS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("state",), "path"),
    (("destinations", "jsonl"), "path"),
    (("source",), "database"),
)
SOURCE_FILES = ("users", "accounts")  # paths or globs when source.kind = "files", else SQL


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    state = data.setdefault("state", {})
    if isinstance(state, dict):  # (anything else is reported by validation)
        state.setdefault("path", str(StateConfig.model_fields["path"].default))
    targets: list[tuple[dict[str, Any], str]] = []
    for section_path, key in FILE_SETTINGS:
        node: Any = data
        for part in section_path:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            targets.append((node, key))
    source = data.get("source")
    if isinstance(source, dict) and source.get("kind", "files") == "files":
        targets += [(source, key) for key in SOURCE_FILES]
    if (
        isinstance(source, dict)
        and source.get("kind") == "events"
        and source.get("events_from", "files") == "files"
    ):
        # globs of event files and of the accounts' details (else they are queries)
        targets += [(source, "events"), (source, "accounts")]
    for node, key in targets:
        value = node.get(key)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            node[key] = str(base / value)
        elif isinstance(value, str) and value.startswith("~"):
            node[key] = str(Path(value).expanduser())


def secret_paths(model: type[Any] = Settings, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every field path typed as a secret, e.g. ('destinations', 'hubspot', 'access_token')."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        path = (*prefix, name)
        args = getattr(annotation, "__args__", ())
        if annotation is SecretStr or SecretStr in args:
            yield path
            continue
        candidates = [annotation, *args]
        for candidate in candidates:
            if isinstance(candidate, type) and hasattr(candidate, "model_fields"):
                yield from secret_paths(candidate, path)


def env_name(path: tuple[str | int, ...]) -> str:
    return ENV_PREFIX + "__".join(str(p).upper() for p in path)


def _refuse_secrets_in_file(data: dict[str, Any], path: Path) -> None:
    problems = []
    for secret in secret_paths():
        node: Any = data
        for part in secret:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            problems.append(
                (
                    ".".join(secret),
                    f"secrets are not read from {path.name}; remove it there and set env {env_name(secret)} "
                    "or a file of that name in the secrets directory",
                )
            )
    if problems:
        raise ConfigError(problems)


def _settings_problem(exc: SettingsError) -> tuple[str, str]:
    match = re.search(r'field "([^"]+)" from source "(\w+)"', str(exc))
    if match is None:
        return ("(settings)", str(exc).splitlines()[0])
    field, source = match.groups()
    where = f"env {env_name((field,))}" if source.startswith("Env") else source
    return (
        field,
        f"cannot parse the value from {where}: a list or table there must be JSON, "
        f'e.g. {env_name(("profiles",))}=\'[{{"name": "Default"}}]\'',
    )


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    secrets = {".".join(p) for p in secret_paths()}
    out = []
    for error in exc.errors(include_url=False):
        loc = tuple(str(p) for p in error["loc"])
        field = ".".join(loc) or "(root)"
        message = error["msg"].removeprefix("Value error, ")
        if "input" in error and error["type"] not in ("missing", "value_error") and loc:
            shown = MASK if field in secrets else repr(error["input"])
            if len(shown) > 80:
                shown = shown[:77] + "..."
            message = f"{message} (got {shown})"
        if empty := re.match(r"^(\w+) is set but empty", message):
            field = f"{field}.{empty.group(1)}"  # raised by the section's validator: name the field itself
        if error["type"] == "extra_forbidden":
            message = "unknown setting (check the spelling against docs/CONFIG.md)"
        if error["type"] == "missing" and field == "source":
            message = "missing [source] section (users/accounts files or queries)"
        out.append((field, message))
    return out


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data with every secret replaced by a mask."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    for secret in secret_paths():
        node: Any = data
        for part in secret[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(secret[-1]) is not None:
            node[secret[-1]] = MASK
    return data


def secret_values(settings: Settings) -> list[str]:
    """Plain secret values, for the log redaction filter."""
    out = []
    for secret in secret_paths():
        node: Any = settings
        for part in secret:
            node = getattr(node, part, None)
        if isinstance(node, SecretStr) and node.get_secret_value():
            out.append(node.get_secret_value())
    return out
