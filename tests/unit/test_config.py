"""Config: TOML + env + secrets files, and errors that name the field without a traceback."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from accoil_sync.cli import app
from accoil_sync.config.settings import load_settings, masked_dump
from accoil_sync.errors import ConfigError
from tests.conftest import write

runner = CliRunner()
SENTINEL = "pat-na1-SENTINEL-0123456789abcdef"


def test_env_overrides_toml_with_nested_delimiter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(
        tmp_path / "c.toml",
        """
        [source]
        users = "u.csv"
        [destinations.jsonl]
        enabled = true
        batch_size = 10
    """,
    )
    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__JSONL__BATCH_SIZE", "25")
    monkeypatch.setenv("ACCOIL_SYNC_STATE__PATH", "elsewhere/state.db")
    settings = load_settings(cfg)
    assert settings.destinations.jsonl.batch_size == 25
    assert settings.state.path == Path("elsewhere/state.db")


def test_config_path_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(tmp_path / "other.toml", '[source]\nusers = "x.csv"\n')
    monkeypatch.setenv("ACCOIL_SYNC_CONFIG", str(cfg))
    assert load_settings().source.users == str(tmp_path / "x.csv")  # relative to the config file


def test_secret_from_secrets_dir_is_masked_in_dump(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    write(secrets / "destinations__hubspot__access_token", SENTINEL)
    cfg = write(tmp_path / "c.toml", '[source]\nusers = "u.csv"\n[destinations.hubspot]\nenabled = true\n')
    settings = load_settings(cfg, secrets_dir=secrets)
    assert settings.destinations.hubspot.access_token is not None
    assert settings.destinations.hubspot.access_token.get_secret_value() == SENTINEL
    dumped = json.dumps(masked_dump(settings))
    assert SENTINEL not in dumped and "**********" in dumped


def test_secret_in_toml_is_refused_and_not_echoed(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "c.toml", f'[source]\nusers = "u.csv"\n[destinations.segment]\nwrite_key = "{SENTINEL}"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert info.value.problems[0][0] == "destinations.segment.write_key"
    assert "ACCOIL_SYNC_DESTINATIONS__SEGMENT__WRITE_KEY" in str(info.value)
    assert SENTINEL not in str(info.value)


@pytest.mark.parametrize(
    ("toml", "env", "field", "fragment"),
    [
        (
            '[source]\nusers = "u.csv"\n[destinations.hubspot]\ntier = "gold"\n',
            {},
            "destinations.hubspot.tier",
            "'gold'",
        ),
        (
            '[source]\nusers = "u.csv"\n[destinations.jsonl]\nenbled = true\n',
            {},
            "destinations.jsonl.enbled",
            "unknown setting",
        ),
        (
            '[source]\nusers = "u.csv"\n',
            {"ACCOIL_SYNC_DESTINATIONS__JSONL__MAX_CONCURRENCY": "many"},
            "destinations.jsonl.max_concurrency",
            "'many'",
        ),
        (
            '[source]\nusers = "u.csv"\n[destinations.segment]\nenabled = true\n',
            {},
            "destinations.segment",
            "ACCOIL_SYNC_DESTINATIONS__SEGMENT__WRITE_KEY",
        ),
        ("[state]\n", {}, "source", "missing [source]"),
        (
            '[source]\nusers = "u.csv"\n[[profiles]]\nname = "Default"\n[[profiles]]\nname = "default"\n',
            {},
            "(root)",
            "both become",
        ),
        (
            '[source]\nusers = "u.csv"\n[[profiles]]\nname = "---"\n',
            {},
            "profiles.0.name",
            "no letters or digits",
        ),
        ('[source]\nusers = "u.csv"\nchunk_size = 5\n', {}, "source.chunk_size", "greater than or equal"),
        ("[source\n", {}, "c.toml", "not valid TOML"),
        ('[source]\nusers = "u.csv"\n[serve]\nschedule = "every hour"\n', {}, "serve.schedule", "not a cron"),
        (
            '[source]\nusers = "u.csv"\n[serve]\nsignature_versions = ["v1"]\n',
            {},
            "serve.signature_versions.0",
            "'v3' or 'v2'",
        ),
        (
            '[source]\nusers = "u.csv"\n[serve]\npublic_url = "cards.example.com"\n',
            {},
            "serve.public_url",
            "should match pattern",
        ),
        (
            '[source]\nusers = "u.csv"\n[serve]\nalert_rejected_share = 5\n',
            {},
            "serve.alert_rejected_share",
            "1",
        ),
        (
            '[source]\nusers = "u.csv"\n[serve]\nhubspot_client_secret = "x"\n',
            {},
            "serve.hubspot_client_secret",
            "ACCOIL_SYNC_SERVE__HUBSPOT_CLIENT_SECRET",
        ),
        (
            '[source]\nusers = "u.csv"\n[serve.segment_states]\n"VIP" = "GREEN"\n',
            {},
            "serve.segment_states.VIP",
            "'SUCCESS'",
        ),
        ('[source]\nusers = "u.csv"\n', {"ACCOIL_SYNC_SERVE__PORT": "80000"}, "serve.port", "65535"),
        # issue 15: input that crashed or slipped through
        ('[source]\nusers = "u.csv"\n', {"ACCOIL_SYNC_PROFILES": "Default"}, "profiles", "must be JSON"),
        (
            '[source]\nusers = "u.csv"\n',
            {"ACCOIL_SYNC_DESTINATIONS__SEGMENT__WRITE_KEY": ""},
            "destinations.segment.write_key",
            "set but empty",
        ),
        ('[source]\nusers = "u.csv"\n[state]\npath = "."\n', {}, "state.path", "is a directory"),
        ('[source]\nusers = "u.csv"\n[state]\npath = "/dev/null"\n', {}, "state.path", "not a regular file"),
        (
            '[source]\nusers = "u.csv"\n[destinations.hubspot]\nmax_removed_share = 2\n',
            {},
            "destinations.hubspot.max_removed_share",
            "less than or equal to 1",
        ),
    ],
)
def test_bad_config_names_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, env: dict[str, str], field: str, fragment: str
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    fields = [p for p, _ in info.value.problems]
    assert any(p == field or p.endswith(field) for p in fields), info.value.problems
    assert fragment in str(info.value)


def test_cli_config_check_exit_2_without_traceback(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", '[source]\nusers = "u.csv"\n[destinations.intercom]\nregion = "mars"\n')
    result = subprocess.run(
        [sys.executable, "-m", "accoil_sync", "config", "check", "--config", str(cfg)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "destinations.intercom.region" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_config_check_prints_masked_effective_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write(tmp_path / "c.toml", '[source]\nusers = "u.csv"\n[destinations.segment]\nenabled = true\n')
    write(tmp_path / "u.csv", "user_id,score\n")
    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__SEGMENT__WRITE_KEY", SENTINEL)
    result = runner.invoke(app, ["config", "check", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert SENTINEL not in result.output
    assert json.loads(result.stdout)["destinations"]["segment"]["write_key"] == "**********"


def test_help_shows_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCOIL_SYNC_DESTINATIONS__SEGMENT__WRITE_KEY", SENTINEL)
    for args in (["--help"], ["sync", "--help"], ["plan", "--help"], ["config", "check", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0
        assert SENTINEL not in result.output


def test_a_config_path_that_is_a_directory_or_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path)
    assert "is a directory" in str(info.value)
    binary = tmp_path / "c.toml"
    binary.write_bytes(b"[source]\nusers = '\xff.csv'\n")
    with pytest.raises(ConfigError) as info:
        load_settings(binary)
    assert "not UTF-8 text (byte 0xff" in str(info.value)


def test_a_command_that_reads_only_the_source_needs_no_vendor_credentials(tmp_path: Path) -> None:
    """``emulate --messy`` seeds CRMs from the configured source: a config that enables HubSpot and Intercom
    (tokens in the sync's environment, not the emulator's) still loads for it, and only for it."""
    write(tmp_path / "users.csv", "user_id,email,score\nu1,a@example.com,5\n")
    config = write(
        tmp_path / "accoil-sync.toml",
        '[source]\nusers = "users.csv"\n[destinations.hubspot]\nenabled = true\n'
        "[destinations.intercom]\nenabled = true\n",
    )
    with pytest.raises(ConfigError) as refused:
        load_settings(config)
    assert "access_token is required" in str(refused.value)
    settings = load_settings(config, credentials=False)
    assert settings.destinations.hubspot.enabled and settings.destinations.hubspot.access_token is None
    with pytest.raises(ConfigError):  # the relaxation does not outlive the call
        load_settings(config)


def test_no_config_file_at_all_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run where there is no ./accoil-sync.toml and no -c: the missing [source] comes from the missing
    file, and the message says how to point at one."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ACCOIL_SYNC_CONFIG", raising=False)
    with pytest.raises(ConfigError) as info:
        load_settings()
    (field, message) = info.value.problems[0]
    assert field == "source" and "no config file was read (no ./accoil-sync.toml here)" in message
    assert "-c FILE" in message
    (tmp_path / "accoil-sync.toml").write_text("[state]\n")
    with pytest.raises(ConfigError) as found:
        load_settings()
    assert "no config file was read" not in str(found.value)  # a file was read: its section is missing


def test_config_check_names_a_source_file_setting_that_matches_no_file(tmp_path: Path) -> None:
    """A run would stop on it (no file matches): ``config check`` says so first, with the setting."""
    cfg = write(tmp_path / "c.toml", '[source]\nusers = "userz.csv"\naccounts = "accounts/*.csv"\n')
    write(tmp_path / "accounts" / "a.csv", "account_id,score\n")
    result = runner.invoke(app, ["config", "check", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "source.users: no file matches" in result.output and "userz.csv" in result.output
    assert "source.accounts" not in result.output  # its glob matches a file


def test_a_json_command_that_fails_on_a_user_mistake_says_so_on_stdout(tmp_path: Path) -> None:
    """A script reading `plan --json` gets the error as JSON on stdout, not an empty stream (the message
    stays on stderr for a person)."""
    cfg = write(
        tmp_path / "c.toml",
        '[source]\nusers = "userz.csv"\n[state]\npath = "state/state.db"\n[destinations.jsonl]\nenabled = true\n',
    )
    result = runner.invoke(app, ["plan", "--config", str(cfg), "--json"])
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data["exit_code"] == 2 and "no file matches" in data["error"]


def test_the_missing_file_hint_is_only_for_a_missing_source_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A [source] given by the environment alone, wrong in itself: its own problem, no file hint."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ACCOIL_SYNC_CONFIG", raising=False)
    monkeypatch.setenv("ACCOIL_SYNC_SOURCE__KIND", "sqlalchemy")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "set source.users" in str(info.value) and "no config file was read" not in str(info.value)


def test_a_user_error_is_masked_like_a_log_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error's words can quote a driver's message, which can quote a secret: masked on stderr and in
    the --json error on stdout, as in every log line."""
    from accoil_sync import cli, logs
    from accoil_sync.errors import SourceError

    logs.setup("INFO", "json", [SENTINEL], stream=io.StringIO())

    def leaky(*_: object, **__: object) -> None:
        raise SourceError(f"could not connect: password {SENTINEL} rejected")

    monkeypatch.setattr(cli, "_load", leaky)
    result = runner.invoke(app, ["plan", "--json"])
    assert result.exit_code == 2
    assert SENTINEL not in result.output
    assert "could not connect" in json.loads(result.stdout)["error"]
