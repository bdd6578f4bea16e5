"""Trait naming: ``Accoil_{scoreName}_{Metric}`` -- the product's contract with its users."""

from __future__ import annotations

import re
from enum import StrEnum
from functools import cache


class ObjectKind(StrEnum):
    USER = "user"
    ACCOUNT = "account"


class Metric(StrEnum):
    SCORE = "score"
    SEGMENTS = "segments"
    ACTIVATION = "activation"
    ADOPTION_RECENT = "adoption_recent"
    ADOPTION_EVER = "adoption_ever"
    LAST_ACTIVE = "last_active"
    FREQUENCY = "frequency"
    ACTIVE_USERS = "active_users"
    TOTAL_USERS = "total_users"


TRAIT_SUFFIX: dict[Metric, str] = {
    Metric.SCORE: "Score",
    Metric.SEGMENTS: "Segments",
    Metric.ACTIVATION: "Activation",
    Metric.ADOPTION_RECENT: "Adoption_Recent",
    Metric.ADOPTION_EVER: "Adoption_Ever",
    Metric.LAST_ACTIVE: "LastActive",
    Metric.FREQUENCY: "Frequency",
    Metric.ACTIVE_USERS: "ActiveUsers",
    Metric.TOTAL_USERS: "TotalUsers",
}

_ACCOUNT_ONLY = (Metric.ACTIVE_USERS, Metric.TOTAL_USERS)

METRICS_FOR_KIND: dict[ObjectKind, tuple[Metric, ...]] = {
    ObjectKind.USER: tuple(m for m in Metric if m not in _ACCOUNT_ONLY),
    ObjectKind.ACCOUNT: tuple(Metric),
}

# Long enough for real profile names, short enough that the longest HubSpot internal name
# ("accoil_" + name + "_adoption_recent" plus a company prefix) stays under HubSpot's 100 characters.
MAX_SCORE_NAME_LENGTH = 40
_SEPARATORS = re.compile(r"[^A-Za-z0-9]+")


def sanitize_score_name(profile: str) -> str:
    """Turn a score profile name into the ``{scoreName}`` part of a trait name.

    Rule: split on every run of characters outside ``[A-Za-z0-9]``, upper-case the first letter of each
    part, keep the rest of each part as written, and join. ``"Default"`` stays ``Default``,
    ``"product usage"`` becomes ``ProductUsage``, ``"v2-beta score"`` becomes ``V2BetaScore``.
    Raises ``ValueError`` when nothing usable is left or the result is too long.
    """
    parts = [p for p in _SEPARATORS.split(profile) if p]
    if not parts:
        raise ValueError(f"score profile name {profile!r} has no letters or digits")
    name = "".join(p[0].upper() + p[1:] for p in parts)
    if len(name) > MAX_SCORE_NAME_LENGTH:
        raise ValueError(
            f"score profile name {profile!r} gives {name!r}, longer than {MAX_SCORE_NAME_LENGTH} characters"
        )
    return name


@cache  # called for every metric of every object planned
def trait_name(score_name: str, metric: Metric) -> str:
    """``Accoil_{scoreName}_{Suffix}`` for an already sanitised score name."""
    return f"Accoil_{score_name}_{TRAIT_SUFFIX[metric]}"


def trait_names(kind: ObjectKind, score_name: str) -> dict[Metric, str]:
    return {metric: trait_name(score_name, metric) for metric in METRICS_FOR_KIND[kind]}
