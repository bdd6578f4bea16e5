"""Staged rows -> ``ObjectRecord``s, by way of one JSON document per staged row built inside DuckDB
while the row is staged.

Every planned object is read back from the stage, so this is the hottest path of a first sync. Handing
Python one JSON text per staged row (decoded by orjson) costs about a fifth of fetching each value as its own
Python object and assembling the record in a loop: DuckDB does the canonical number form (a whole number
is an int) and the JSON escaping in bulk.

Document shape, one per staged row: ``{"p": profile, "m": {metric: value}, "a": {attribute: value}}``;
absent metrics are left out, absent attributes are null.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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


def document_sql(kind: ObjectKind, alias: str) -> str:
    """The JSON document of one validated row (``alias``, which has every canonical column): its profile,
    its metrics and its attributes.

    Built per row, not aggregated per object: an object's rows are read back in ``ORDER BY key, _seq`` and
    merged in Python. (A string aggregate per object cannot spill to disk and ran out of DuckDB's memory
    limit at a million objects; a sort can.)
    """
    values = ", ".join(
        f"CASE WHEN {alias}.{m.value} IS NOT NULL THEN '\"{m.value}\":' || {_json_value(m, f'{alias}.{m.value}')} END"
        for m in METRICS_FOR_KIND[kind]
    )
    attributes = ", ".join(f"'{a}': {alias}.{a}" for a in ATTRIBUTES[kind])
    return (
        f"'{{\"p\":' || to_json({alias}.profile) || ',\"m\":{{' || concat_ws(',', {values}) || '}},\"a\":' "
        f"|| to_json({{{attributes}}}) || '}}'"
    )


class RecordDecoder:
    """An object's staged documents (one per profile, in ``_seq`` order) -> one ``ObjectRecord`` with
    canonical Python values (segments as a tuple); the last row's attributes win."""

    def __init__(self, kind: ObjectKind) -> None:
        self.kind = kind

    def record(self, key: str, documents: Sequence[str]) -> ObjectRecord:
        metrics: dict[str, dict[Metric, MetricValue]] = {}
        by_name = _BY_NAME
        doc: dict[str, Any] = {}
        for document in documents:
            doc = orjson.loads(document)
            metrics[doc["p"]] = {
                by_name[name]: tuple(value) if type(value) is list else value
                for name, value in doc["m"].items()
            }
        get = doc["a"].get
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
