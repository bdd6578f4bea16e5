"""Relative paths in a config file are relative to the file (cron runs from anywhere); environment values
stay relative to the working directory; the jsonl file follows the state store unless set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from accoil_sync.config.settings import load_settings
from tests.conftest import write
from tests.unit.test_cli import cli


def test_paths_in_the_file_resolve_against_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write(
        tmp_path / "conf" / "sync.toml",
        """
        [source]
        users = "data/*.csv"
        accounts = "/abs/accounts.csv"
        [destinations.jsonl]
        enabled = true
        """,
    )
    monkeypatch.chdir("/")
    settings = load_settings(cfg)
    base = tmp_path / "conf"
    assert settings.source.users == str(base / "data/*.csv")
    assert settings.source.accounts == "/abs/accounts.csv"
    assert settings.state.path == base / ".accoil-sync/state.db"  # the default, too
    assert settings.destinations.jsonl.path == base / ".accoil-sync/out/deliveries.jsonl"
    monkeypatch.setenv("ACCOIL_SYNC_STATE__PATH", "/data/state.db")
    moved = load_settings(cfg)
    assert moved.state.path == Path("/data/state.db")
    assert moved.destinations.jsonl.path == Path("/data/out/deliveries.jsonl")  # beside the state


def test_sql_sources_are_not_taken_for_paths(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", '[source]\nkind = "duckdb"\nusers = "SELECT 1"\ndatabase = "m.duckdb"\n')
    settings = load_settings(cfg)
    assert settings.source.users == "SELECT 1"
    assert settings.source.database == str(tmp_path / "m.duckdb")


def test_an_events_glob_resolves_against_the_file_but_an_events_query_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = '[[profiles]]\nname = "D"\nwindow_days = 7\n[profiles.scoring]\nweights = { "A" = 1 }\n'
    files = write(tmp_path / "conf" / "e.toml", '[source]\nkind = "events"\nevents = "ev/*.csv"\n' + profile)
    query = write(
        tmp_path / "conf" / "q.toml",
        '[source]\nkind = "events"\nevents_from = "duckdb"\nevents = "SELECT * FROM ev"\n' + profile,
    )
    monkeypatch.chdir("/")
    assert load_settings(files).source.events == str(tmp_path / "conf" / "ev/*.csv")
    assert load_settings(query).source.events == "SELECT * FROM ev"


def test_the_example_syncs_from_another_directory_into_its_own_state(examples: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "cron-cwd"
    elsewhere.mkdir()
    os.chdir(elsewhere)
    result = cli("sync", "-c", str(examples / "accoil-sync.toml"))
    assert result.returncode == 4, result.stderr  # delivered, but the example ships three bad rows on purpose
    assert (examples / ".accoil-sync" / "state.db").is_file()
    assert len((examples / ".accoil-sync" / "out" / "deliveries.jsonl").read_text().splitlines()) == 11
    assert list(elsewhere.iterdir()) == []  # nothing written where it ran from


def test_the_demo_keeps_its_own_state_and_leaves_the_examples_alone(examples: Path) -> None:
    from accoil_sync.demo import run_demo

    assert run_demo(examples / "accoil-sync.toml") == 0
    assert Path(".accoil-sync/demo/state.db").is_file()
    assert not (examples / ".accoil-sync").exists()
