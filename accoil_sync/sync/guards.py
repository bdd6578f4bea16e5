"""Guards between a bad export and the vendors: when removals are allowed at all, and when one run changes
or removes so much of a destination that it is held until someone allows it.

Reverse-ETL's worst failure is a broken upstream run (an empty file, a renamed column, a half-written
table) that wipes what the CRM holds. Two layers stop it:

- the removal verdict, per object kind: an object may be cleared for being absent only when the source was
  read completely and cleanly (no file-level error, no invalid row without a key), is not empty, and is not
  much smaller than at the last accepted run;
- thresholds, per destination: the share (and, optionally, number) of the objects a destination holds that
  one run would remove, or whose values would change. Over a threshold the destination is not synced; the
  run says which threshold, by how much, with a sample, and how to allow it once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from accoil_sync.config.models import DestinationBase, SafetyConfig
from accoil_sync.sources.stage import KindStats, SourceStats
from accoil_sync.sync.state import StateStore
from accoil_sync.traits.names import ObjectKind

# The stored fingerprint of an object planned while it had an invalid row: never equal to a real one, so the
# object is planned again next run; a connector that replaces whole records keeps the missing profiles.
HELD_PREFIX = "held:"
ALLOW_HINT = "allow it once with --allow-mass-change (or ACCOIL_SYNC_SAFETY__ALLOW_MASS_CHANGE=true)"


def objects_fact(kind: ObjectKind) -> str:
    return f"source.objects.{kind.value}"


def columns_fact(kind: ObjectKind) -> str:
    return f"source.columns.{kind.value}"


def signature_fact(destination: str) -> str:
    return f"encoder.signature.{destination}"


@dataclass(frozen=True, slots=True)
class Baseline:
    """What the source looked like at the last accepted run (kept as facts in the state store)."""

    objects: int | None = None
    columns: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, objects: str | None, columns: str | None) -> Baseline:
        return cls(
            int(objects) if objects is not None else None,
            frozenset(json.loads(columns)) if columns is not None else frozenset(),
        )


def load_baselines(state: StateStore) -> dict[ObjectKind, Baseline]:
    return {
        kind: Baseline.parse(state.get_fact(objects_fact(kind)), state.get_fact(columns_fact(kind)))
        for kind in ObjectKind
    }


def save_baselines(
    state: StateStore, verdicts: Mapping[ObjectKind, RemovalVerdict], stats: SourceStats
) -> None:
    """The source as read this run becomes the baseline -- only when it was read completely and its size
    was not an unexplained drop (``RemovalVerdict.accept``)."""
    for kind, verdict in verdicts.items():
        if verdict.accept:
            s = stats.by_kind[kind]
            state.set_fact(objects_fact(kind), str(s.objects))
            state.set_fact(columns_fact(kind), json.dumps(sorted(s.columns)))


@dataclass(frozen=True, slots=True)
class RemovalVerdict:
    allowed: bool
    reason: str | None = None  # why removals are withheld this run (None when allowed)
    # The source may become the new baseline: read completely, and not an unexplained drop in size (else a
    # shrunken source would be accepted as normal by the next run).
    accept: bool = True
    # Empty, or much smaller than at the last accepted run, and not allowed: a likely broken export even
    # where nothing would be removed (removal = "keep"), so the run says so and does not exit 0.
    shrunk: bool = False


def removal_verdict(
    kind: ObjectKind, stats: KindStats, baseline: Baseline, safety: SafetyConfig, *, allow: bool
) -> RemovalVerdict:
    """May objects absent from this kind's source be removed (under ``removal = "clear"``)?

    Data problems (a file-level error, an invalid row with no key) always withhold removals: fix the
    source. Size problems (empty, much smaller than last time) can be allowed once.
    """
    label = f"the {kind.value}s source"
    size: str | None = None
    if stats.objects == 0:
        size = f"{label} read as empty; {ALLOW_HINT} if it really is"
    elif baseline.objects and stats.objects < safety.min_source_share * baseline.objects:
        size = (
            f"{label} has {stats.objects} objects, {stats.objects / baseline.objects:.0%} of the "
            f"{baseline.objects} at the last accepted run (below safety.min_source_share = "
            f"{safety.min_source_share:.0%}); {ALLOW_HINT} if the drop is real"
        )
    accept = stats.file_errors == 0 and (size is None or allow)
    if stats.file_errors:
        return RemovalVerdict(
            False,
            f"{label} had {stats.file_errors} file-level error(s) (a file skipped or cut short): an object "
            "missing from it may only be unread",
            accept,
        )
    if stats.unkeyed:
        return RemovalVerdict(
            False,
            f"{label} had {stats.unkeyed} invalid row(s) without a usable key: any absent object could be "
            "the one such a row describes",
            accept,
        )
    if size is not None and not allow:
        return RemovalVerdict(False, size, accept, shrunk=True)
    return RemovalVerdict(True, None, accept)


@dataclass(slots=True)
class Preview:
    """One destination and kind, counted in the stage before anything is planned or sent."""

    known: int = 0  # objects the destination holds values for (acknowledged, not cleared)
    removed: int = 0  # would be cleared for being absent from the source
    changed: int = 0  # held before and whose source values changed
    absent: int = 0  # held before, absent from the source now, no invalid row: removed if removals allowed
    removed_sample: list[str] = field(default_factory=list)
    changed_sample: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Hold:
    """A threshold one destination's plan is over."""

    destination: str
    kind: ObjectKind
    setting: str  # the threshold's setting, e.g. max_removed_share
    count: int
    known: int
    limit: float | int
    sample: tuple[str, ...]

    @property
    def share(self) -> float:
        return self.count / self.known if self.known else 1.0

    @property
    def verb(self) -> str:
        return "removed (cleared)" if self.setting.startswith("max_removed") else "changed"

    def __str__(self) -> str:
        limit = f"{self.limit:.0%}" if self.setting.endswith("share") else f"{self.limit}"
        over = f"{self.share:.1%} > {limit}" if self.setting.endswith("share") else f"{self.count} > {limit}"
        sample = ", ".join(repr(k) for k in self.sample)
        return (
            f"{self.destination} held: {self.count} of the {self.known} {self.kind.value}s it holds would be "
            f"{self.verb} ({over}, destinations.{self.destination}.{self.setting})"
            f"{f'; e.g. {sample}' if sample else ''}. Nothing is sent to {self.destination} while held: "
            f"check the source; if the change is real, {ALLOW_HINT}"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "setting": self.setting,
            "count": self.count,
            "known": self.known,
            "share": round(self.share, 4),
            "limit": self.limit,
            "sample": list(self.sample),
            "message": str(self),
        }


