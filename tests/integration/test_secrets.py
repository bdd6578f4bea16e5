"""Sentinel secrets, a full sync to every destination at debug level: they never show up anywhere a user
or a log collector would see them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import start_serve, write

SENTINELS = {
    "ACCOIL_SYNC_DESTINATIONS__SEGMENT__WRITE_KEY": "wk-SENTINEL-segment-4b1d",
    "ACCOIL_SYNC_DESTINATIONS__INTERCOM__ACCESS_TOKEN": "tok-SENTINEL-intercom-9c2e",
    "ACCOIL_SYNC_DESTINATIONS__HUBSPOT__ACCESS_TOKEN": "pat-SENTINEL-hubspot-7a3f",
    "ACCOIL_SYNC_SERVE__HUBSPOT_CLIENT_SECRET": "cs-SENTINEL-card-5e6f",
    "ACCOIL_SYNC_SERVE__TRIGGER_TOKEN": "tt-SENTINEL-trigger-1a2b",
    "ACCOIL_SYNC_SERVE__ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hooks/SENTINEL-webhook-3c4d",
}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "accoil_sync", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **SENTINELS},
    )


def test_sentinels_never_appear(examples: Path, served: str, tmp_path: Path) -> None:
    write(
        tmp_path / "c.toml",
        f"""
        [source]
        users = "examples/users.csv"
        accounts = "examples/accounts.csv"
        [state]
        path = "state/state.db"
        [destinations.segment]
        enabled = true
        base_url = "{served}/segment"
        [destinations.intercom]
        enabled = true
        base_url = "{served}/intercom"
        create_missing_contacts = true
        [destinations.hubspot]
        enabled = true
        base_url = "{served}/hubspot"
        create_missing = true
        schema_ttl_hours = 0  # every run reads the schema, so the triggered run meets the revoked token
        [destinations.card]
        enabled = true
    """,
    )
    outputs = [
        cli("config", "check", "-c", "c.toml"),
        cli("plan", "-c", "c.toml", "--json", "--log-level", "DEBUG"),
        cli("sync", "-c", "c.toml", "--log-format", "json", "--log-level", "DEBUG"),
        cli("status", "-c", "c.toml", "--json"),
        cli("sync", "-c", "c.toml", "--log-format", "human", "--log-level", "DEBUG"),
    ]
    assert [o.returncode for o in outputs] == [0, 4, 4, 0, 4]  # the example ships three bad rows
    outputs.append(cli("serve", "--help"))
    text = "".join(o.stdout + o.stderr for o in outputs) + serve_session(served)
    assert "DEBUG" in text or '"level": "debug"' in text
    for secret in SENTINELS.values():
        assert secret not in text
    for path in Path("state").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(secret.encode() in data for secret in SENTINELS.values()), path


def serve_session(emulator: str) -> str:
    """``serve`` at debug level: signed and forged card requests, the details page, a bad trigger, a good
    one whose run meets a revoked HubSpot token (so it alerts, to a closed port), metrics, readiness."""
    import signal
    import time

    import httpx
    from hubspot.utils.signature import Signature

    proc, base = start_serve("-c", "c.toml", "--log-level", "DEBUG", env=SENTINELS)
    seen = []
    try:
        url = f"{base}/card/app?associatedObjectType=CONTACT&email=ada@acme.io"
        stamp = str(int(time.time() * 1000))
        secret = SENTINELS["ACCOIL_SYNC_SERVE__HUBSPOT_CLIENT_SECRET"]
        sig = Signature.get_signature(secret, "", "v3", http_uri=url, http_method="GET", timestamp=stamp)
        card = httpx.get(url, headers={"X-HubSpot-Signature-v3": sig, "X-HubSpot-Request-Timestamp": stamp})
        httpx.post(f"{emulator}/_emulator/faults/hubspot", json={"revoked": True})
        assert card.status_code == 200 and card.json()["found"]
        responses = [
            card,
            httpx.get(card.json()["details_url"]),
            httpx.get(
                url, headers={"X-HubSpot-Signature-v3": "forged", "X-HubSpot-Request-Timestamp": stamp}
            ),
            httpx.post(f"{base}/syncs/trigger", headers={"Authorization": "Bearer wrong"}),
            httpx.post(
                f"{base}/syncs/trigger",
                headers={"Authorization": f"Bearer {SENTINELS['ACCOIL_SYNC_SERVE__TRIGGER_TOKEN']}"},
            ),
        ]
        assert [r.status_code for r in responses] == [200, 200, 401, 401, 202]
        time.sleep(3)  # the triggered run, its alert attempt
        responses.append(httpx.get(f"{base}/metrics"))
        responses.append(httpx.get(f"{base}/readyz"))
        seen += [r.text + str(r.headers) for r in responses]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    seen += [out, err]
    assert "alert webhook unreachable" in err  # the alert path ran, and logged without its URL
    return "".join(seen)
