"""Run alerts to a Slack-compatible incoming webhook: a failed run, too many rejected records, and one
message on recovery. Whether an alert is open is kept in the state store, so a restart neither repeats the
recovery message nor forgets to send it.
"""

from __future__ import annotations

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


def assess(result: RunResult | None, error: str | None, rejected_share: float) -> Assessment:
    if error is not None or result is None:
        return Assessment(f"the run failed: {error or 'no result'}")
    stopped = [f"{name}: {d.stopped}" for name, d in result.deliveries.items() if d.stopped]
    if stopped:
        return Assessment("destination stopped: " + "; ".join(stopped))
    sent = sum(
        d.counts["ok"] + d.counts["rejected"] + d.counts["retryable"] for d in result.deliveries.values()
    )
    rejected = sum(d.counts["rejected"] for d in result.deliveries.values())
    if sent and rejected / sent > rejected_share:
        top = sorted(
            ((n, reason) for d in result.deliveries.values() for reason, n in d.reasons.items()), reverse=True
        )[:3]
        reasons = "; ".join(f"{n}x {reason[:120]}" for n, reason in top)
        return Assessment(
            f"{rejected} of {sent} records rejected ({rejected / sent:.1%}, threshold {rejected_share:.1%})"
            + (f": {reasons}" if reasons else "")
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
        was_open = self.state.get_fact(OPEN_FACT) is not None
        if verdict.problem is not None:
            await self._post(f":rotating_light: accoil-sync run {run_id}: {verdict.problem}")
            self.state.set_fact(OPEN_FACT, run_id)
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
