"""What the card shows, built once per request and rendered three ways: the app card's compact JSON,
HubSpot's classic (v1) data-fetch JSON that the legacy-card converter consumes, and the v3 card payload.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from accoil_sync.card.store import CardObject
from accoil_sync.config.models import ProfileConfig
from accoil_sync.traits.names import ObjectKind, sanitize_score_name

# STATUS colours for segment names, matched case-insensitively; ``serve.segment_states`` adds or overrides.
SEGMENT_STATES: dict[str, str] = {
    "most engaged": "SUCCESS",
    "champions": "SUCCESS",
    "champion": "SUCCESS",
    "power users": "SUCCESS",
    "engaged": "SUCCESS",
    "activated": "SUCCESS",
    "new": "INFO",
    "onboarding": "INFO",
    "activating": "INFO",
    "at risk": "WARNING",
    "declining": "WARNING",
    "slipping": "WARNING",
    "least engaged": "DANGER",
    "dormant": "DANGER",
    "inactive": "DANGER",
    "churn risk": "DANGER",
    "disengaged": "DANGER",
}
# When one STATUS shows several segments, the later state here wins ("At Risk" + "Dormant" shows DANGER).
STATE_PRECEDENCE = ("DEFAULT", "INFO", "SUCCESS", "WARNING", "DANGER")
IFRAME_WIDTH, IFRAME_HEIGHT = 890, 748
MAX_SECTIONS = 5  # HubSpot shows at most five results/sections


@dataclass(frozen=True, slots=True)
class Segment:
    name: str
    state: str


@dataclass(frozen=True, slots=True)
class ProfileView:
    name: str  # the profile's name as configured (the score_name in the source)
    score: float | None
    segments: tuple[Segment, ...]
    activation: float | None
    adoption_recent: float | None
    adoption_ever: float | None
    last_active: str | None  # ISO-8601
    frequency: int | None
    window_days: int
    active_users: int | None = None
    total_users: int | None = None
    # Events sources: why the score is what it is, as computed at sync time (scoring/explain.py's document).
    explanation: Mapping[str, Any] | None = None

    @property
    def frequency_label(self) -> str | None:
        if self.frequency is None:
            return None
        return f"{self.frequency} of {self.window_days} days"


@dataclass(frozen=True, slots=True)
class CardView:
    kind: ObjectKind
    key: str
    name: str | None
    updated_at: str
    profiles: tuple[ProfileView, ...]
    details_url: str
    extra: dict[str, Any] = field(default_factory=dict)


def segment_table(overrides: Mapping[str, str]) -> dict[str, str]:
    """The built-in colours with ``serve.segment_states`` over them, keys folded for lookup."""
    return {**SEGMENT_STATES, **{k.lower(): v for k, v in overrides.items()}}


def segment_state(name: str, table: Mapping[str, str]) -> str:
    return table.get(name.strip().lower(), "DEFAULT")


def build_view(
    obj: CardObject, profiles: Sequence[ProfileConfig], segment_states: Mapping[str, str], details_url: str
) -> CardView:
    windows = {p.score_name: (p.name, p.window_days) for p in profiles}
    explanations = obj.record.get("explanations") or {}
    views = []
    for score_name, metrics in sorted(obj.record.get("metrics", {}).items()):
        label, window = windows.get(score_name, (score_name, 7))
        views.append(
            ProfileView(
                name=label,
                score=metrics.get("score"),
                segments=tuple(
                    Segment(s, segment_state(s, segment_states)) for s in metrics.get("segments") or ()
                ),
                activation=metrics.get("activation"),
                adoption_recent=metrics.get("adoption_recent"),
                adoption_ever=metrics.get("adoption_ever"),
                last_active=metrics.get("last_active"),
                frequency=metrics.get("frequency"),
                window_days=window,
                active_users=metrics.get("active_users") if obj.kind is ObjectKind.ACCOUNT else None,
                total_users=metrics.get("total_users") if obj.kind is ObjectKind.ACCOUNT else None,
                explanation=explanations.get(score_name),
            )
        )
    # Configured profiles first, in config order; anything else after.
    order = {sanitize_score_name(p.name): i for i, p in enumerate(profiles)}
    views.sort(key=lambda v: order.get(sanitize_score_name(v.name), len(order)))
    return CardView(obj.kind, obj.key, obj.record.get("name"), obj.updated_at, tuple(views), details_url)


# ------------------------------------------------------------------------------------------ renderers


def compact_json(view: CardView | None) -> dict[str, Any]:
    """For the app card: plain values, the UI formats them."""
    if view is None:
        return {"found": False, "profiles": []}
    return {
        "found": True,
        "object": {
            "kind": view.kind.value,
            "key": view.key,
            "name": view.name,
            "updated_at": view.updated_at,
        },
        "details_url": view.details_url,
        "profiles": [
            {
                "name": p.name,
                "score": p.score,
                "segments": [{"name": s.name, "state": s.state} for s in p.segments],
                "activation": p.activation,
                "adoption_recent": p.adoption_recent,
                "adoption_ever": p.adoption_ever,
                "last_active": p.last_active,
                "frequency": None
                if p.frequency is None
                else {"days": p.frequency, "window": p.window_days, "label": p.frequency_label},
                **(
                    {"active_users": p.active_users, "total_users": p.total_users}
                    if view.kind is ObjectKind.ACCOUNT
                    else {}
                ),
            }
            for p in view.profiles
        ],
    }


def _number(value: float | None) -> str | None:
    if value is None:
        return None
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _properties(view: CardView, p: ProfileView) -> list[dict[str, Any]]:
    """(label, dataType, value[, extra]) rows shared by the v1 and v3 renderers; missing metrics are skipped."""
    rows: list[dict[str, Any]] = []

    def add(name: str, label: str, data_type: str, value: str | None, **extra: str) -> None:
        if value is not None:
            rows.append({"name": name, "label": label, "dataType": data_type, "value": value, **extra})

    add("score", "Engagement score", "NUMERIC", _number(p.score))
    if p.segments:
        # One STATUS value per card property: the most pressing segment's colour stands for all of them.
        colour = max((s.state for s in p.segments), key=STATE_PRECEDENCE.index)
        add("segments", "Segments", "STATUS", ", ".join(s.name for s in p.segments), optionType=colour)
    for name, label, value in (
        ("activation", "Activation", p.activation),
        ("adoption_recent", "Adoption (recent)", p.adoption_recent),
        ("adoption_ever", "Adoption (ever)", p.adoption_ever),
    ):
        add(name, label, "STRING", None if value is None else f"{_number(value)}%")
    if p.last_active:
        add("last_active", "Last active", "DATE", p.last_active[:10])
    add("frequency", "Frequency", "STRING", p.frequency_label)
    if view.kind is ObjectKind.ACCOUNT and p.active_users is not None:
        total = "" if p.total_users is None else f" of {p.total_users}"
        add("active_users", "Active users", "STRING", f"{p.active_users}{total}")
    return rows


def _title(view: CardView, p: ProfileView) -> str:
    return f"Accoil engagement: {p.name}" if len(view.profiles) > 1 else "Accoil engagement"


def classic_json(view: CardView | None, object_id: int | None) -> dict[str, Any]:
    """HubSpot's classic data-fetch format (``results``), as the legacy-card converter reads it."""
    if view is None:
        return {"results": []}
    results = []
    for p in view.profiles[:MAX_SECTIONS]:
        props = _properties(view, p)
        result: dict[str, Any] = {
            "objectId": object_id if object_id is not None else 0,
            "title": _title(view, p),
            "link": view.details_url,
            "properties": [{k: v for k, v in row.items() if k != "name"} for row in props],
        }
        results.append(result)
    return {
        "results": results,
        "primaryAction": {
            "type": "IFRAME",
            "width": IFRAME_WIDTH,
            "height": IFRAME_HEIGHT,
            "uri": view.details_url,
            "label": "Engagement details",
        },
    }


def v3_json(view: CardView | None) -> dict[str, Any]:
    """The v3 card payload (``IntegratorCardPayloadResponse``)."""
    if view is None:
        return {
            "responseVersion": "v3",
            "totalCount": 0,
            "sections": [],
            "topLevelActions": {"secondary": []},
        }
    details = {
        "type": "IFRAME",
        "width": IFRAME_WIDTH,
        "height": IFRAME_HEIGHT,
        "url": view.details_url,
        "label": "Engagement details",
        "propertyNamesIncluded": [],
    }
    sections = [
        {
            "id": f"{view.kind.value}:{view.key}:{sanitize_score_name(p.name)}",
            "title": _title(view, p),
            "linkUrl": view.details_url,
            "tokens": [
                {
                    "name": row["name"],
                    "label": row["label"],
                    "dataType": row["dataType"],
                    "value": row["value"],
                }
                for row in _properties(view, p)
            ],
            "actions": [],
        }
        for p in view.profiles[:MAX_SECTIONS]
    ]
    return {
        "responseVersion": "v3",
        "totalCount": len(view.profiles),
        "allItemsLinkUrl": view.details_url,
        "cardLabel": "See all engagement details",
        "sections": sections,
        "topLevelActions": {"primary": details, "secondary": []},
    }
