"""Run alerts to a Slack-compatible incoming webhook: a failed run, too many rejected records, and one
message on recovery. Whether an alert is open is kept in the state store, so a restart neither repeats the
recovery message nor forgets to send it.

An alert names destinations, reason classes and counts, never a key's reason text (which may hold an
email). The same problem run after run is posted once: it is posted again only when it changes (another
destination, another class, a different stop) and, after it clears, once as a recovery.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import httpx

from accoil_sync import logs
from accoil_sync.sync.runner import RunResult
from accoil_sync.sync.state import StateStore

log = logging.getLogger("accoil_sync.alerts")

OPEN_FACT = "alert_open"


@dataclass(frozen=True, slots=True)
class Assessment:
    problem: str | None  # None: the run was healthy
    signature: str = ""  # what the problem is, without counts or run ids: equal signatures are one alert


def assess(result: RunResult | None, error: str | None, rejected_share: float) -> Assessment:
    if error is not None or result is None:
        return Assessment(f"the run failed: {error or 'no result'}", f"failed: {error or ''}")
    stopped = [f"{name}: {d.stopped}" for name, d in result.deliveries.items() if d.stopped]
    if stopped:
        return Assessment(
            "destination stopped: " + "; ".join(stopped), "stopped: " + "; ".join(sorted(stopped))
        )
    held = [str(hold) for holds in result.holds.values() for hold in holds]
    held += [
        f"{name}: {n} object(s) absent from the source not removed ({'; '.join(result.withheld.values())})"
        for name, n in result.kept.items()
    ]
    if held:
        # The signature names the held destinations and thresholds, not the counts: one alert per hold.
        return Assessment(
            "held by a safety guard: " + "; ".join(held),
            "held: "
            + "; ".join(
                sorted(
                    [
                        f"{h.destination} {h.kind.value} {h.setting}"
                        for holds in result.holds.values()
                        for h in holds
                    ]
                    + [f"{name} removals withheld" for name in result.kept]
                )
            ),
        )
    if result.shrunk:  # removal = "keep": nothing was withheld, but the export is likely broken
        return Assessment(
            "the source looks broken: " + "; ".join(result.shrunk.values()),
            "shrunk: " + ", ".join(sorted(result.shrunk)),
        )
    sent = sum(
        d.counts["ok"] + d.counts["rejected"] + d.counts["retryable"] for d in result.deliveries.values()
    )
    rejected = sum(d.counts["rejected"] for d in result.deliveries.values())
    if sent and rejected / sent > rejected_share:
        # Reason classes, never reason texts: those name keys and emails (`accoil-sync failures` lists them).
        by_class = sorted(
            ((n, f"{name} {cls}") for name, d in result.deliveries.items() for cls, n in d.reasons.items()),
            reverse=True,
        )
        classes = ", ".join(f"{what} {n}" for n, what in by_class)
        return Assessment(
            f"{rejected} of {sent} records rejected ({rejected / sent:.1%}, threshold {rejected_share:.1%})"
            + (f": {classes}" if classes else "")
            + "; `accoil-sync failures` lists them",
            "rejected: " + ", ".join(sorted(what for _, what in by_class)),
        )
    return Assessment(None)


class Alerter:
    def __init__(
        self,
        webhook_url: str | None,
        rejected_share: float,
        state: StateStore,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = webhook_url
        self.rejected_share = rejected_share
        self.state = state
        self.client = client or httpx.AsyncClient(timeout=10)

    async def after_run(self, run_id: str, result: RunResult | None, error: str | None) -> None:
        verdict = assess(result, error, self.rejected_share)
        stored = self.state.get_fact(OPEN_FACT)
        was_open = stored is not None
        if verdict.problem is not None:
            if _signature(stored) == verdict.signature:
                log.info("alert not repeated: the problem is unchanged since it was posted (run %s)", run_id)
                return
            await self._post(f":rotating_light: accoil-sync run {run_id}: {verdict.problem}")
            self.state.set_fact(OPEN_FACT, json.dumps({"run_id": run_id, "signature": verdict.signature}))
        elif was_open:
            await self._post(f":white_check_mark: accoil-sync recovered: run {run_id} finished cleanly")
            self.state.set_fact(OPEN_FACT, None)

    async def _post(self, text: str) -> None:
        text = logs.redact(text)  # a vendor's reason may echo a token back
        if not self.url:
            log.warning("alert (no webhook configured): %s", text)
            return
        try:
            response = await self.client.post(self.url, json={"text": text})
            if response.status_code >= 300:
                log.error("alert webhook answered %d; alert was: %s", response.status_code, text)
        except httpx.HTTPError as exc:
            # The webhook URL carries its token in the path: never log the URL, only the failure.
            log.error("alert webhook unreachable (%s); alert was: %s", type(exc).__name__, text)

    async def aclose(self) -> None:
        await self.client.aclose()


def _signature(stored: str | None) -> str | None:
    """The open alert's signature (facts written before de-duplication hold a bare run id: none)."""
    if stored is None:
        return None
    try:
        value = json.loads(stored)
    except ValueError:
        return None
    return value.get("signature") if isinstance(value, dict) else None
