"""Why an events-sourced object has its score: the events that contributed most and how far the next score
band is. ``accoil_sync.scoring.explain`` computes it at sync time; the card's details page only formats it
(this module imports nothing heavy, as the card server loads it)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from accoil_sync.traits.names import ObjectKind


@dataclass(frozen=True, slots=True)
class Contribution:
    event: str
    feature: str
    count: int
    weight: int
    points: int
    share: float  # of the raw score, 0-100


@dataclass(slots=True)
class Explanation:
    kind: str
    key: str
    profile: str
    score: float
    segments: list[str]
    raw: float | None
    p90: float | None
    previous_score: float | None
    top: list[Contribution] = field(default_factory=list)
    next_band: str | None = None
    next_band_at: float | None = None
    score_to_next: float | None = None
    raw_to_next: float | None = None  # users: weighted points still needed (a user's score is raw / P90)
    total_users: int | None = None  # accounts: the users whose mean is the score
    heaviest_event: str | None = None  # the profile's highest-weighted event, for the hint
    heaviest_weight: int | None = None

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Explanation:
        """From the stored document (``to_json``'s output, or the SQL's; ``hint`` is derived, not read)."""
        values = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
        values["top"] = [Contribution(**c) for c in doc.get("top") or ()]
        values["segments"] = list(doc.get("segments") or ())
        return cls(**values)

    @property
    def hint(self) -> str | None:
        """What would reach the next band, in words."""
        if self.next_band_at is None:
            return None
        if self.kind == ObjectKind.USER.value and self.raw_to_next is not None and self.heaviest_weight:
            times = math.ceil(self.raw_to_next / self.heaviest_weight) if self.raw_to_next else 0
            return (
                f"{self.raw_to_next:g} weighted point(s) more in the window, e.g. {times} x "
                f"{self.heaviest_event} (weight {self.heaviest_weight})"
            )
        if self.kind == ObjectKind.ACCOUNT.value and self.total_users:
            return (
                f"the account score is the mean of its {self.total_users} user score(s): about "
                f"{math.ceil((self.next_band_at - self.score) * self.total_users)} more user score point(s) "
                "in total reach it"
            )
        return None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "hint": self.hint}

    def lines(self) -> list[str]:
        head = f"{self.kind} {self.key} [{self.profile}]: score {self.score:g}"
        if self.raw is not None and self.p90:
            head += f" (raw {self.raw:g} against the P90 anchor {self.p90:g})"
        if self.previous_score is not None:
            head += f"; previous period {self.previous_score:g}"
        out = [head, f"  segments: {', '.join(self.segments) or '-'}"]
        for c in self.top:
            unit = f" ({c.feature})" if c.feature != c.event else ""
            out.append(f"  {c.event}{unit}: {c.count} x weight {c.weight} = {c.points} ({c.share:.0f}%)")
        if not self.top:
            out.append("  no scored event in the window")
        if self.next_band is not None:
            out.append(f"  {self.next_band_line()}")
        if self.hint:
            out.append(f"  {self.hint}")
        return out

    def next_band_line(self) -> str | None:
        if self.next_band is None or self.next_band_at is None or self.score_to_next is None:
            return None
        return f"next band: {self.next_band} at {self.next_band_at:g}, {self.score_to_next:g} point(s) away"
