"""HubSpot identity's pure parts: domain and email normalisation."""

from __future__ import annotations

import pytest

from accoil_sync.connectors.hubspot_identity import normalise_domain, normalise_email


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
    ],
)
def test_domains_are_compared_normalised(raw: str | None, want: str | None) -> None:
    assert normalise_domain(raw) == want


def test_emails_are_compared_lower_case() -> None:
    assert normalise_email("  Ada@Acme.IO ") == "ada@acme.io"
    assert normalise_email("") is None and normalise_email(None) is None
