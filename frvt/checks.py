"""The checks of ``frvt validate``: NIST's validation checks and the ones it should run.

Each check is a pure function of the run's outcomes returning a :class:`Check` with status PASS,
WARN or FAIL and the evidence in ``detail``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from frvt.contract import ReturnCode
from frvt.driver import MatchOutcome, TemplateOutcome, ThreadSample

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"


@dataclass
class Check:
    name: str
    status: str
    detail: str
    evidence: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"name": self.name, "status": self.status, "detail": self.detail, "evidence": self.evidence}


def _code_name(code: int) -> str:
    try:
        return ReturnCode(code).name
    except ValueError:
        return f"invalid({code})"


def check_initialize(code: int, info: str, hook_error: str | None = None) -> Check:
    if hook_error:
        return Check("initialize", FAIL, hook_error)
    if code != ReturnCode.Success:
        return Check("initialize", FAIL, f"initialize returned {_code_name(code)}: {info}", {"code": code})
    return Check("initialize", PASS, "initialize returned Success on the read-only copy of the config directory")


def check_log_lines(counts: dict[str, tuple[int, int]]) -> Check:
    """``counts`` maps a log name to (lines in the log, lines in its input list)."""
    bad = {k: v for k, v in counts.items() if v[0] != v[1]}
    ev = {k: {"log": v[0], "list": v[1]} for k, v in counts.items()}
    if bad:
        return Check("log_lines", FAIL, "; ".join(f"{k}: {a} rows for {b} list lines" for k, (a, b) in bad.items()), ev)
    return Check("log_lines", PASS, ", ".join(f"{k}: {a} rows = list" for k, (a, _) in counts.items()), ev)


def check_return_codes(templates: Sequence[TemplateOutcome], matches: Sequence[MatchOutcome]) -> Check:
    """Tally codes; any code outside NIST's enumeration fails, any non-success warns."""
    tally = {
        "templates": dict(Counter(_code_name(o.row.code) for o in templates)),
        "matches": dict(Counter(_code_name(m.row.code) for m in matches)),
    }
    invalid = [c for part in tally.values() for c in part if c.startswith("invalid")]
    text = "; ".join(
        f"{k}: " + ", ".join(f"{n} {c}" for c, n in sorted(v.items(), key=lambda kv: -kv[1])) for k, v in tally.items()
    )
    if invalid:
        return Check("return_codes", FAIL, f"codes outside NIST's ReturnCode: {invalid}; {text}", tally)
    non_success = sum(n for part in tally.values() for c, n in part.items() if c != "Success")
    return Check("return_codes", WARN if non_success else PASS, text, tally)


def check_exceptions(templates: Sequence[TemplateOutcome], matches: Sequence[MatchOutcome]) -> Check:
    raised = [(o.row.id, o.exception) for o in templates if o.exception]
    raised += [(f"{m.row.enroll_id}/{m.row.verif_id}", m.exception) for m in matches if m.exception]
    if raised:
        first = "; ".join(f"{k}: {e}" for k, e in raised[:3])
        return Check(
            "no_exceptions",
            FAIL,
            f"{len(raised)} calls raised instead of returning a status: {first}",
            {"count": len(raised)},
        )
    return Check("no_exceptions", PASS, "no exception crossed the contract")


def successful_scores(matches: Sequence[MatchOutcome]) -> np.ndarray:
    return np.array([m.row.score for m in matches if m.row.code == ReturnCode.Success], dtype=np.float64)


def check_unique_scores(matches: Sequence[MatchOutcome], minimum_fraction: float = 0.5) -> Check:
    """At least half the successful scores distinct (``np.unique``; NIST's script forgets to sort)."""
    scores = successful_scores(matches)
    if scores.size == 0:
        return Check("unique_scores", FAIL, "no successful comparison to count scores from")
    n_unique = int(np.unique(scores).size)
    frac = n_unique / scores.size
    ev = {"n_unique": n_unique, "n_scores": int(scores.size), "fraction": frac}
    status = PASS if frac >= minimum_fraction else FAIL
    return Check(
        "unique_scores",
        status,
        f"{n_unique} unique of {scores.size} successful scores ({frac:.1%}; need >= {minimum_fraction:.0%})",
        ev,
    )


