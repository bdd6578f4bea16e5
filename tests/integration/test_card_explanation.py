"""The card's details page explains an events-sourced score (stored at sync time, never scored on a
request) and shows no explanation for a metrics source."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from accoil_sync.config.settings import Settings
from tests.integration.conftest import CARD_SECRET, PUBLIC, signed
from tests.unit.test_scoring import FIXTURE, SCORING, ago, events_csv, settings_for

# One more weighted event whose name is markup: the page must show it as text.
MARKUP = "<b>O'Neil & co</b>"


def events_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("ACCOIL_SYNC_SERVE__HUBSPOT_CLIENT_SECRET", CARD_SECRET)
    events_csv([*FIXTURE, ("u9", "", MARKUP, ago(1))])
    scoring = SCORING.replace('"Teammate Invited" = 7 }', f'"Teammate Invited" = 7, "{MARKUP}" = 1 }}')
    return settings_for(
        scoring=scoring,
        extra=f'as_of = "2026-11-30"\n[destinations.card]\nenabled = true\n[serve]\npublic_url = "{PUBLIC}"\n',
    )


def sync(settings: Settings) -> Any:
    from accoil_sync.sync.runner import execute

    return asyncio.run(execute(settings, deliver=True, destinations=["card"]))


async def details_page(settings: Settings, kind: str, key: str) -> str:
    from accoil_sync.serve.app import create_app

    field = "accoil_user_id" if kind == "CONTACT" else "accoil_account_id"
    body = json.dumps({"objectType": kind, field: key})
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC) as client:
        card = await client.post(
            "/card/app", content=body, headers=signed("/card/app", body=body, method="POST")
        )
        assert card.json()["found"] is True, card.text
        page = await client.get(card.json()["details_url"])
    assert page.status_code == 200
    return page.text


async def test_an_events_source_card_explains_the_score(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = events_settings(monkeypatch)
    first = await asyncio.to_thread(sync, settings)
    assert first.deliveries["card"].counts["ok"] > 0, first.to_json()

    # The scorer must not run on a request: the page is built from the card store alone.
    import accoil_sync.scoring as scoring

    with monkeypatch.context() as patched:
        patched.setattr(scoring.Scorer, "run", lambda *a, **k: pytest.fail("scored on a request"))
        pages = {
            key: await details_page(settings, kind, key)
            for kind, key in (("CONTACT", "u2"), ("COMPANY", "A"), ("CONTACT", "u9"))
        }
    page, account, markup = pages["u2"], pages["A"], pages["u9"]
    # The numbers `accoil-sync score --explain u2` prints (tests/unit/test_scoring_cli.py), as a table.
    assert '<div class="explanation"><h2>Why this score</h2>' in page
    assert "<tr><td>Report Viewed</td><td>—</td><td>5</td><td>3</td><td>15</td><td>100%</td></tr>" in page
    # u9's extra event (raw 1) moves the anchor: window raws 1, 3, 7, 15, 35 -> P90 = 15 + 0.6 x 20 = 27;
    # u2 scores round(100 x 15 / 27) = 56, 19 below 75, reached at raw 74.5 x 27 / 100 = 20.115: 5.1 more.
    assert "Raw score 15 against the P90 anchor 27." in page
    assert (
        "Next band: Most Engaged at 75, 19 point(s) away — 5.1 weighted point(s) more in the window, "
        "e.g. 1 x Project Created (weight 9)." in page
    )

    assert "<tr><td>Project Created</td><td>—</td><td>2</td><td>9</td><td>18</td>" in account
    # A: the mean of u1 (100) and u2 (56) is 78, already the top band.
    assert "In the top score band." in account and "Raw score" not in account

    # Event names are text, never markup (the quote in it is escaped too).
    assert MARKUP not in markup
    assert "&lt;b&gt;O&#x27;Neil &amp; co&lt;/b&gt;" in markup

    # Unchanged events: nothing is re-stored; the history keeps the metrics, not the explanations.
    again = await asyncio.to_thread(sync, settings)
    assert again.deliveries["card"].counts == {}, again.to_json()
    db = sqlite3.connect(Path(settings.state.path))
    (current,) = db.execute("SELECT record FROM card_objects WHERE kind = 'user' AND key = 'u2'").fetchone()
    history = [json.loads(r[0]) for r in db.execute("SELECT record FROM card_history WHERE key = 'u2'")]
    db.close()
    assert json.loads(current)["explanations"]["Default"]["top"][0]["event"] == "Report Viewed"
    assert history and all("explanations" not in h for h in history)

    # One more Report Viewed for u1 (earlier that day): its metrics stay (score capped at 100, same day,
    # same last time), its explanation does not -- the card stores the new one, and the score history
    # gets no new point for it.
    before, points = stored(settings, "u1"), history_points("u1", settings)
    events_csv([("u1", "A", "Report Viewed", ago(1, 8))], "events/late.csv")
    third = await asyncio.to_thread(sync, settings)
    after = stored(settings, "u1")
    assert after["metrics"] == before["metrics"] and after["metrics"]["Default"]["score"] == 100
    counts = {c["event"]: c["count"] for c in after["explanations"]["Default"]["top"]}
    assert counts["Report Viewed"] == 5 and third.deliveries["card"].counts["ok"] >= 1
    assert history_points("u1", settings) == points


def history_points(key: str, settings: Settings) -> int:
    db = sqlite3.connect(Path(settings.state.path))
    try:
        (n,) = db.execute("SELECT count(*) FROM card_history WHERE key = ?", (key,)).fetchone()
    finally:
        db.close()
    return int(n)


def stored(settings: Settings, key: str) -> dict[str, Any]:
    db = sqlite3.connect(Path(settings.state.path))
    try:
        (record,) = db.execute(
            "SELECT record FROM card_objects WHERE kind = 'user' AND key = ?", (key,)
        ).fetchone()
    finally:
        db.close()
    document: dict[str, Any] = json.loads(record)
    return document


async def test_a_metrics_source_card_has_no_explanation(card_client: httpx.AsyncClient) -> None:
    body = json.dumps({"objectType": "CONTACT", "accoil_user_id": "u_001"})
    card = await card_client.post(
        "/card/app", content=body, headers=signed("/card/app", body=body, method="POST")
    )
    page = await card_client.get(card.json()["details_url"])
    assert page.status_code == 200 and "Engagement score" in page.text
    assert "Why this score" not in page.text and 'class="explanation"' not in page.text
