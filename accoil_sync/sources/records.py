"""Staged rows -> ``ObjectRecord``s, by way of one JSON document per object built inside DuckDB.

Every planned object is read back from the stage, so this is the hottest path of a first sync. Handing
Python one JSON text per object (decoded by orjson) costs about a fifth of fetching each value as its own
Python object and assembling the record in a loop: DuckDB does the per-profile merge, the "last row wins"
attributes and the canonical number form (a whole number is an int) in bulk.

Document shape: ``{"m": {profile: {metric: value}}, "a": {attribute: value}}``; absent metrics are left out,
absent attributes are null.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from accoil_sync.traits.model import MetricValue, ObjectRecord
from accoil_sync.traits.names import METRICS_FOR_KIND, Metric, ObjectKind

ATTRIBUTES: dict[ObjectKind, tuple[str, ...]] = {
    ObjectKind.USER: ("email", "account_id", "computed_at"),
    ObjectKind.ACCOUNT: ("domain", "name", "computed_at"),
}
_DOUBLE_METRICS = frozenset(
    {Metric.SCORE, Metric.ACTIVATION, Metric.ADOPTION_RECENT, Metric.ADOPTION_EVER}
)  # the staged table holds these as DOUBLE; the rest are BIGINT, text or a list
_BY_NAME: Mapping[str, Metric] = {m.value: m for m in Metric}


def _json_value(metric: Metric, column: str) -> str:
    if metric in _DOUBLE_METRICS:
        # Canonical numbers: a whole value is an int (10, not 10.0), as the contract's examples write it.
        # DuckDB prints doubles in their shortest round-trip form, so orjson reads back the same float.
        return (
            f"CASE WHEN isfinite({column}) AND {column} = trunc({column}) AND abs({column}) < 9e15 "
            f"THEN CAST(CAST({column} AS BIGINT) AS VARCHAR) ELSE CAST({column} AS VARCHAR) END"
        )
    return f"to_json({column})"


def document_sql(kind: ObjectKind, alias: str, columns: frozenset[str]) -> str:
    """An aggregate over the staged rows of one object (``alias``, grouped by key): its JSON document.

    ``columns`` are the staged table's columns (a kind with no source file has only the key columns).
    NULL when the group has no staged row (an object that left the source).
    """
    metrics = [m for m in METRICS_FOR_KIND[kind] if m.value in columns]
    if not metrics:
        return "NULL::VARCHAR"
    per_row = ", ".join(
        f"CASE WHEN {alias}.{m.value} IS NOT NULL THEN '\"{m.value}\":' || {_json_value(m, f'{alias}.{m.value}')} END"
        for m in metrics
    )
    attributes = ", ".join(
        f"'{a}': {alias}.{a}" if a in columns else f"'{a}': NULL::VARCHAR" for a in ATTRIBUTES[kind]
    )
    # No ORDER BY inside string_agg: profiles are keyed by name, so their order carries nothing, and an
    # ordered aggregate doubles the query's time.
    return (
        f"CASE WHEN count({alias}.key) > 0 THEN "
        f"'{{\"m\":{{' || string_agg(to_json({alias}.profile) || ':{{' || concat_ws(',', {per_row}) || '}}', ',') "
        f"|| '}},\"a\":' || to_json(arg_max({{{attributes}}}, {alias}._seq)) || '}}' END"
    )


class RecordDecoder:
    """One staged document -> one ``ObjectRecord`` with canonical Python values (segments as a tuple)."""

    def __init__(self, kind: ObjectKind) -> None:
        self.kind = kind
        self.attributes = ATTRIBUTES[kind]

    def record(self, key: str, document: str) -> ObjectRecord:
        doc = orjson.loads(document)
        metrics: dict[str, dict[Metric, MetricValue]] = {}
        by_name = _BY_NAME
        for profile, values in doc["m"].items():
            metrics[profile] = {
                by_name[name]: tuple(value) if type(value) is list else value
                for name, value in values.items()
            }
        attrs = doc["a"]
        get = attrs.get
        return ObjectRecord(
            self.kind,
            key,
            metrics,
            get("email"),
            get("domain"),
            get("name"),
            get("account_id"),
            get("computed_at"),
        )
