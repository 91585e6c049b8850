"""``frvt report``: one self-contained HTML page from the results of validate, score, profile and bench.

The page needs nothing at view time: figures are PNGs inlined as ``data:`` URIs, the style sheet
is inline, there is no script and no external resource. Sections: summary of inputs, validation
(verdict, every check with its evidence, failures), accuracy (DET curves of every scored system
overlaid, FNMR at FMR with intervals), demographic differentials (cross-group FMR heatmaps,
per-group tables, ratios, Gini/GARBE), latency (histogram against the budget, stages), runtimes
(bench), machine and software, and a marked section for every input that could not be used.
Each section is drawn on its own: a section that fails shows what went wrong instead of the
page failing.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import time
from pathlib import Path
from typing import Callable, Sequence

from frvt.report.runs import Result, Runs, find_runs

SECTIONS = ("inputs", "validation", "accuracy", "demographics", "latency", "runtimes", "machine", "problems")

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#111;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:2px solid #333;padding-bottom:.2em;margin-top:2em}
h3{margin-top:1.4em} table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #999;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#eee} td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:.1em .5em;border:2px solid;border-radius:.3em;font-weight:bold}
.PASS{color:#005a8c;border-color:#005a8c} .WARN{color:#8a5a00;border-color:#8a5a00;border-style:dashed}
.FAIL{color:#a63a00;border-color:#a63a00;border-style:double;border-width:4px}
.note{color:#444;font-size:.9em} .problem{border:3px dashed #a63a00;padding:.5em 1em;margin:1em 0}
.ev{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.8em;white-space:pre-wrap;max-height:14em;
overflow:auto;margin:0} img{max-width:100%;height:auto;display:block;margin:.5em 0}
nav a{margin-right:1em} figure{margin:1em 0} figcaption{font-size:.85em;color:#333}
@media print{body{max-width:none;margin:0} nav{display:none} h2{page-break-before:auto}
figure,table{page-break-inside:avoid} .ev{max-height:none;overflow:visible}}
"""


def _e(x) -> str:
    return html.escape("" if x is None else str(x))