def check_scores_valid(matches: Sequence[MatchOutcome]) -> Check:
    """No negative or non-finite similarity on a successful comparison."""
    bad = [
        m.row
        for m in matches
        if m.row.code == ReturnCode.Success and not (np.isfinite(m.row.score) and m.row.score >= 0)
    ]
    if bad:
        ex = ", ".join(f"{r.enroll_id}/{r.verif_id}={r.score}" for r in bad[:5])
        return Check(
            "scores_non_negative",
            FAIL,
            f"{len(bad)} successful comparisons with a negative or non-finite score: {ex}",
            {"count": len(bad)},
        )
    return Check("scores_non_negative", PASS, "every successful comparison has a finite score >= 0")


def check_failed_templates_matchable(
    templates: dict[str, TemplateOutcome], verif: dict[str, TemplateOutcome], matches: Sequence[MatchOutcome]
) -> Check:
    """Comparisons with a failed template must return -1 and a non-success code."""
    involved, bad = 0, []
    for m in matches:
        e, v = templates.get(m.row.enroll_id), verif.get(m.row.verif_id)
        failed = (e is not None and e.row.code != ReturnCode.Success) or (
            v is not None and v.row.code != ReturnCode.Success
        )
        if not failed:
            continue
        involved += 1
        if m.row.score != -1.0 or m.row.code == ReturnCode.Success:
            bad.append(m.row)
    ev = {"comparisons_with_failed_template": involved, "wrong": len(bad)}
    if bad:
        ex = ", ".join(f"{r.enroll_id}/{r.verif_id}: score {r.score} code {_code_name(r.code)}" for r in bad[:5])
        return Check(
            "failed_templates_matchable",
            FAIL,
            f"{len(bad)} of {involved} comparisons with a failed template did not give -1 with a non-success code: {ex}",
            ev,
        )
    if involved == 0:
        return Check("failed_templates_matchable", PASS, "no template failed, nothing to check", ev)
    return Check(
        "failed_templates_matchable",
        PASS,
        f"all {involved} comparisons with a failed template gave -1 with a non-success code",
        ev,
    )


def check_template_sizes(outcomes: Sequence[TemplateOutcome]) -> Check:
    """Every template the implementation produced is non-empty (a template is always produced)."""
    produced = [o for o in outcomes if o.decode_error is None]
    sizes = np.array([o.row.size for o in produced])
    empty = [o.row.id for o in produced if o.row.size == 0]
    ev = {"n": int(sizes.size)}
    if sizes.size:
        ev.update(min=int(sizes.min()), median=float(np.median(sizes)), max=int(sizes.max()))
    if empty:
        return Check("template_sizes", FAIL, f"{len(empty)} empty templates (0 bytes), e.g. {', '.join(empty[:5])}", ev)
    if not sizes.size:
        return Check("template_sizes", FAIL, "no template was produced", ev)
    ok_sizes = {o.row.size for o in produced if o.row.code == ReturnCode.Success}
    note = "" if len(ok_sizes) <= 1 else f"; successful templates come in {len(ok_sizes)} sizes"
    return Check("template_sizes", PASS, f"{sizes.size} templates, {ev['min']}-{ev['max']} bytes{note}", ev)


def check_eye_coordinates(outcomes: Sequence[TemplateOutcome]) -> Check:
    """Assigned eyes lie inside the image; NIST's left eye (subject's left) has the larger x."""
    outside, swapped, missing = [], [], []
    for o in outcomes:
        if o.decode_error is not None or o.elapsed_ms is None:
            continue
        e = o.row.eyes
        if e.is_left_assigned and not (0 <= e.xleft < o.width and 0 <= e.yleft < o.height):
            outside.append(f"{o.row.id} left ({e.xleft},{e.yleft}) in {o.width}x{o.height}")
        if e.is_right_assigned and not (0 <= e.xright < o.width and 0 <= e.yright < o.height):
            outside.append(f"{o.row.id} right ({e.xright},{e.yright}) in {o.width}x{o.height}")
        if o.row.code == ReturnCode.Success:
            if not (e.is_left_assigned and e.is_right_assigned):
                missing.append(o.row.id)
            elif e.xleft < e.xright:
                swapped.append(o.row.id)
    ev = {"outside": len(outside), "left_of_right": len(swapped), "unassigned_on_success": len(missing)}
    if outside:
        return Check(
            "eye_coordinates", FAIL, f"{len(outside)} eye points outside the image: {'; '.join(outside[:5])}", ev
        )
    notes = []
    if swapped:
        notes.append(
            f"{len(swapped)} templates have the left eye (subject's left) at a smaller x than the right eye "
            f"(fine for rotated images, a convention error otherwise): {', '.join(swapped[:5])}"
        )
    if missing:
        notes.append(f"{len(missing)} successful templates report no eye positions: {', '.join(missing[:5])}")
    if notes:
        return Check("eye_coordinates", WARN, "; ".join(notes), ev)
    return Check("eye_coordinates", PASS, "all assigned eye points inside their images", ev)


