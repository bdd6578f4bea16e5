"""Secrets are masked by value in every form a log line or an alert can carry them: any case (hosts and
hex escapes change case on the way out), percent-encoded, a webhook URL's path or token segment alone,
in JSON extras and in exception text."""

from __future__ import annotations

import io
import json
import logging
from urllib.parse import quote, quote_plus

import pytest

from accoil_sync import logs

WEBHOOK = "https://Hooks.Example.COM/services/T0001/B0002/SENTINELtokenXYZ123abc"
TOKEN = "pat-na1-SENTINEL-4b1d-9c2e"


@pytest.fixture
def captured() -> io.StringIO:
    stream = io.StringIO()
    logs.setup("DEBUG", "json", [WEBHOOK, TOKEN, "abc"], stream=stream)  # "abc": too short to mask
    return stream


@pytest.mark.parametrize(
    "leak",
    [
        WEBHOOK,
        WEBHOOK.lower(),  # httpx logs the URL with the host lower-cased
        "https://hooks.example.com/services/T0001/B0002/SENTINELtokenXYZ123abc",
        quote(WEBHOOK, safe=""),
        quote(WEBHOOK, safe="").lower(),  # %3a%2f%2f
        quote_plus(WEBHOOK),
        "/services/T0001/B0002/SENTINELtokenXYZ123abc",
        "SENTINELtokenXYZ123abc",  # the token segment on its own
        TOKEN,
        TOKEN.upper(),
        quote(TOKEN),
        f"Bearer {TOKEN}",
    ],
)
def test_every_form_of_a_secret_is_masked(captured: io.StringIO, leak: str) -> None:
    log = logging.getLogger("accoil_sync.test")
    log.info("posting to %s now", leak)
    log.info("extra", extra={"url": leak})
    try:
        raise RuntimeError(f"failed: {leak}")
    except RuntimeError:
        log.exception("crashed")
    logging.getLogger("httpx").info('HTTP Request: POST %s "HTTP/1.1 200 OK"', leak)
    out = captured.getvalue()
    for line in out.splitlines():
        json.loads(line)  # still valid JSON lines
    assert "SENTINEL" not in out.upper()
    assert out.count(logs.MASK) >= 4


def test_short_values_and_plain_words_are_left_alone(captured: io.StringIO) -> None:
    logging.getLogger("accoil_sync.test").info("abc services B0002 done")
    out = captured.getvalue()
    assert "abc services" in out and logs.MASK not in out


def test_redact_masks_text_that_leaves_another_way(captured: io.StringIO) -> None:
    assert logs.redact(f"alert: webhook {WEBHOOK.lower()} said no") == f"alert: webhook {logs.MASK} said no"


def test_log_lines_follow_stderr_when_it_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """The progress bars (rich) replace sys.stderr while they are drawn and print what is written to it
    above them; a handler holding the stream it started with wrote into the bars instead. Still redacted."""
    before = io.StringIO()
    monkeypatch.setattr("sys.stderr", before)
    logs.setup("INFO", "human", [TOKEN])
    during = io.StringIO()
    monkeypatch.setattr("sys.stderr", during)
    logging.getLogger("accoil_sync.test").info("sent with %s", TOKEN)
    assert "sent with" in during.getvalue() and TOKEN not in during.getvalue()
    assert before.getvalue() == ""
