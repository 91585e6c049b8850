"""The checks of ``frvt validate``: NIST's validation checks and the ones it should run.

Each check is a pure function of the run's outcomes returning a :class:`Check` with status PASS,
WARN or FAIL, the evidence in ``detail``, and ``nist``: what NIST's own validation run does when
the same rule is broken (``fatal``: its run stops and no package is made; ``warning``: it prints
a warning and goes on; ``not checked``: it does not look, and the rule is ours).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from frvt.contract import ReturnCode
from frvt.records import template_id
from frvt.driver import MatchOutcome, MultiOutcome, TemplateOutcome

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
FATAL, WARNING, NOT_CHECKED = "fatal", "warning", "not checked"

#: What NIST's validation run does when each check's rule is broken.
NIST_CONSEQUENCE = {
    "initialize": FATAL,  # validate11 exits when initialize() does not return Success
    "config_path": FATAL,  # "Detection of hard-coded config directory"
    "no_crashes": FATAL,  # a child killed by a signal fails the phase
    "no_timeouts": NOT_CHECKED,  # NIST's run waits for ever
    "no_exceptions": FATAL,  # an uncaught C++ exception aborts the child
    "not_implemented": FATAL,  # createFaceTemplate returning NotImplemented raises SIGTERM
    "multiperson_templates": FATAL,  # no template, or #EyePairs != #templates, raises SIGTERM
    "multi_image_eyes": NOT_CHECKED,  # fewer EyePairs than images: NIST's driver reads past the vector
    "log_lines": FATAL,
    "return_codes": WARNING,
    "unique_scores": WARNING,
    "scores_non_negative": FATAL,
    "failed_templates_matchable": NOT_CHECKED,
    "template_sizes": NOT_CHECKED,
    "eye_coordinates": NOT_CHECKED,
    "single_thread": WARNING,  # more than 2 threads of the driver's processes
    "latency": NOT_CHECKED,  # timed in the evaluation, not by the validation package
    "deterministic_templates": NOT_CHECKED,
    "version_txt": FATAL,  # ./doc/version.txt must exist and be non-empty
}


@dataclass
class Check:
    name: str
    status: str
    detail: str
    evidence: dict = field(default_factory=dict)

    @property
    def nist(self) -> str:
        return NIST_CONSEQUENCE.get(self.name, NOT_CHECKED)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "status": self.status,
            "nist": self.nist,
            "detail": self.detail,
            "evidence": self.evidence,
        }


@dataclass
class ThreadSample:
    """CPU use of a worker during the single-process phase, per thread and in all.

    ``max_threads`` counts every thread of the worker, idle ones too, at the busiest sample, except
    the ones the harness's own imports started before the implementation was loaded: what NIST's
    check counts (it adds its waiting parent process: NIST warns above 2 in all).
    """

    wall_s: float = 0.0
    cpu_s: float = 0.0  # the whole process during the phase
    main_cpu_s: float = 0.0  # the main thread alone
    max_threads: int = 0
    busy_threads: int = 0  # threads that used >= 10% of the CPU time and >= 50 ms
    per_thread_cpu_s: list[float] = field(default_factory=list)
    idle_s: float = 0.0  # a pause after the phase, with no call running
    idle_cpu_s: float = 0.0  # CPU the worker used during that pause

    @property
    def utilisation(self) -> float:
        """CPU seconds per wall second: 1.0 means one core busy all the time."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def other_threads_cpu_s(self) -> float:
        return max(0.0, self.cpu_s - self.main_cpu_s)

    @property
    def nist_thread_count(self) -> int:
        """NIST's count: the driver's waiting parent plus every thread of the child."""
        return self.max_threads + 1 if self.max_threads else 0


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


def _code(o) -> int:
    return o.code if isinstance(o, MultiOutcome) else o.row.code


def _label(o) -> str:
    if isinstance(o, MatchOutcome):
        return f"{o.row.enroll_id}/{o.row.verif_id}"
    return o.id


