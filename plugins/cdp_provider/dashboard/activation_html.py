"""Server-rendered HTML of the Activation view: plain tables and inline SVG charts (no script, no CDN).

Each figure a user reads carries a ``data-figure`` attribute (``audience.<id>.size``, ``destination.<name>.
<run date>.received``, ...) so that the browser test can compare what is shown with the tables.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from urllib.parse import urlencode

from cdp.monitoring.dashboard_data import (
    AudiencePage,
    DestinationPage,
    IdentityRun,
    IngestionDay,
    QualityCheck,
    QuarantineReason,
)

STYLE = """
body{font-family:system-ui,sans-serif;margin:16px;color:#1b1f24;font-size:14px}
h1{font-size:20px;margin:0 0 8px}h2{font-size:16px;margin:24px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:4px 0}td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}
td.t,th.t{text-align:left}th{background:#f5f6f8}.bad{color:#b42318;font-weight:600}.ok{color:#067647}
.muted{color:#667085}form{margin:4px 0}code{font-size:12px}nav a{margin-right:12px}
"""


def _q(params: Mapping[str, object], **changes: object) -> str:
    merged = {k: v for k, v in {**params, **changes}.items() if v not in ("", None)}
    return "?" + urlencode(merged)


def _fig(key: str, value: object) -> str:
    return f'<td data-figure="{escape(key)}">{escape(_num(value))}</td>'


def _num(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def sparkline(points: Sequence[int], width: int = 120, height: int = 24) -> str:
    """An inline SVG polyline of ``points`` (oldest first)."""
    if not points:
        return ""
    # Scaled between the smallest and largest size shown, so that a change of a large audience stays visible.
    low, span = min(points), max(max(points) - min(points), 1)
    step = width / max(len(points) - 1, 1)
    coords = " ".join(f"{i * step:.1f},{height - 2 - ((p - low) / span) * (height - 4):.1f}"
                      for i, p in enumerate(points))
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="size over the last {len(points)} runs">'
            f'<polyline fill="none" stroke="#2e90fa" stroke-width="1.5" points="{coords}"/></svg>')


def bars(values: Sequence[tuple[str, int]], width: int = 360, height: int = 80, label: str = "") -> str:
    """An inline SVG bar chart of labelled counts."""
    if not values:
        return ""
    top = max(max(v for _, v in values), 1)
    w = width / len(values)
    parts = []
    for i, (name, v) in enumerate(values):
        h = (v / top) * (height - 14)
        parts.append(f'<rect x="{i * w + 1:.1f}" y="{height - 12 - h:.1f}" width="{max(w - 2, 1):.1f}" '
                     f'height="{h:.1f}" fill="#53b1fd"><title>{escape(name)}: {v}</title></rect>'
                     f'<text x="{i * w + w / 2:.1f}" y="{height - 1}" font-size="9" text-anchor="middle">'
                     f'{escape(name)}</text>')
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(label)}">'
            + "".join(parts) + "</svg>")


def audiences_section(page: AudiencePage, params: Mapping[str, object]) -> str:
    """Audiences of the latest run: size, realized, exited, evaluation and why, the size chart; a search form."""
    out = [f'<h2 id="audiences">Audiences <span class="muted">run {page.run_date or "none yet"}, '
           f'{page.total:,} audience(s)</span></h2>',
           '<form method="get"><input type="hidden" name="dest" value="' + escape(str(params.get("dest", "")))
           + '"><input name="q" placeholder="audience id or name" value="' + escape(str(params.get("q", "")))
           + '"> <select name="evaluation">'
           + "".join(f'<option value="{v}"{" selected" if params.get("evaluation") == v else ""}>{v or "all"}'
                     "</option>" for v in ("", "batch", "streaming"))
           + '</select> <button>Filter</button></form>',
           '<table id="audience-table"><tr><th class="t">audience</th><th class="t">name</th><th>size</th>'
           '<th>realized</th><th>exited</th><th class="t">evaluation</th><th class="t">why</th>'
           '<th class="t">size, last runs</th></tr>']
    for a in page.rows:
        out.append(f'<tr data-audience="{escape(a.audience_id)}"><td class="t">{escape(a.audience_id)}</td>'
                   f'<td class="t">{escape(a.name)}</td>{_fig(f"audience.{a.audience_id}.size", a.size)}'
                   f'{_fig(f"audience.{a.audience_id}.realized", a.realized)}'
                   f'{_fig(f"audience.{a.audience_id}.exited", a.exited)}'
                   f'<td class="t" data-figure="audience.{escape(a.audience_id)}.evaluation">{escape(a.evaluation)}'
                   f'</td><td class="t">{escape(a.reason)}</td>'
                   f'<td class="t">{sparkline([s for _, s in a.history])}</td></tr>')
    out.append("</table>")
    out.append(_pager(page.page, page.page_size, page.total, "page", params))
    return "".join(out)


def destinations_section(page: DestinationPage, names: Iterable[str], params: Mapping[str, object],
                         ui_base: str) -> str:
    """Destination runs: received / activated / excluded by reason / failed, files, bytes, latency, status, log."""
    current = str(params.get("dest", ""))
    out = [f'<h2 id="destinations">Destinations <span class="muted">{page.total:,} run(s)</span></h2>',
           '<nav>' + f'<a href="{_q(params, dest="", dpage="")}#destinations">all</a>'
           + "".join(f'<a href="{_q(params, dest=n, dpage="")}#destinations"'
                     f'{" class=ok" if n == current else ""}>{escape(n)}</a>' for n in names) + "</nav>",
           '<table id="destination-table"><tr><th class="t">run date</th><th class="t">destination</th>'
           '<th class="t">type / mode</th><th>received</th><th>activated</th><th class="t">excluded</th>'
           '<th>failed</th><th>files</th><th>rows</th><th>bytes</th><th>latency p50 / p95 ms</th>'
           '<th class="t">status</th><th class="t">log</th></tr>']
    for r in page.rows:
        key = f"destination.{r.destination}.{r.run_date}"
        excluded = ", ".join(f'<span data-figure="{escape(key)}.excluded.{escape(k)}">{escape(k)} {v:,}</span>'
                             for k, v in sorted(r.excluded.items()) if v) or "none"
        latency = ("—" if r.latency_p50_ms is None else f"{r.latency_p50_ms:,} / {r.latency_p95_ms or 0:,}")
        status = (f'<span class="{"ok" if r.status == "delivered" else "bad"}" data-figure="{escape(key)}.status">'
                  f"{escape(r.status)}</span>" + (f'<br><code>{escape(r.error[:300])}</code>' if r.error else ""))
        link = (f'<a target="_top" href="{escape(ui_base.rstrip("/") + r.log_path)}">task log</a>' if r.log_path
                else "—")
        out.append(f'<tr data-destination="{escape(r.destination)}"><td class="t">{r.run_date}</td>'
                   f'<td class="t">{escape(r.destination)}</td><td class="t">{escape(r.type)} / {escape(r.mode)}</td>'
                   f'{_fig(key + ".received", r.received)}{_fig(key + ".activated", r.activated)}'
                   f'<td class="t">{excluded}</td>{_fig(key + ".failed", r.failed)}{_fig(key + ".files", r.files)}'
                   f'{_fig(key + ".rows", r.rows)}{_fig(key + ".bytes", r.bytes)}<td>{latency}</td>'
                   f'<td class="t">{status}</td><td class="t">{link}</td></tr>')
    out.append("</table>")
    out.append(_pager(page.page, page.page_size, page.total, "dpage", params))
    return "".join(out)


def ingestion_section(days: Sequence[IngestionDay], reasons: Sequence[QuarantineReason]) -> str:
    """Rows ingested and quarantined per dataset and day; the top quarantine reasons with masked samples."""
    out = ['<h2 id="ingestion">Ingestion</h2><table id="ingestion-table"><tr><th class="t">batch date</th>'
           '<th class="t">dataset</th><th>files</th><th>rows read</th><th>ingested</th><th>quarantined</th></tr>']
    for d in days:
        key = f"ingestion.{d.dataset}.{d.batch_date}"
        out.append(f'<tr><td class="t">{d.batch_date}</td><td class="t">{escape(d.dataset)}</td>'
                   f'{_fig(key + ".files", d.files)}{_fig(key + ".rows_read", d.rows_read)}'
                   f'{_fig(key + ".rows_ingested", d.rows_ingested)}'
                   f'{_fig(key + ".rows_quarantined", d.rows_quarantined)}</tr>')
    out.append('</table><h3>Top quarantine reasons</h3><table id="reason-table"><tr><th class="t">batch date</th>'
               '<th class="t">dataset</th><th class="t">reason</th><th class="t">field</th><th>records</th>'
               '<th class="t">samples (masked)</th></tr>')
    for q in reasons:
        key = f"quarantine.{q.dataset}.{q.batch_date}.{q.code}.{q.field}"
        samples = "<br>".join(f"<code>{escape(s[:200])}</code>" for s in q.samples)
        out.append(f'<tr><td class="t">{q.batch_date}</td><td class="t">{escape(q.dataset)}</td>'
                   f'<td class="t">{escape(q.code)}</td><td class="t">{escape(q.field) or "—"}</td>'
                   f'{_fig(key + ".records", q.records)}<td class="t">{samples}</td></tr>')
    out.append("</table>")
    return "".join(out)


def identity_section(runs: Sequence[IdentityRun]) -> str:
    """The latest identity graph figures, the identities-per-profile distribution, and the last runs."""
    if not runs:
        return '<h2 id="identity">Identity graph</h2><p class="muted">no run yet</p>'
    last = runs[-1]
    dist = sorted(last.identities_per_profile.items())
    out = [f'<h2 id="identity">Identity graph <span class="muted">run {last.run_date}</span></h2>',
           '<table id="identity-table"><tr><th class="t">run date</th><th>profiles</th><th>identities</th>'
           '<th>links</th><th>links dropped (collapse)</th><th>identities dropped (cap)</th><th>links expired</th>'
           '<th>merges</th><th>splits</th></tr>']
    for r in reversed(runs):
        key = f"identity.{r.run_date}"
        out.append(f'<tr><td class="t">{r.run_date}</td>{_fig(key + ".profiles", r.profiles)}'
                   f'{_fig(key + ".identities", r.identities)}{_fig(key + ".links", r.links)}'
                   f'{_fig(key + ".links_dropped", r.links_dropped)}'
                   f'{_fig(key + ".identities_dropped", r.identities_dropped)}'
                   f'{_fig(key + ".links_expired", r.links_expired)}{_fig(key + ".profile_merges", r.profile_merges)}'
                   f'{_fig(key + ".profile_splits", r.profile_splits)}</tr>')
    out.append('</table><h3>Identities per profile</h3><table id="distribution-table"><tr>'
               '<th>identities</th><th>profiles</th></tr>')
    for n, profiles in dist:
        out.append(f"<tr><td>{n}</td>{_fig(f'identity.distribution.{n}', profiles)}</tr>")
    out.append("</table>" + bars([(str(n), p) for n, p in dist], label="profiles by number of identities"))
    return "".join(out)


def quality_section(checks: Sequence[QualityCheck], docs_href: str | None = None) -> str:
    """The Great Expectations results of the last runs, failures first; a link to GX's Data Docs when built."""
    failed = sum(1 for c in checks if not c.success)
    # A new tab: the Data Docs are a site of their own, too wide for the Airflow UI's frame.
    docs = (f' <a id="quality-docs" href="{escape(docs_href)}" target="_blank" rel="noopener">Great Expectations '
            "Data Docs</a>" if docs_href else "")
    out = [f'<h2 id="quality">Quality <span class="muted">{len(checks)} expectation result(s), '
           f'<span data-figure="quality.failed" class="{"bad" if failed else "ok"}">{failed}</span> failed</span>'
           f"{docs}</h2>"
           '<table id="quality-table"><tr><th class="t">run date</th><th class="t">stage</th><th class="t">suite'
           '</th><th class="t">expectation</th><th class="t">arguments</th><th class="t">result</th>'
           '<th class="t">observed</th></tr>']
    for c in checks[:200]:
        out.append(f'<tr><td class="t">{c.run_date}</td><td class="t">{escape(c.stage)}</td>'
                   f'<td class="t">{escape(c.suite)}</td><td class="t">{escape(c.expectation)}</td>'
                   f'<td class="t"><code>{escape(c.kwargs[:160])}</code></td>'
                   f'<td class="t {"ok" if c.success else "bad"}">{"passed" if c.success else "failed"}</td>'
                   f'<td class="t"><code>{escape((c.observed or "")[:160])}</code></td></tr>')
    out.append("</table>")
    return "".join(out)


def page(title: str, sections: Iterable[str], rendered_at: dt.datetime) -> str:
    """The whole document."""
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>"
            '<nav><a href="#audiences">Audiences</a><a href="#destinations">Destinations</a>'
            '<a href="#ingestion">Ingestion</a><a href="#identity">Identity graph</a><a href="#quality">Quality</a>'
            f'</nav>{"".join(sections)}<p class="muted">rendered {rendered_at:%Y-%m-%d %H:%M:%S} UTC</p>'
            "</body></html>")


def _pager(current: int, size: int, total: int, name: str, params: Mapping[str, object]) -> str:
    pages = max((total + size - 1) // size, 1)
    if pages == 1:
        return ""
    prev = f'<a href="{_q(params, **{name: current - 1})}">previous</a> ' if current > 1 else ""
    nxt = f' <a href="{_q(params, **{name: current + 1})}">next</a>' if current < pages else ""
    return f'<p class="pager">{prev}page {current} of {pages}{nxt}</p>'