def check_single_thread(sample: ThreadSample, max_other_fraction: float = 0.15, max_utilisation: float = 1.25) -> Check:
    """One thread computes: little CPU time outside the main thread, at most ~1 core of wall time.

    Fails when threads other than the main one used more than ``max_other_fraction`` of the
    process's CPU time (and at least 0.1 s), or when the process used more than
    ``max_utilisation`` cores on average. Idle pool threads are reported but do not fail.
    """
    ev = {
        "max_threads": sample.max_threads,
        "busy_threads": sample.busy_threads,
        "cpu_s": round(sample.cpu_s, 3),
        "main_thread_cpu_s": round(sample.main_cpu_s, 3),
        "other_threads_cpu_s": round(sample.other_threads_cpu_s, 3),
        "wall_s": round(sample.wall_s, 3),
        "utilisation": round(sample.utilisation, 3),
        "per_thread_cpu_s": [round(c, 3) for c in sample.per_thread_cpu_s[:8]],
    }
    text = (
        f"{sample.other_threads_cpu_s:.2f} s of {sample.cpu_s:.2f} s CPU outside the main thread; "
        f"up to {sample.max_threads} threads, {sample.busy_threads} busy; {sample.utilisation:.2f} cores on average"
    )
    other = sample.other_threads_cpu_s
    if (other > max(0.1, max_other_fraction * sample.cpu_s)) or sample.utilisation > max_utilisation:
        return Check("single_thread", FAIL, "computes on more than one thread: " + text, ev)
    return Check("single_thread", PASS, text, ev)


def check_config_path(violations: Sequence[str], original: str) -> Check:
    """The implementation read only the read-only copy of its config directory, and wrote nothing there."""
    if violations:
        return Check(
            "config_path",
            FAIL,
            f"{len(violations)} accesses to the original config directory {original} or writes to the "
            f"read-only copy: {'; '.join(sorted(set(violations))[:5])}",
            {"violations": sorted(set(violations))[:50]},
        )
    return Check("config_path", PASS, f"ran from a read-only copy under another name; no access to {original}")


def check_latency(stats: dict, budget_ms: float) -> Check:
    """Median per-call create-template time on one thread against the budget (NIST limits the median)."""
    if not stats or not stats.get("n"):
        return Check("latency", FAIL, "no create_face_template call was timed", {"budget_ms": budget_ms})
    text = (
        f"create_face_template on one thread: median {stats['median_ms']:.1f} ms, p90 {stats['p90_ms']:.1f}, "
        f"p99 {stats['p99_ms']:.1f}, max {stats['max_ms']:.1f} (n={stats['n']}); budget {budget_ms:.0f} ms"
    )
    ev = dict(stats, budget_ms=budget_ms)
    if stats["median_ms"] > budget_ms:
        return Check("latency", FAIL, text + " -> median over budget", ev)
    if stats.get("unstable"):
        # over different images the spread is partly real (a 4000 px photo takes longer): a note, not a warning
        text += " (wide spread: " + "; ".join(stats.get("unstable_reasons", [])) + ")"
    if stats["max_ms"] > budget_ms:
        return Check("latency", WARN, f"{text} -> max over budget", ev)
    return Check("latency", PASS, text, ev)


def check_deterministic(single: Sequence[TemplateOutcome], multi: dict[str, TemplateOutcome]) -> Check:
    """Templates from the single-process run equal those from the forked workers."""
    differ = [o.row.id for o in single if o.row.id in multi and o.template != multi[o.row.id].template]
    if differ:
        return Check(
            "deterministic_templates",
            WARN,
            f"{len(differ)} of {len(single)} templates differ between the single-process "
            f"and the multi-process run, e.g. {', '.join(differ[:5])}",
            {"differ": len(differ)},
        )
    return Check(
        "deterministic_templates",
        PASS,
        f"{len(single)} templates identical in the single-process and multi-process runs",
    )


def check_version_file(text: str | None) -> Check:
    if not text or not text.strip():
        return Check(
            "version_txt",
            FAIL,
            "doc/version.txt would be empty: NIST requires a non-empty version.txt "
            "(implementation attribute `version` or --version)",
        )
    return Check("version_txt", PASS, f"doc/version.txt: {text.strip()[:60]!r}")