def check_return_codes(templates: Sequence, matches: Sequence[MatchOutcome]) -> Check:
    """Tally codes; any code outside NIST's enumeration fails, any non-success warns."""
    tally = {
        "templates": dict(Counter(_code_name(_code(o)) for o in templates)),
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


def check_exceptions(templates: Sequence, matches: Sequence[MatchOutcome]) -> Check:
    raised = [
        (_label(o), o.exception)
        for o in list(templates) + list(matches)
        if o.exception and not (o.failure and o.failure.get("cause") == "memory")
    ]
    if raised:
        first = "; ".join(f"{k}: {e}" for k, e in raised[:3])
        return Check(
            "no_exceptions",
            FAIL,
            f"{len(raised)} calls raised instead of returning a status: {first}",
            {"count": len(raised), "inputs": [k for k, _ in raised][:50]},
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
        e, v = templates.get(template_id(m.row.enroll_id)), verif.get(template_id(m.row.verif_id))
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
    produced = [o for o in outcomes if o.decode_error is None and o.failure is None and not o.exception]
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
        if o.decode_error is not None or o.elapsed_ms is None or not o.sizes:
            continue
        for row, (width, height) in zip(o.rows, o.sizes if len(o.sizes) == len(o.rows) else o.sizes * len(o.rows)):
            e = row.eyes
            if e.is_left_assigned and not (0 <= e.xleft < width and 0 <= e.yleft < height):
                outside.append(f"{o.id} left ({e.xleft},{e.yleft}) in {width}x{height}")
            if e.is_right_assigned and not (0 <= e.xright < width and 0 <= e.yright < height):
                outside.append(f"{o.id} right ({e.xright},{e.yright}) in {width}x{height}")
            if row.code == ReturnCode.Success:
                if not (e.is_left_assigned and e.is_right_assigned):
                    missing.append(o.id)
                elif e.xleft < e.xright:
                    swapped.append(o.id)
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


def check_single_thread(
    sample: ThreadSample,
    max_other_fraction: float = 0.15,
    max_utilisation: float = 1.25,
    max_idle_fraction: float = 0.2,
) -> Check:
    """One thread computes: little CPU time outside the main thread, at most ~1 core of wall time.

    Fails when threads other than the main one used more than ``max_other_fraction`` of the
    process's CPU time (and at least 0.1 s), or when the process used more than
    ``max_utilisation`` cores on average, or when the worker uses more than ``max_idle_fraction`` of a
    core in a pause after the phase with no call running. Idle pool threads are reported but do not fail.
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
    ev["nist_thread_count"] = sample.nist_thread_count
    nist_view = (
        f"NIST's count would be {sample.nist_thread_count} threads (its parent + all of the worker's, idle ones "
        f"too; it warns above 2)"
    )
    text = (
        f"{sample.other_threads_cpu_s:.2f} s of {sample.cpu_s:.2f} s CPU outside the main thread; "
        f"up to {sample.max_threads} threads, {sample.busy_threads} busy; {sample.utilisation:.2f} cores on average; {nist_view}"
    )
    ev["idle_s"], ev["idle_cpu_s"] = round(sample.idle_s, 3), round(sample.idle_cpu_s, 3)
    other = sample.other_threads_cpu_s
    if (other > max(0.1, max_other_fraction * sample.cpu_s)) or sample.utilisation > max_utilisation:
        return Check("single_thread", FAIL, "computes on more than one thread: " + text, ev)
    if sample.idle_s > 0 and sample.idle_cpu_s > max_idle_fraction * sample.idle_s:
        return Check(
            "single_thread",
            FAIL,
            f"computes while no call runs: {sample.idle_cpu_s:.2f} s of CPU in {sample.idle_s:.1f} s between calls "
            "(a thread of its own keeps working); " + text,
            ev,
        )
    if sample.nist_thread_count > 2:
        return Check("single_thread", WARN, "computes on one thread, but idle threads exist: " + text, ev)
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
    """Templates from the single-process run equal those from the multi-process run."""
    differ = [
        o.id
        for o in single
        if o.id in multi
        and o.failure is None
        and multi[o.id].failure is None
        and o.template_sha256 != multi[o.id].template_sha256
    ]
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


def _lost(outcomes: Sequence, cause: set[str]) -> list:
    return [o for o in outcomes if o.failure and o.failure.get("cause") in cause]


def check_crashes(phases: dict[str, Sequence], initialize_failures: Sequence[str] = ()) -> Check:
    """No call lost its worker (a signal, an exit, a memory overrun): lists the inputs."""
    lost = {name: _lost(outs, {"crash", "memory"}) for name, outs in phases.items()}
    lost = {k: v for k, v in lost.items() if v}
    items = [f"{name} {_label(o)}: {o.failure['detail']}" for name, outs in lost.items() for o in outs]
    items += [f"initialize: {t}" for t in initialize_failures]
    ev = {"inputs": items[:100], "count": len(items)}
    if items:
        return Check("no_crashes", FAIL, f"{len(items)} calls lost their worker process: {'; '.join(items[:5])}", ev)
    return Check("no_crashes", PASS, "no worker process died or ran out of memory", ev)


def check_timeouts(phases: dict[str, Sequence], call_timeout_s: float) -> Check:
    lost = [f"{name} {_label(o)}" for name, outs in phases.items() for o in _lost(outs, {"timeout"})]
    ev = {"inputs": lost[:100], "count": len(lost), "call_timeout_s": call_timeout_s}
    if lost:
        return Check(
            "no_timeouts",
            FAIL,
            f"{len(lost)} calls did not return within {call_timeout_s:g} s (killed): {', '.join(lost[:10])}",
            ev,
        )
    return Check("no_timeouts", PASS, f"every call returned within {call_timeout_s:g} s", ev)


def check_not_implemented(phases: dict[str, Sequence]) -> Check:
    """Both createFaceTemplate forms are implemented (NIST stops at the first NotImplemented)."""
    hits = {name: [_label(o) for o in outs if _code(o) == ReturnCode.NotImplemented] for name, outs in phases.items()}
    hits = {k: v for k, v in hits.items() if v}
    if hits:
        text = "; ".join(f"{k}: {len(v)} calls, e.g. {', '.join(v[:3])}" for k, v in hits.items())
        return Check("not_implemented", FAIL, f"returned NotImplemented: {text}", {"inputs": hits})
    return Check("not_implemented", PASS, "no call returned NotImplemented")


def check_multiperson(outcomes: Sequence[MultiOutcome]) -> Check:
    """The multi-person call returns at least one template and one EyePair per template."""
    bad = []
    for o in outcomes:
        if o.decode_error is not None or o.failure is not None or o.exception:
            continue
        if o.n_templates == 0:
            bad.append(f"{o.id}: no template")
        elif o.n_eyes != o.n_templates:
            bad.append(f"{o.id}: {o.n_templates} templates, {o.n_eyes} EyePairs")
    ev = {"n": len(outcomes), "bad": bad[:50], "detections": {o.id: o.n_templates for o in outcomes}}
    if bad:
        return Check(
            "multiperson_templates",
            FAIL,
            f"{len(bad)} multi-person calls broke the rule (>= 1 template, one "
            f"EyePair per template): {'; '.join(bad[:5])}",
            ev,
        )
    if not outcomes:
        return Check("multiperson_templates", PASS, "no multi-person list: nothing to check", ev)
    total = sum(o.n_templates for o in outcomes)
    return Check("multiperson_templates", PASS, f"{len(outcomes)} images, {total} templates, one EyePair each", ev)


def check_multi_image_eyes(outcomes: Sequence[TemplateOutcome]) -> Check:
    """One EyePair per image for every multi-image (one subject, several images) template."""
    bad = [
        f"{o.id}: {o.n_eyes} EyePairs for {o.n_images} images"
        for o in outcomes
        if o.decode_error is None and o.failure is None and not o.exception and o.n_eyes != o.n_images
    ]
    multi = [o for o in outcomes if o.n_images > 1]
    ev = {"lines": len(outcomes), "multi_image_lines": len(multi), "bad": bad[:50]}
    if bad:
        return Check(
            "multi_image_eyes", FAIL, f"{len(bad)} templates without one EyePair per image: {'; '.join(bad[:5])}", ev
        )
    return Check(
        "multi_image_eyes",
        PASS,
        f"one EyePair per image on all {len(outcomes)} lines ({len(multi)} with several images)",
        ev,
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
