"""Re-checking rejections that can heal, without ``--full-refresh``.

A record rejected as ``not_found``, ``conflict`` or ``ambiguous`` can start succeeding while its metrics
stay the same: someone creates the contact in the CRM, merges the duplicates, or releases the record
another key held. The planner would never send it again (nothing changed), so healable rejections are
planned again on a schedule:

- **back-off by attempts**: a rejection is due ``recheck_after_hours * 2^(attempts-1)`` after its last
  attempt, capped at ``recheck_max_hours`` -- 1 h, 2 h, 4 h ... then weekly by default. A record created
  in the CRM is picked up within the hour; one that never appears costs about eight re-checks in its first
  week and one a week after that;
- **a budget per run**: at most ``recheck_per_run`` per destination and kind, oldest attempt first, so a
  run after a bulk import spends a bounded share of the API quota on re-checks and the rest are taken by
  the next runs in order.

``sync --retry-rejected`` re-checks every rejection now, whatever its class, with no back-off or budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from accoil_sync.config.models import DestinationBase
from accoil_sync.config.settings import Settings
from accoil_sync.connectors.base import HEALABLE
from accoil_sync.sync.state import StateStore


@dataclass(frozen=True, slots=True)
class RecheckPolicy:
    per_run: int = 1000
    after_seconds: float = 3600.0
    max_seconds: float = 7 * 86400.0
    force: bool = False  # --retry-rejected: every rejection, now

    @classmethod
    def of(cls, cfg: DestinationBase, *, force: bool = False) -> RecheckPolicy:
        return cls(cfg.recheck_per_run, cfg.recheck_after_hours * 3600, cfg.recheck_max_hours * 3600, force)

    def due(self, state: StateStore, destination: str, kind: str) -> list[str]:
        """The keys of this destination's rejections to plan again in this run."""
        if self.force:
            return state.rejected_keys(destination, kind)
        if self.per_run == 0:
            return []
        return state.rejected_keys(
            destination,
            kind,
            classes=sorted(HEALABLE),
            after_seconds=self.after_seconds,
            max_seconds=self.max_seconds,
            limit=self.per_run,
        )


def recheck_policies(settings: Settings, *, retry_rejected: bool = False) -> Callable[[str], RecheckPolicy]:
    """Each destination's policy, from its ``recheck_*`` settings."""

    def policy(destination: str) -> RecheckPolicy:
        return RecheckPolicy.of(getattr(settings.destinations, destination), force=retry_rejected)

    return policy
