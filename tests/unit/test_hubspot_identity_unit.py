"""HubSpot identity's pure parts: domain and email normalisation."""

from __future__ import annotations

import json

import httpx
import pytest
import respx
from pydantic import SecretStr

from accoil_sync.config.models import HubSpotDestination
from accoil_sync.connectors import Change
from accoil_sync.connectors.http import RetryPolicy
from accoil_sync.connectors.hubspot import HubSpotConnector
from accoil_sync.connectors.hubspot_identity import normalise_domain, normalise_email
from accoil_sync.traits import ObjectKind
from accoil_sync.traits.model import ObjectRecord


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("acme.io", "acme.io"),
        ("ACME.io", "acme.io"),
        ("www.acme.io", "acme.io"),
        ("https://WWW.Acme.io/pricing?x=1", "acme.io"),
        ("http://acme.io:8080/", "acme.io"),
        ("  acme.io.  ", "acme.io"),
        ("wwwacme.io", "wwwacme.io"),  # only a "www." label is dropped
        ("", None),
        (None, None),
        ("https://", None),
        # What exports put in an empty cell is no domain: matched by, it would join unrelated accounts.
        ("n/a", None),
        ("-", None),
        ("Acme Inc", None),
        ("localhost", None),
        ("my_co.io", None),
        ("-acme.io", None),
        ("bücher.de", "bücher.de"),  # an internationalised name, as typed
        ("xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("sub.acme.co.uk", "sub.acme.co.uk"),
    ],
)
def test_domains_are_compared_normalised(raw: str | None, want: str | None) -> None:
    assert normalise_domain(raw) == want


def test_emails_are_compared_lower_case() -> None:
    assert normalise_email("  Ada@Acme.IO ") == "ada@acme.io"
    assert normalise_email("") is None and normalise_email(None) is None


# ------------------------------------------------------------------ a whole batch refused for a dead id

API = "https://api.hubapi.com/crm/v3/objects/contacts"


def _change(n: int) -> Change:
    record = ObjectRecord(ObjectKind.USER, f"u{n}", {}, email=f"u{n}@x.io")
    return Change(
        "hubspot",
        ObjectKind.USER,
        f"u{n}",
        "upsert",
        {"accoil_default_score": str(n)},
        {},
        record,
        "fp",
        str(100 + n),
    )


@respx.mock
async def test_a_batch_refused_whole_for_a_dead_id_is_not_bisected() -> None:
    """If HubSpot fails a whole ``batch/update`` naming an unknown id (rather than a 207 per input), the
    named record is healed (read back, looked up again) and the others sent again at once."""
    body = {
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "message": "Object not found. objectId are usually numeric.",
        "context": {"ids": ["107"]},
    }
    update = respx.post(f"{API}/batch/update").mock(
        side_effect=[
            httpx.Response(400, json=body),
            httpx.Response(200, json={"status": "COMPLETE", "results": []}),
        ]
    )
    read = respx.post(f"{API}/batch/read").mock(return_value=httpx.Response(200, json={"results": []}))
    cfg = HubSpotDestination(enabled=True, access_token=SecretStr("pat"), create_missing=False)
    connector = HubSpotConnector(cfg, [], policy=RetryPolicy(initial_wait=0.01, max_attempts=2))
    outcomes = await connector.deliver(ObjectKind.USER, [_change(n) for n in range(10)])
    assert [o.status for o in outcomes] == ["ok"] * 7 + ["rejected"] + ["ok"] * 2
    assert outcomes[7].reason_class == "not_found" and "u7@x.io" in (outcomes[7].reason or "")
    assert update.call_count == 2 and read.call_count == 2  # the survivors read, then the email lookup
    assert [i["id"] for i in json.loads(update.calls[1].request.content)["inputs"]] == [
        str(100 + n) for n in range(10) if n != 7
    ]
    await connector.aclose()
