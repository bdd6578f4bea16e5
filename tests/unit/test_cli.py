"""The command line: exit codes, JSON output, the demo, and logs that carry the run id but no secret."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from accoil_sync.demo import run_demo
from tests.conftest import start_serve, write

SENTINEL = "sk-SENTINEL-9f8e7d6c5b4a"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "accoil_sync", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_demo_second_run_reports_zero_changes(examples: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_demo(examples / "accoil-sync.toml") == 0
    printed = capsys.readouterr().out
    assert "changes on the second run: 0; writes sent to the vendors: 0" in printed
    assert "segment: {'ok': 11}" in printed
    assert "users.csv:9 [score] 140.0 is above 100" in printed
    assert (
        "events unchanged, second run: changes 0; writes sent to the vendors: 0" in printed
    )  # the events path


def test_plan_json_and_sync_exit_codes(examples: Path) -> None:
    planned = cli("plan", "-c", "examples/accoil-sync.toml", "--json")
    assert planned.returncode == 4  # the example ships three bad rows on purpose
    data = json.loads(planned.stdout)
    counts = {k: data["source"]["user"][k] for k in ("rows", "valid", "invalid", "duplicates", "objects")}
    assert counts == {"rows": 10, "valid": 7, "invalid": 3, "duplicates": 0, "objects": 7}
    assert {e["row"] for e in data["invalid_rows"]} == {9, 10, 11}
    plan = data["destinations"]["jsonl"]["plan"]
    assert plan["user"]["new"] == 7 and plan["account"]["new"] == 4
    sample = data["destinations"]["jsonl"]["sample"][0]
    assert sample["changes"]["Accoil_Default_Score"] == {"from": None, "to": 88}
    synced = cli("sync", "-c", "examples/accoil-sync.toml", "--log-format", "json")
    assert synced.returncode == 4  # every delivery succeeded; the source had invalid rows
    status = cli("status", "-c", "examples/accoil-sync.toml", "--json")
    assert json.loads(status.stdout)["runs"][0]["counts"] == {"jsonl": {"ok": 11}}


def test_unknown_destination_is_a_usage_error(examples: Path) -> None:
    result = cli("sync", "-c", "examples/accoil-sync.toml", "-d", "hubspot")
    assert result.returncode == 2
    assert "hubspot not enabled" in result.stderr
    assert "Traceback" not in result.stderr


def test_logs_are_json_with_run_id_and_never_show_secrets(tmp_path: Path) -> None:
    write(tmp_path / "users.csv", "user_id,score\nu1,10\n")
    write(
        tmp_path / "c.toml",
        f"""
        [source]
        users = "users.csv"
        [source.columns]
        user_id = "user_id"
        [destinations.jsonl]
        enabled = true
        path = "out/{SENTINEL}.jsonl"
    """,
    )
    env = {"ACCOIL_SYNC_DESTINATIONS__SEGMENT__WRITE_KEY": SENTINEL, "ACCOIL_SYNC_SOURCE__DATABASE": SENTINEL}
    result = cli("sync", "-c", "c.toml", "--log-format", "json", "--log-level", "DEBUG", env=env)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert lines and all(line["run_id"] for line in lines)
    assert SENTINEL not in result.stderr + result.stdout


def test_serve_refuses_to_start_without_the_client_secret_the_card_needs(examples: Path) -> None:
    write("serve.toml", '[source]\nusers = "examples/users.csv"\n[destinations.card]\nenabled = true\n')
    done = cli("serve", "-c", "serve.toml")
    assert done.returncode == 2
    assert "serve.hubspot_client_secret: required to verify HubSpot's card requests" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_answers_health_checks_and_stops_cleanly_on_sigterm(examples: Path) -> None:
    import signal

    import httpx

    proc, base = start_serve(
        "-c",
        "examples/accoil-sync.toml",
        "--log-format",
        "json",
        env={"ACCOIL_SYNC_SERVE__HUBSPOT_CLIENT_SECRET": SENTINEL},
    )
    try:
        health = httpx.get(f"{base}/healthz", timeout=5)
        assert health.json() == {"status": "ok"}
        assert httpx.get(f"{base}/metrics", timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once shut down
    finally:
        if proc.poll() is None:
            proc.kill()
    _, stderr = proc.communicate()
    assert SENTINEL not in stderr
    assert "Application shutdown complete" in stderr