def _pct(x, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{100 * x:.{digits}g}%"


def _num(x, fmt: str = ".3g") -> str:
    """A number for a table; a dict of numbers as ``key value`` pairs; anything else escaped."""
    if isinstance(x, dict):
        return ", ".join(f"{_e(k)} {_num(v, fmt)}" for k, v in x.items())
    if x is None or isinstance(x, bool) or not isinstance(x, (int, float)):
        return "-" if x is None else _e(x)
    return "-" if not math.isfinite(x) else format(x, fmt)


def _img(data: bytes, alt: str, caption: str = "") -> str:
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{uri}" alt="{_e(alt)}">{cap}</figure>'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """Cells are HTML already (escape before)."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _ci(lo, hi, pct: bool = True) -> str:
    if lo is None or hi is None:
        return ""
    f = _pct if pct else _num
    return f" [{f(lo)}, {f(hi)}]"


def _where(r: Result) -> str:
    return f'<p class="note">from <code>{_e(r.path)}</code>{" &mdash; " + _e(r.note) if r.note else ""}</p>'


# --- sections -------------------------------------------------------------------------------------------


def _inputs(runs: Runs) -> str:
    rows = [
        [
            _e(r.kind),
            f"<code>{_e(r.path)}</code>",
            _e(r.doc.get("schema")),
            _e(r.doc.get("created") or (r.doc.get("created_by") or {}).get("git_revision") or ""),
        ]
        for r in runs.results
    ]
    out = _table(["kind", "file", "schema", "created / revision"], rows)
    if runs.problems:
        out += f'<p class="note">{len(runs.problems)} input(s) could not be used: see <a href="#problems">Problems</a>.</p>'
    return out


def _validation(runs: Runs) -> str:
    parts = []
    for r in runs.of("validate"):
        d = r.doc
        verdict = d.get("verdict", "?")
        parts.append(
            f"<h3>{_e(d.get('implementation', 'implementation'))} "
            f'<span class="badge {_e(verdict)}">{_e(verdict)}</span></h3>{_where(r)}'
        )
        counts = d.get("counts") or {}
        if counts:
            parts.append("<p>" + ", ".join(f"{_e(k)} {_e(v)}" for k, v in counts.items()) + "</p>")
        rows = []
        for c in d.get("checks") or []:
            if not isinstance(c, dict):
                continue
            status = c.get("status", "?")
            extra = {k: v for k, v in c.items() if k not in ("name", "status", "detail", "evidence")}
            ev = c.get("evidence")
            ev_text = json.dumps(ev, indent=1, default=str) if ev else ""
            if extra:
                ev_text = (json.dumps(extra, default=str) + "\n" + ev_text).strip()
            rows.append(
                [
                    f"<b>{_e(c.get('name'))}</b>",
                    f'<span class="badge {_e(status)}">{_e(status)}</span>',
                    _e(c.get("detail")),
                    f'<pre class="ev">{_e(ev_text)}</pre>' if ev_text else "",
                ]
            )
        parts.append(
            _table(["check", "status", "detail", "evidence"], rows)
            if rows
            else '<p class="problem">This summary lists no checks.</p>'
        )
        lat = d.get("latency") or {}
        if lat.get("median_ms") is not None:
            parts.append(
                _img(
                    __import__("frvt.report.figures", fromlist=["x"]).latency_summary_figure(
                        lat, lat.get("budget_ms"), "create_face_template per call, single-process enrolment"
                    ),
                    "latency against the budget",
                    f"create_face_template: n={lat.get('n')}, median {_num(lat.get('median_ms'), '.1f')} ms against the "
                    f"{_num(lat.get('budget_ms'), 'g')} ms budget",
                )
            )
        fails = d.get("template_failures") or []
        if fails:
            rows = [
                [
                    _e(f.get("list")),
                    _e(f.get("id")),
                    f"<code>{_e(f.get('image'))}</code>",
                    _e(f"{f.get('code_name')} ({f.get('code')})"),
                    _e(f.get("info")),
                ]
                for f in fails
            ]
            parts.append("<h4>Templates that failed</h4>" + _table(["list", "id", "image", "code", "info"], rows))
    return "".join(parts) or '<p class="note">No validation run among the inputs.</p>'


def _score_systems(runs: Runs) -> list[tuple[Result, dict]]:
    out = []
    for r in runs.of("score"):
        systems = r.doc.get("systems") or [r.doc]
        out += [(r, s) for s in systems if isinstance(s, dict)]
    return out


def _accuracy(runs: Runs) -> str:
    from frvt.report import figures

    systems = _score_systems(runs)
    if not systems:
        return '<p class="note">No scoring result (frvt score) among the inputs.</p>'
    labels = [s.get("label", "?") for _, s in systems]
    dup = {x for x in labels if labels.count(x) > 1}
    shown = []
    for r, s in systems:
        s = dict(s)
        if s.get("label") in dup:
            s["label"] = f"{s.get('label')} ({Path(r.path).parent.name})"
        shown.append(s)
    conf = systems[0][0].doc.get("confidence", 0.95)
    parts = [_img(figures.det_figure(shown, conf), "DET curves", "DET curves of every scored system")]
    keys = []
    for s in shown:
        for k in s.get("fnmr_at_fmr") or {}:
            if k not in keys:
                keys.append(k)
    keys.sort(key=float)
    rows = []
    for s in shown:
        row = [
            f"<b>{_e(s.get('label'))}</b>",
            f"{s.get('n_genuine') or 0:,}",
            f"{s.get('n_impostor') or 0:,}",
            _pct(s.get("eer")),
        ]
        for k in keys:
            v = (s.get("fnmr_at_fmr") or {}).get(k)
            if not v:
                row.append("")
            elif not v.get("estimable"):
                row.append(f'<span class="note" title="{_e(v.get("reason"))}">n/e</span>')
            else:
                row.append(
                    f'{_pct(v.get("fnmr"))}<br><span class="note">{_ci(v.get("ci_low"), v.get("ci_high"))}</span>'
                )
        rows.append(row)
    parts.append(f"<h3>FNMR at FMR ({conf:.0%} intervals)</h3>")
    parts.append(
        _table(
            ["system", "genuine", "impostor", "EER"] + [f"FMR {k}" for k in keys], rows, numeric=range(1, 4 + len(keys))
        )
    )
    parts.append(
        '<p class="note">n/e: not estimable (too few impostor comparisons for the level; hover for the '
        "shortfall). Threshold set on all impostors; a failed comparison is a non-match.</p>"
    )
    for r, s in systems:
        f = s.get("failures") or {}
        if f:
            txt = ", ".join(
                f"{_e(k)} {v.get('n_failed')}/{v.get('n_attempts')}" for k, v in f.items() if isinstance(v, dict)
            )
            parts.append(f'<p class="note">{_e(s.get("label"))}: failures {txt}</p>')
    return "".join(parts)


def _demographics(runs: Runs) -> str:
    from frvt.report import figures

    docs = []
    for r in runs.of("demographics"):
        for s in r.doc.get("systems") or [r.doc]:
            docs.append((r, s))
    if not docs:
        return (
            '<p class="note">No demographic result among the inputs (<code>frvt score --demographics '
            "LABELS.csv</code> writes <code>demographics.json</code>).</p>"
        )
    parts = []
    for r, s in docs:
        label = s.get("label", "system")
        if "error" in s:
            parts.append(f'<div class="problem"><b>{_e(label)}</b>: demographics not computed: {_e(s["error"])}</div>')
            continue
        for attr, a in (s.get("attributes") or {}).items():
            groups = a.get("groups") or []
            parts.append(f"<h3>{_e(label)}: {_e(attr)}</h3>{_where(r)}")
            lab = a.get("labels") or {}
            ex = a.get("excluded") or {}
            parts.append(
                f"<p>{lab.get('templates', 0):,} templates; unlabelled {lab.get('unlabelled_templates', 0):,}, "
                f"conflicting {lab.get('conflicting_templates', 0):,}; labels for ids not in the run "
                f"{lab.get('keys_not_in_run', 0):,}. Left out of the groups: genuine unlabelled "
                f"{ex.get('genuine_unlabelled', 0):,}, genuine across groups {ex.get('genuine_mixed_groups', 0):,}, "
                f"impostor unlabelled {ex.get('impostor_unlabelled', 0):,}.</p>"
            )
            if lab.get("conflicting_examples"):
                parts.append(f'<p class="note">conflicting: {_e(", ".join(lab["conflicting_examples"]))}</p>')
            if lab.get("unlabelled_examples"):
                parts.append(f'<p class="note">unlabelled: {_e(", ".join(lab["unlabelled_examples"]))}</p>')
            if lab.get("empty_groups"):
                parts.append(f'<p class="problem">groups with no comparison: {_e(", ".join(lab["empty_groups"]))}</p>')
            if len(groups) == 0:
                parts.append('<p class="problem">No group: no template of the run carries a label.</p>')
                continue
            for key, e in (a.get("fmr") or {}).items():
                o = e.get("overall") or {}
                thr = e.get("threshold") if e.get("threshold") is not None else e.get("threshold_similarity")
                parts.append(
                    f"<h4>FMR {key}: threshold {_num(thr, '.6g')} (overall FMR {_pct(o.get('fmr'))}, "
                    f"FNMR {_pct(o.get('fnmr'))})</h4>"
                )
                mat = e.get("fmr_matrix") or []
                values = [[c.get("fmr") for c in row] for row in mat]
                counts = [[f"{c.get('false_matches', 0):,}/{c.get('n_impostor', 0):,}" for c in row] for row in mat]
                if any(v is not None for row in values for v in row):
                    parts.append(
                        _img(
                            figures.heatmap_figure(values, groups, counts, f"impostor FMR by group at FMR {key}"),
                            f"cross-group FMR heatmap, {attr}, FMR {key}",
                            f"{label}, {attr}: cells are FMR (false matches / impostor comparisons); blank cells have no "
                            "false match or no comparison.",
                        )
                    )
                rows, rel = [], {"FMR / overall": ([], [], []), "FNMR / overall": ([], [], [])}
                for g in groups:
                    v = (e.get("groups") or {}).get(g) or {}
                    rows.append(
                        [
                            f"<b>{_e(g)}</b>",
                            f"{v.get('n_subjects', 0):,}",
                            f"{_pct(v.get('fnmr'))}{_ci(*(v.get('fnmr_ci') or [None, None]))}",
                            f"{v.get('false_non_matches', 0):,}/{v.get('n_genuine', 0):,}",
                            f"{_pct(v.get('fmr'))}{_ci(*(v.get('fmr_ci') or [None, None]))}",
                            f"{v.get('false_matches', 0):,}/{v.get('n_impostor', 0):,}",
                            f"{_num(v.get('fmr_relative'))}{_ci(*(v.get('fmr_relative_ci') or [None, None]), pct=False)}",
                            f"{_num(v.get('fnmr_relative'))}{_ci(*(v.get('fnmr_relative_ci') or [None, None]), pct=False)}",
                            _e("; ".join(v.get("notes") or [])),
                        ]
                    )
                    for name, field in (("FMR / overall", "fmr_relative"), ("FNMR / overall", "fnmr_relative")):
                        ci = v.get(f"{field}_ci") or [None, None]
                        rel[name][0].append(v.get(field))
                        rel[name][1].append(ci[0])
                        rel[name][2].append(ci[1])
                parts.append(
                    _table(
                        [
                            "group",
                            "subjects",
                            "FNMR",
                            "false non-matches",
                            "same-group FMR",
                            "false matches",
                            "FMR / overall",
                            "FNMR / overall",
                            "notes",
                        ],
                        rows,
                        numeric=range(1, 8),
                    )
                )
                if any(x is not None for vals, _, _ in rel.values() for x in vals):
                    parts.append(
                        _img(
                            figures.ratio_figure(groups, rel, f"{label}: {attr}, relative rates at FMR {key}"),
                            f"relative rates, {attr}, FMR {key}",
                        )
                    )
                srow = []
                for k, name in (
                    ("fmr_max_min", "FMR max/min"),
                    ("fnmr_max_min", "FNMR max/min"),
                    ("gini_fmr", "Gini of FMR"),
                    ("gini_fnmr", "Gini of FNMR"),
                    ("garbe", f"GARBE (alpha {a.get('garbe_alpha', 0.5)})"),
                ):
                    v = (e.get("summary") or {}).get(k) or {}
                    srow.append(
                        [
                            name,
                            _num(v.get("value")),
                            _ci(v.get("ci_low"), v.get("ci_high"), pct=False).strip(),
                            f"{v.get('n_valid', 0)}",
                        ]
                    )
                parts.append(_table(["summary", "value", "interval", "valid resamples"], srow, numeric=(1, 3)))
            b = a.get("bootstrap")
            if b:
                parts.append(
                    f'<p class="note">Intervals: {b.get("confidence", 0.95):.0%} {_e(b.get("method"))}, '
                    f"{b.get('n_resamples')} resamples of {_e(b.get('unit'))}, seed {b.get('seed')}.</p>"
                )
    return "".join(parts)


def _latency(runs: Runs) -> str:
    from frvt.report import figures

    parts = []
    for r in runs.of("profile"):
        d = r.doc
        budget = d.get("budget_ms")
        verdict = d.get("verdict", "?")
        parts.append(
            f'<h3>{_e(d.get("implementation", "profile"))} <span class="badge {_e(verdict)}">'
            f"{_e(verdict)}</span></h3>{_where(r)}"
        )
        for call in ("create_face_template", "match_templates"):
            st = d.get(call) or {}
            if st.get("samples_ms"):
                parts.append(
                    _img(
                        figures.latency_figure(
                            st["samples_ms"],
                            budget if call == "create_face_template" else None,
                            f"{call}: per-call latency",
                            st,
                        ),
                        f"{call} latency histogram",
                    )
                )
            if st:
                parts.append(
                    _table(
                        ["call", "n", "median", "p90", "p99", "max", "unstable"],
                        [
                            [
                                _e(call),
                                _e(st.get("n")),
                                _num(st.get("median_ms"), ".2f"),
                                _num(st.get("p90_ms"), ".2f"),
                                _num(st.get("p99_ms"), ".2f"),
                                _num(st.get("max_ms"), ".2f"),
                                _e("; ".join(st.get("unstable_reasons") or []) or st.get("unstable")),
                            ]
                        ],
                        numeric=range(1, 6),
                    )
                )
        stages = (d.get("stages") or {}).get("stages") or {}
        if stages:
            rows = [
                [_e(k), _num(v.get("mean_ms"), ".2f"), _num(v.get("median_ms"), ".2f"), _pct(v.get("share"))]
                for k, v in stages.items()
                if isinstance(v, dict)
            ]
            parts.append("<h4>Stages (ms)</h4>" + _table(["stage", "mean", "median", "share"], rows, numeric=(1, 2, 3)))
        est = d.get("estimate") or {}
        if est.get("available"):
            parts.append(
                f'<p class="note">{_e(est.get("label"))}: median {_num(est.get("median_ms"), ".1f")} ms, '
                f"p99 {_num(est.get('p99_ms'), '.1f')} ms ({_e(est.get('basis'))})</p>"
            )
    if not parts:
        return '<p class="note">No latency profile (frvt profile --json) among the inputs.</p>'
    return "".join(parts)


def _runtimes(runs: Runs) -> str:
    from frvt.report import figures

    parts = []
    for r in runs.of("bench"):
        d = r.doc
        rows = [x for x in d.get("rows") or [] if isinstance(x, dict)]
        parts.append(f"<h3>Runtimes</h3>{_where(r)}")
        if d.get("command"):
            parts.append(f"<p><code>{_e(d['command'])}</code></p>")
        models = []
        for x in rows:
            if x.get("model") not in models:
                models.append(x.get("model"))
        for m in models:
            if any(x.get("median_ms") is not None for x in rows if x.get("model") == m):
                parts.append(_img(figures.bench_figure(rows, m), f"runtimes for {m}"))
        table = [
            [
                _e(x.get("model")),
                _e(x.get("runtime")),
                _e(x.get("group")),
                _e(x.get("status")),
                _num(x.get("median_ms"), ".2f"),
                _num(x.get("p90_ms"), ".2f"),
                _e(x.get("n")),
                _e(x.get("note")),
            ]
            for x in rows
        ]
        parts.append(
            _table(
                ["model", "runtime", "group", "status", "median ms", "p90 ms", "n", "note"], table, numeric=(4, 5, 6)
            )
        )
        bars = d.get("bars") or []
        if bars:
            parts.append(
                _table(
                    ["bar", "model", "group", "value", "met"],
                    [
                        [
                            _e(b.get("bar")),
                            _e(b.get("model")),
                            _e(b.get("group")),
                            _num(b.get("value")),
                            _e(b.get("met")),
                        ]
                        for b in bars
                        if isinstance(b, dict)
                    ],
                    numeric=(3,),
                )
            )
    return "".join(parts) or '<p class="note">No runtime comparison (frvt bench --json) among the inputs.</p>'


def _machine(runs: Runs) -> str:
    rows = []
    for r in runs.results:
        m = r.doc.get("machine")
        created = r.doc.get("created_by") or {}
        if not isinstance(m, dict):
            if created:
                rows.append(
                    [
                        _e(r.kind),
                        f"<code>{_e(r.path)}</code>",
                        "-",
                        "-",
                        "-",
                        _e(", ".join(f"{k} {v}" for k, v in created.items() if v)),
                    ]
                )
            continue
        isa = m.get("isa") or {}
        isa_text = ", ".join(k for k, v in isa.items() if v) if isinstance(isa, dict) else str(isa)
        versions = m.get("versions") or {}
        sw = ", ".join(f"{k} {v}" for k, v in versions.items()) if isinstance(versions, dict) else str(versions)
        sw += f"; python {m.get('python')}; git {str(m.get('git_revision') or '-')[:10]}" + (
            " (dirty)" if m.get("git_dirty") else ""
        )
        mem = m.get("memory_bytes")
        rows.append(
            [
                _e(r.kind),
                f"<code>{_e(r.path)}</code>",
                _e(
                    f"{m.get('cpu_model')}, {m.get('usable_cores') or m.get('logical_cores')} cores"
                    + (", virtualised" if m.get("hypervisor") else "")
                ),
                _e(isa_text),
                _e(f"{mem / 2**30:.1f} GiB" if mem else "-"),
                _e(sw + f"; {m.get('os', '')}"),
            ]
        )
    if not rows:
        return '<p class="note">No machine description in the inputs.</p>'
    return _table(["kind", "file", "CPU", "ISA", "memory", "software"], rows)


def _problems(runs: Runs) -> str:
    notes = [f"<li><code>{_e(r.path)}</code>: {_e(r.note)}</li>" for r in runs.results if r.note]
    if not runs.problems and not notes:
        return '<p class="note">Every input was used.</p>'
    items = "".join(f"<li><code>{_e(p.path)}</code>: {_e(p.reason)}</li>" for p in runs.problems)
    out = f'<div class="problem"><ul>{items}</ul></div>' if items else ""
    return out + (f"<ul>{''.join(notes)}</ul>" if notes else "")


TITLES = {
    "inputs": "Inputs",
    "validation": "Validation",
    "accuracy": "Accuracy",
    "demographics": "Demographic differentials",
    "latency": "Latency",
    "runtimes": "Runtimes",
    "machine": "Machine and software",
    "problems": "Problems",
}
RENDER: dict[str, Callable[[Runs], str]] = {
    "inputs": _inputs,
    "validation": _validation,
    "accuracy": _accuracy,
    "demographics": _demographics,
    "latency": _latency,
    "runtimes": _runtimes,
    "machine": _machine,
    "problems": _problems,
}


def render_html(runs: Runs, title: str = "frvt report") -> str:
    """The page. A section that raises is replaced by a marked error naming the exception."""
    body = []
    for sec in SECTIONS:
        try:
            content = RENDER[sec](runs)
        except Exception as exc:  # one bad input must not cost the whole report
            content = (
                f'<div class="problem">This section could not be drawn from the inputs: '
                f"{_e(type(exc).__name__)}: {_e(exc)}</div>"
            )
        body.append(f'<section id="{sec}"><h2>{_e(TITLES[sec])}</h2>{content}</section>')
    nav = "".join(f'<a href="#{s}">{_e(TITLES[s])}</a>' for s in SECTIONS)
    made = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{CSS}</style></head><body><h1>{_e(title)}</h1>"
        f'<p class="note">Generated {made} by frvt report from {len(runs.results)} result file(s).</p>'
        f"<nav>{nav}</nav>{''.join(body)}</body></html>\n"
    )


def build_report(
    paths: Sequence[str | os.PathLike], out: str | os.PathLike, title: str = "frvt report"
) -> tuple[Path, Runs]:
    """Read the runs, write the HTML page to ``out`` (atomically); return its path and what was read."""
    runs = find_runs(list(paths))
    page = render_html(runs, title)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out, runs