def thresholds(
    destination: str,
    cfg: DestinationBase,
    previews: Mapping[ObjectKind, Preview],
    *,
    computed_from_events: bool = False,
) -> list[Hold]:
    """The thresholds this destination's plan is over. A single object is never a mass change, and a
    destination that holds nothing yet (a first sync) has nothing to protect.

    Metrics computed from events move for most objects every day (windows slide, the P90 anchor moves):
    there ``max_changed_share`` applies only when set explicitly, or every daily run would be held."""
    changed_share = cfg.max_changed_share
    if computed_from_events and "max_changed_share" not in cfg.model_fields_set:
        changed_share = 1.0  # off
    holds: list[Hold] = []
    for kind, p in previews.items():
        if not p.known:
            continue
        checks = (
            ("max_removed_share", p.removed, p.removed / p.known > cfg.max_removed_share, p.removed_sample),
            ("max_removed_count", p.removed, _over(p.removed, cfg.max_removed_count), p.removed_sample),
            ("max_changed_share", p.changed, p.changed / p.known > changed_share, p.changed_sample),
            ("max_changed_count", p.changed, _over(p.changed, cfg.max_changed_count), p.changed_sample),
        )
        for setting, count, over, sample in checks:
            if over and count > 1:
                limit = getattr(cfg, setting)
                holds.append(Hold(destination, kind, setting, count, p.known, limit, tuple(sample)))
                break  # one reason per kind is enough to act on
    return holds


def _over(count: int, limit: int | None) -> bool:
    return limit is not None and count > limit
