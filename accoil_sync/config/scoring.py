"""Per-profile scoring settings (``[profiles.scoring]``): weights, features, activation, adoption, segments.

Only read when ``source.kind = "events"``; the formulas they feed are written down in docs/SCORING.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Weight = int
SegmentKind = Literal["users", "accounts"]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FeatureConfig(_Section):
    """Events grouped into one feature: one adoption unit, one line in an explanation."""

    events: list[str] = Field(min_length=1)
    weight: int | None = Field(None, ge=1, le=10, description="for its events without a weight of their own")


class ActivationCriterion(_Section):
    event: str = Field(min_length=1)
    min_count: int = Field(1, ge=1, description="met once the event happened this often (ever)")


class SegmentRule(_Section):
    """A segment as configuration: every condition set must hold (AND). Bounds are inclusive except
    ``score_below``; days count whole UTC days back from the as-of day."""

    name: str = Field(min_length=1, max_length=255)
    kinds: list[SegmentKind] = Field(
        default_factory=lambda: list[SegmentKind](["users", "accounts"]), min_length=1
    )
    score_at_least: float | None = Field(None, ge=0, le=100)
    score_below: float | None = Field(None, ge=0, le=101)
    days_inactive_at_least: int | None = Field(None, ge=0, description="days since last active")
    days_inactive_at_most: int | None = Field(None, ge=0)
    days_since_signup_at_least: int | None = Field(None, ge=0, description="days since the first event")
    days_since_signup_at_most: int | None = Field(None, ge=0)
    signed_up_in_window: bool | None = Field(None, description="first event within the profile's window")
    trend_at_least: float | None = Field(None, description="score now minus score one window earlier")
    trend_at_most: float | None = None
    frequency_at_least: int | None = Field(None, ge=0)
    activation_at_least: float | None = Field(None, ge=0, le=100)
    total_users_at_least: int | None = Field(None, ge=0, description="accounts: users in the last 90 days")
    total_users_at_most: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _has_condition(self) -> SegmentRule:
        conditions = self.model_dump(exclude={"name", "kinds"}, exclude_none=True)
        if not conditions:
            raise ValueError(f"segment {self.name!r} has no condition (e.g. score_at_least = 75)")
        return self


class ScoringConfig(_Section):
    weights: dict[str, Weight] = Field(default_factory=dict, description="event name -> weight 1-10")
    features: dict[str, FeatureConfig] = Field(default_factory=dict)
    activation: list[str | ActivationCriterion] = Field(default_factory=list)
    adoption: list[str] | None = Field(
        None, description="features/events that count for adoption (default: every scored one)"
    )
    suggested_segments: bool = Field(True, description="Most Engaged, New, Red Hot, ... (docs/SCORING.md)")
    segments: list[SegmentRule] = Field(default_factory=list, description="custom segments, after suggested")
    total_users_days: int = Field(90, ge=1, le=366, description="accounts: total users counts this many days")

    @model_validator(mode="after")
    def _consistent(self) -> ScoringConfig:
        for event, weight in self.weights.items():
            if not 1 <= weight <= 10:
                raise ValueError(f"weights.{event!r}: {weight} is not a weight from 1 to 10")
        owner: dict[str, str] = {}
        for name, feature in self.features.items():
            for event in feature.events:
                if event in owner:
                    raise ValueError(
                        f"event {event!r} is in features {owner[event]!r} and {name!r}; pick one"
                    )
                owner[event] = name
                if feature.weight is None and event not in self.weights:
                    raise ValueError(
                        f"features.{name}: event {event!r} has no weight (set weight or weights)"
                    )
        if not self.weights and not self.features:
            raise ValueError("scoring needs at least one weighted event (weights or features)")
        if self.adoption is not None:
            units = set(self.units())
            unknown = [u for u in self.adoption if u not in units]
            if unknown:
                raise ValueError(f"adoption: {unknown} are neither a feature nor a weighted event")
        names = [rule.name for rule in self.segments]
        if len(set(names)) != len(names):
            raise ValueError("segments: two custom segments have the same name")
        return self

    def event_weights(self) -> list[tuple[str, str, int]]:
        """(event, unit, weight) for every scored event; the unit is its feature, or the event itself."""
        out: dict[str, tuple[str, str, int]] = {}
        for name, feature in self.features.items():
            for event in feature.events:
                weight = self.weights.get(event, feature.weight)
                assert weight is not None
                out[event] = (event, name, weight)
        for event, weight in self.weights.items():
            out.setdefault(event, (event, event, weight))
        return sorted(out.values())

    def units(self) -> list[str]:
        return sorted({unit for _, unit, _ in self.event_weights()})

    def adoption_units(self) -> list[str]:
        return sorted(self.adoption) if self.adoption is not None else self.units()

    def criteria(self) -> list[ActivationCriterion]:
        return [
            c if isinstance(c, ActivationCriterion) else ActivationCriterion(event=c) for c in self.activation
        ]
