"""docs/TRAITS.md is the contract: every row is checked against the naming and encoding code."""

from __future__ import annotations

import re

import pytest

from accoil_sync.traits import (
    METRICS_FOR_KIND,
    HubSpotEncoder,
    IntercomEncoder,
    Metric,
    ObjectKind,
    ObjectRecord,
    TraitsEncoder,
    hubspot_property,
    intercom_attribute,
    sanitize_score_name,
    trait_name,
)
from tests.conftest import ROOT

PROFILES = ["Default", "product usage", "v2-beta score", "Ünïcode Name 7"]


def _table() -> list[dict[str, str]]:
    text = (ROOT / "docs" / "TRAITS.md").read_text(encoding="utf-8")
    body = text.split("<!-- traits-table:start -->")[1].split("<!-- traits-table:end -->")[0]
    lines = [line.strip() for line in body.strip().splitlines()]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def _code(cell: str, score_name: str) -> str | None:
    match = re.search(r"`([^`]+)`", cell)
    if not match:
        return None
    return match.group(1).replace("{scoreName}", score_name).replace("{scorename}", score_name.lower())


ROWS = _table()


def test_table_covers_every_metric_once() -> None:
    assert [row["metric"] for row in ROWS] == [m.value for m in Metric]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("row", ROWS, ids=lambda r: r["metric"])
def test_names_match_the_table(row: dict[str, str], profile: str) -> None:
    score_name = sanitize_score_name(profile)
    metric = Metric(row["metric"])
    kinds = {ObjectKind(k.strip()) for k in row["kinds"].split(",")}
    for kind in ObjectKind:
        assert (metric in METRICS_FOR_KIND[kind]) == (kind in kinds)
    assert trait_name(score_name, metric) == _code(row["trait"], score_name)
    assert trait_name(score_name, metric) == _code(row["Segment trait (type)"], score_name)
    if ObjectKind.USER in kinds:
        assert intercom_attribute(ObjectKind.USER, score_name, metric) == _code(
            row["Intercom contact attribute"], score_name
        )
    else:
        assert _code(row["Intercom contact attribute"], score_name) is None
    assert intercom_attribute(ObjectKind.ACCOUNT, score_name, metric) == _code(
        row["Intercom company attribute"], score_name
    )
    name = hubspot_property(score_name, metric)
    assert name == _code(row["HubSpot property"], score_name)
    assert name == name.lower() and len(name) < 100


def _record(kind: ObjectKind, score_name: str) -> ObjectRecord:
    values = {
        Metric.SCORE: 72,
        Metric.SEGMENTS: ("Champions", "Most Engaged"),
        Metric.ACTIVATION: 90.5,
        Metric.ADOPTION_RECENT: 40,
        Metric.ADOPTION_EVER: 60,
        Metric.LAST_ACTIVE: "2026-11-20T09:15:00Z",
        Metric.FREQUENCY: 4,
        Metric.ACTIVE_USERS: 3,
        Metric.TOTAL_USERS: 5,
    }
    return ObjectRecord(kind, "k1", {score_name: {m: values[m] for m in METRICS_FOR_KIND[kind]}})


@pytest.mark.parametrize("kind", list(ObjectKind))
def test_every_encoder_emits_exactly_the_tables_names(kind: ObjectKind) -> None:
    score_name = "ProductUsage"
    record = _record(kind, score_name)
    rows = [r for r in ROWS if kind.value in r["kinds"]]
    assert set(TraitsEncoder().encode(record)) == {_code(r["trait"], score_name) for r in rows}
    column = "Intercom contact attribute" if kind is ObjectKind.USER else "Intercom company attribute"
    assert set(IntercomEncoder().encode(record)) - {"tags"} == {_code(r[column], score_name) for r in rows}
    assert set(HubSpotEncoder().encode(record)) == {_code(r["HubSpot property"], score_name) for r in rows}


def test_value_formats_per_destination() -> None:
    record = _record(ObjectKind.USER, "Default")
    segment = TraitsEncoder().encode(record)
    assert segment["Accoil_Default_Segments"] == ["Champions", "Most Engaged"]
    assert segment["Accoil_Default_LastActive"] == "2026-11-20T09:15:00Z"
    assert segment["Accoil_Default_Score"] == 72
    intercom = IntercomEncoder(tag_prefix="Accoil: ").encode(record)
    assert intercom["Accoil_Default_LastActive"] == 1795166100
    assert intercom["Accoil_Default_Segments"] == "Champions, Most Engaged"
    assert intercom["tags"] == ["Accoil: Champions", "Accoil: Most Engaged"]
    hubspot = HubSpotEncoder().encode(record)
    assert hubspot["accoil_default_lastactive"] == "1795132800000"  # 2026-11-20T00:00:00Z
    assert int(hubspot["accoil_default_lastactive"]) % 86_400_000 == 0
    assert hubspot["accoil_default_score"] == "72"
    assert hubspot["accoil_default_activation"] == "90.5"
    assert hubspot["accoil_default_segments"] == "Champions;Most Engaged"


def test_company_attribute_names_never_collide_with_contact_names() -> None:
    names = ["Default", "Account", "AccountScore", "A", "Score"]
    contact = {
        intercom_attribute(ObjectKind.USER, n, m) for n in names for m in METRICS_FOR_KIND[ObjectKind.USER]
    }
    company = {intercom_attribute(ObjectKind.ACCOUNT, n, m) for n in names for m in Metric}
    assert not contact & company
