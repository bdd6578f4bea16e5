"""The canonical metric model: one object (user or account) with its metrics per score profile."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from accoil_sync.traits.names import Metric, ObjectKind, trait_name

# Canonical values: numbers as int/float, segments as a sorted tuple of names, timestamps as
# ISO-8601 UTC strings ("2026-10-01T12:00:00Z").
MetricValue = int | float | str | tuple[str, ...]


@dataclass(slots=True)  # not frozen: one is built per planned object, and a frozen init costs twice as much
class ObjectRecord:
    """What the source says about one user or account, after validation and de-duplication. Not mutated
    once built."""

    kind: ObjectKind
    key: str
    metrics: Mapping[str, Mapping[Metric, MetricValue]]  # sanitised score name -> metric -> value
    email: str | None = None
    domain: str | None = None
    name: str | None = None
    account_id: str | None = None
    computed_at: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    # Events sources: per score name, why the object has its score (scoring/explain.py's document). The
    # card stores it; no trait is made of it.
    explanations: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def traits(self) -> dict[str, MetricValue]:
        """All traits by their contract name, profiles in name order, metrics in declaration order."""
        out: dict[str, MetricValue] = {}
        metrics = self.metrics
        for score_name in sorted(metrics) if len(metrics) > 1 else metrics:
            values = metrics[score_name]
            names = _names(score_name)
            for metric in _ORDER:
                value = values.get(metric)
                if value is not None:
                    out[names[metric]] = value
        return out


_ORDER = tuple(Metric)


@cache  # once per score profile, not once per object
def _names(score_name: str) -> dict[Metric, str]:
    return {metric: trait_name(score_name, metric) for metric in Metric}
