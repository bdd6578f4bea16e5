"""Staged rows -> ``ObjectRecord``s, by way of one JSON document per staged row built inside DuckDB.

Every planned object is read back from the stage, so this is the hottest path of a first sync. Handing
Python one JSON text per staged row (decoded by orjson) costs about a fifth of fetching each value as its own
Python object and assembling the record in a loop: DuckDB does the canonical number form (a whole number
is an int) and the JSON escaping in bulk.

Document shape, one per staged row, positional (unpacking an array costs less than looking up names):
``[profile, [metric value, ...], attribute, ...]`` with the metrics in ``METRICS_FOR_KIND`` order and the
attributes in ``ATTRIBUTES`` order; an absent value is null. An events source's rows end with one more
element, the explanation document (or null).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from accoil_sync.sources.base import EXPLAIN_COLUMN
from accoil_sync.traits.model import MetricValue, ObjectRecord
from accoil_sync.traits.names import METRICS_FOR_KIND, Metric, ObjectKind

ATTRIBUTES: dict[ObjectKind, tuple[str, ...]] = {
    ObjectKind.USER: ("email", "account_id", "computed_at"),
    ObjectKind.ACCOUNT: ("domain", "name", "computed_at"),
}
_DOUBLE_METRICS = frozenset(
    {Metric.SCORE, Metric.ACTIVATION, Metric.ADOPTION_RECENT, Metric.ADOPTION_EVER}
)  # the staged table holds these as DOUBLE; the rest are BIGINT, text or a list


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
    """The JSON document of one staged row (``alias``); ``columns`` are the staged table's columns (a kind
    with no source file has only its key columns, so everything else is null). NULL for a row the LEFT JOIN
    found no staged row for (an object that left the source).

    Built per row, not aggregated per object: an object's rows are read back in ``ORDER BY key, _seq`` and
    merged in Python. (A string aggregate per object cannot spill to disk and ran out of DuckDB's memory
    limit at a million objects; a sort can.)
    """

    def value(name: str, sql: str) -> str:
        return f"coalesce({sql}, 'null')" if name in columns else "'null'"

    values = " || ',' || ".join(
        value(m.value, _json_value(m, f"{alias}.{m.value}")) for m in METRICS_FOR_KIND[kind]
    )
    attributes = " || ',' || ".join(value(a, f"to_json({alias}.{a})") for a in ATTRIBUTES[kind])
    if EXPLAIN_COLUMN in columns:
        attributes += f" || ',' || coalesce({alias}.{EXPLAIN_COLUMN}, 'null')"  # already JSON text
    return (
        f"CASE WHEN {alias}.key IS NOT NULL THEN "
        f"'[' || to_json({alias}.profile) || ',[' || {values} || '],' || {attributes} || ']' END"
    )


class RecordDecoder:
    """An object's staged documents (one per profile, in ``_seq`` order) -> one ``ObjectRecord`` with
    canonical Python values (segments as a tuple); the last row's attributes win."""

    def __init__(self, kind: ObjectKind) -> None:
        self.kind = kind
        self._metrics = METRICS_FOR_KIND[kind]

    def record(self, key: str, documents: Sequence[str]) -> ObjectRecord:
        metrics: dict[str, dict[Metric, MetricValue]] = {}
        explanations: dict[str, dict[str, Any]] = {}
        order, loads, segments = self._metrics, orjson.loads, Metric.SEGMENTS
        first = second = computed_at = None
        for document in documents:
            parsed = loads(document)
            if len(parsed) == 6:
                profile, values, first, second, computed_at, explanation = parsed
                if explanation is not None:
                    explanations[profile] = explanation
            else:
                profile, values, first, second, computed_at = parsed
            present = {
                metric: value for metric, value in zip(order, values, strict=True) if value is not None
            }
            names = present.get(segments)
            if names is not None:
                present[segments] = tuple(names)
            metrics[profile] = present
        if self.kind is ObjectKind.USER:
            return ObjectRecord(
                self.kind,
                key,
                metrics,
                email=first,
                account_id=second,
                computed_at=computed_at,
                explanations=explanations,
            )
        return ObjectRecord(
            self.kind,
            key,
            metrics,
            domain=first,
            name=second,
            computed_at=computed_at,
            explanations=explanations,
        )
