"""The details page behind the card's link: metrics per profile, score history as an inline SVG chart, and
the segments joined and left, with dates. Server-rendered, no external assets (HubSpot frames it, and
many CRMs sit behind strict egress rules).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from accoil_sync.card.store import HistoryPoint
from accoil_sync.card.view import CardView, ProfileView
from accoil_sync.traits.explanation import Explanation
from accoil_sync.traits.names import ObjectKind, sanitize_score_name

CHART_W, CHART_H, PAD = 640, 180, 28

# Counts the chart points the browser actually laid out, so a headless browser can prove the chart rendered.
_SCRIPT = (
    "addEventListener('load',function(){document.querySelectorAll('svg.history').forEach(function(s){"
    "var n=0;s.querySelectorAll('circle.point').forEach(function(c){var r=c.getBoundingClientRect();"
    "if(r.width>0&&r.height>0)n++});s.setAttribute('data-rendered-points',String(n))})})"
)
SCRIPT_HASH = "sha256-" + base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
CSP = (
    f"default-src 'none'; style-src 'unsafe-inline'; script-src '{SCRIPT_HASH}'; img-src data:; "
    "frame-ancestors 'self' https://*.hubspot.com https://*.hubspotqa.com"
)

_STYLE = """
body{font:14px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,sans-serif;color:#33475b;margin:20px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}.muted{color:#7c98b6}
table{border-collapse:collapse}td,th{padding:4px 12px 4px 0;text-align:left;vertical-align:top}
.tag{display:inline-block;border-radius:3px;padding:0 6px;margin:0 4px 2px 0;background:#eaf0f6}
.SUCCESS{background:#e5f8f6}.WARNING{background:#fef8f0}.DANGER{background:#fde8e9}.INFO{background:#e5f5f8}
svg.history{max-width:100%;height:auto}svg .line{fill:none;stroke:#0091ae;stroke-width:2}
svg .point{fill:#0091ae}svg .axis{stroke:#cbd6e2}svg text{font-size:11px;fill:#7c98b6}
"""


@dataclass(frozen=True, slots=True)
class SegmentEvent:
    at: str
    segment: str
    joined: bool


def score_series(history: Sequence[HistoryPoint], score_name: str) -> list[tuple[str, float]]:
    out = []
    for point in history:
        metrics = (point.record or {}).get("metrics", {}).get(score_name) or {}
        if isinstance(metrics.get("score"), int | float):
            out.append((point.at, float(metrics["score"])))
    return out


def segment_events(history: Sequence[HistoryPoint], score_name: str) -> list[SegmentEvent]:
    events: list[SegmentEvent] = []
    current: set[str] = set()
    for point in history:
        metrics = (point.record or {}).get("metrics", {}).get(score_name) or {}
        now = set(metrics.get("segments") or ())
        events += [SegmentEvent(point.at, s, True) for s in sorted(now - current)]
        events += [SegmentEvent(point.at, s, False) for s in sorted(current - now)]
        current = now
    return events


def chart_svg(series: Sequence[tuple[str, float]], label: str) -> str:
    """Scores over time, x by timestamp, y on the 0-100 scale (widened if a score falls outside it)."""
    if not series:
        return '<p class="muted">No score history yet.</p>'
    times = [_epoch(at) for at, _ in series]
    scores = [s for _, s in series]
    lo, hi = min(0.0, *scores), max(100.0, *scores)
    t0, t1 = min(times), max(times)
    span = (t1 - t0) or 1.0

    def xy(t: float, s: float) -> tuple[float, float]:
        x = PAD + (t - t0) / span * (CHART_W - 2 * PAD) if t1 > t0 else CHART_W / 2
        y = CHART_H - PAD - (s - lo) / (hi - lo) * (CHART_H - 2 * PAD)
        return round(x, 1), round(y, 1)

    pts = [xy(t, s) for t, s in zip(times, scores, strict=True)]
    circles = "".join(
        f'<circle class="point" cx="{x}" cy="{y}" r="3.5" data-at="{escape(at)}" data-score="{s:g}">'
        f"<title>{escape(at[:16].replace('T', ' '))}: {s:g}</title></circle>"
        for (x, y), (at, s) in zip(pts, series, strict=True)
    )
    line = " ".join(f"{x},{y}" for x, y in pts)
    base = CHART_H - PAD
    return (
        f'<svg class="history" role="img" aria-label="{escape(label)}" viewBox="0 0 {CHART_W} {CHART_H}" '
        f'width="{CHART_W}" height="{CHART_H}" xmlns="http://www.w3.org/2000/svg" data-points="{len(pts)}">'
        f'<line class="axis" x1="{PAD}" y1="{base}" x2="{CHART_W - PAD}" y2="{base}"/>'
        f'<text x="2" y="{PAD + 4}">{hi:g}</text><text x="2" y="{base}">{lo:g}</text>'
        f'<text x="{PAD}" y="{CHART_H - 8}">{escape(series[0][0][:10])}</text>'
        f'<text x="{CHART_W - PAD}" y="{CHART_H - 8}" text-anchor="end">{escape(series[-1][0][:10])}</text>'
        f'<polyline class="line" points="{line}"/>{circles}</svg>'
    )


def _epoch(at: str) -> float:
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


def _metrics_table(view: CardView, p: ProfileView) -> str:
    def pct(v: float | None) -> str:
        return "—" if v is None else f"{v:g}%"

    rows = [
        ("Engagement score", "—" if p.score is None else f"{p.score:g}"),
        ("Activation", pct(p.activation)),
        ("Adoption (recent)", pct(p.adoption_recent)),
        ("Adoption (ever)", pct(p.adoption_ever)),
        ("Last active", (p.last_active or "—")[:10]),
        ("Frequency", p.frequency_label or "—"),
    ]
    if view.kind is ObjectKind.ACCOUNT:
        rows.append(
            (
                "Active users",
                f"{p.active_users if p.active_users is not None else '—'} of "
                f"{p.total_users if p.total_users is not None else '—'}",
            )
        )
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    tags = "".join(f'<span class="tag {s.state}">{escape(s.name)}</span>' for s in p.segments) or "—"
    return f"<table>{body}<tr><th>Segments</th><td>{tags}</td></tr></table>"


def _explanation(p: ProfileView) -> str:
    """Why the score: the stored explanation of an events source (nothing for a metrics source)."""
    if not p.explanation:
        return ""
    e = Explanation.from_json(p.explanation)
    if e.top:
        rows = "".join(
            "<tr>"
            + "".join(
                f"<td>{escape(cell)}</td>"
                for cell in (
                    c.event,
                    c.feature if c.feature != c.event else "—",
                    str(c.count),
                    str(c.weight),
                    str(c.points),
                    f"{c.share:.0f}%",
                )
            )
            + "</tr>"
            for c in e.top
        )
        top = (
            "<table><tr><th>Event</th><th>Feature</th><th>Count</th><th>Weight</th><th>Points</th>"
            f"<th>Share</th></tr>{rows}</table>"
        )
    else:
        top = '<p class="muted">No scored event in the window.</p>'
    anchor = (
        f'<p class="muted">{escape(f"Raw score {e.raw:g} against the P90 anchor {e.p90:g}.")}</p>'
        if e.raw is not None and e.p90
        else ""
    )
    band = e.next_band_line()
    nxt = (
        f"<p>{escape(band[0].upper() + band[1:])}" + (f" — {escape(e.hint)}" if e.hint else "") + ".</p>"
        if band
        else '<p class="muted">In the top score band.</p>'
    )
    return f'<div class="explanation"><h2>Why this score</h2>{top}{anchor}{nxt}</div>'


def render_details(view: CardView, history: Sequence[HistoryPoint]) -> str:
    sections = []
    for p in view.profiles:
        score_name = sanitize_score_name(p.name)
        events = segment_events(history, score_name)
        event_rows = "".join(
            f"<tr><td>{escape(e.at[:10])}</td><td>{'joined' if e.joined else 'left'}</td>"
            f"<td>{escape(e.segment)}</td></tr>"
            for e in reversed(events)
        )
        sections.append(
            f'<section data-profile="{escape(p.name)}"><h2>{escape(p.name)}</h2>{_metrics_table(view, p)}'
            f"{_explanation(p)}"
            f"<h2>Score history</h2>{chart_svg(score_series(history, score_name), f'{p.name} score history')}"
            "<h2>Segments joined and left</h2>"
            + (f"<table>{event_rows}</table>" if event_rows else '<p class="muted">No segment changes.</p>')
            + "</section>"
        )
    title = view.name or view.key
    kind = "Account" if view.kind is ObjectKind.ACCOUNT else "User"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)} · Accoil engagement</title><style>{_STYLE}</style></head><body>"
        f'<h1>{escape(title)}</h1><p class="muted">{kind} {escape(view.key)} · metrics as of '
        f"{escape(view.updated_at[:16].replace('T', ' '))} UTC</p>"
        + ("".join(sections) or '<p class="muted">No metrics for this object.</p>')
        + f"<script>{_SCRIPT}</script></body></html>"
    )


def render_message(title: str, message: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1><p>{escape(message)}</p></body></html>"
    )
