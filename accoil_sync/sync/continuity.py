"""Noticing a lost state store before it costs a full re-send.

The state store is what makes a re-run send only changes. Deleted (a volume not mounted, a "clean-up", a
changed ``state.path``), a new empty store would make the next sync send every object to every destination
again, silently. The signal, cheap and sound: the store is **new** -- no run and no record in it -- while
**earlier deliveries are on disk** beside it or in a destination this configuration writes:

- sync logs (``<state dir>/synclog/run-*``): written only by runs that delivered through a state store here;
- the ``jsonl`` destination's file, when it is enabled and not empty.

Either one, with a new store, stops the run before anything is sent (exit 74) with an explanation. A first
sync on a fresh install has neither and goes ahead; so does ``sync --accept-new-state``, for a deliberate
full re-send. Vendor destinations are not asked (a lookup per destination would cost API calls each run).
"""

from __future__ import annotations

from pathlib import Path

import orjson

from accoil_sync.config.settings import Settings
from accoil_sync.errors import StateStoreError
from accoil_sync.sync.state import StateStore


class StateLost(StateStoreError):
    """The state store is new, but earlier deliveries exist: a sync would re-send everything."""


def evidence(settings: Settings) -> list[str]:
    """What on disk shows earlier deliveries from this configuration, as sentences."""
    found = []
    logs = sorted((settings.state.directory / "synclog").glob("run-*"))
    if logs:
        found.append(
            f"{len(logs)} sync log(s) of earlier runs in {logs[0].parent} (the last: {logs[-1].name})"
        )
    jsonl = settings.destinations.jsonl
    if jsonl.enabled and jsonl.path.is_file() and jsonl.path.stat().st_size > 0:
        last = _last_run_id(jsonl.path)
        found.append(
            f"the jsonl destination {jsonl.path} holds deliveries"
            + (f" (the last by run {last})" if last else "")
        )
    return found


def check(settings: Settings, state: StateStore, *, accept_new_state: bool) -> None:
    """Refuse to sync into a new state store when earlier deliveries exist (see the module docstring)."""
    if accept_new_state or not state.is_new():
        return
    if not (found := evidence(settings)):
        return
    raise StateLost(
        f"state store {state.path} is new (no run, no record), but earlier deliveries exist: "
        + "; ".join(found)
        + ". The state was probably deleted, not mounted, or state.path changed: a sync now would send every "
        "object to every destination again (the jsonl file would hold each one twice). Restore the state "
        "store from its backup or fix state.path; to re-send everything on purpose, run "
        "`accoil-sync sync --accept-new-state` once."
    )


def _last_run_id(path: Path) -> str | None:
    """The run id on the file's last line (its tail only: the file can be large)."""
    with path.open("rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(max(0, size - 65536))
        lines = fh.read().splitlines()
    for line in reversed(lines):
        try:
            value = orjson.loads(line).get("run_id")
        except (orjson.JSONDecodeError, AttributeError):
            continue
        return str(value) if value else None
    return None
