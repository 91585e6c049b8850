"""frvt.checks: each validation check is a pure function of the run's outcomes. Every check is
shown passing on good outcomes and failing (or warning) on outcomes that break its rule, and the
evidence names what broke it."""

from __future__ import annotations

import math

import pytest

from frvt import checks
from frvt.checks import FAIL, PASS, WARN, ThreadSample
from frvt.contract import EyePair, ReturnCode
from frvt.driver import MatchOutcome, MultiOutcome, TemplateOutcome
from frvt.records import MatchRow, MultiPersonRow, TemplateRow

EYES = EyePair(True, True, 60, 40, 30, 40)  # NIST: the subject's left eye has the larger x


def template(tid, code=ReturnCode.Success, size=532, eyes=EYES, sha="a", n_images=1, **kw) -> TemplateOutcome:
    rows = [TemplateRow(tid, f"{tid}_{i}.jpg", size, int(code), eyes if i == 0 else EyePair()) for i in range(n_images)]
    kw.setdefault("sizes", [(100, 80)] * n_images)
    kw.setdefault("n_eyes", n_images)
    return TemplateOutcome(tid, rows, sha, 5.0, n_images=n_images, **kw)


def match(e, v, score, code=ReturnCode.Success, **kw) -> MatchOutcome:
    return MatchOutcome(MatchRow(f"{e}.template", f"{v}.template", score, int(code)), **kw)


def test_every_check_has_nists_consequence():
    assert checks.Check("no_crashes", FAIL, "").nist == checks.FATAL
    assert checks.Check("return_codes", WARN, "").nist == checks.WARNING
    assert checks.Check("latency", PASS, "").nist == checks.NOT_CHECKED
    assert checks.Check("something_of_ours", PASS, "").to_json()["nist"] == checks.NOT_CHECKED


def test_initialize_fails_with_the_code_name_and_the_info():
    assert checks.check_initialize(0, "").status == PASS
    c = checks.check_initialize(int(ReturnCode.ConfigError), "no model file")
    assert c.status == FAIL and "ConfigError" in c.detail and "no model file" in c.detail
    assert checks.check_initialize(0, "", hook_error="opened /orig/config").status == FAIL


def test_log_lines_must_equal_the_list_lines():
    assert checks.check_log_lines({"enroll.log": (3, 3), "match.log": (9, 9)}).status == PASS
    c = checks.check_log_lines({"enroll.log": (3, 3), "match.log": (8, 9)})
    assert c.status == FAIL and "match.log: 8 rows for 9 list lines" in c.detail


def test_return_codes_warn_on_failures_and_fail_outside_nists_enumeration():
    good = [template("e1"), template("e2")]
    assert checks.check_return_codes(good, [match("e1", "e2", 0.5)]).status == PASS
    c = checks.check_return_codes(good + [template("e3", ReturnCode.FaceDetectionError)], [])
    assert c.status == WARN and c.evidence["templates"] == {"Success": 2, "FaceDetectionError": 1}
    c = checks.check_return_codes(good, [match("e1", "e2", 0.5, code=99)])
    assert c.status == FAIL and "invalid(99)" in c.detail


def test_exceptions_fail_and_a_memory_loss_is_left_to_the_crash_check():
    assert checks.check_exceptions([template("e1")], []).status == PASS
    raised = template("e2", ReturnCode.UnknownError, exception="RuntimeError: boom")
    c = checks.check_exceptions([template("e1"), raised], [])
    assert c.status == FAIL and c.evidence["inputs"] == ["e2"] and "boom" in c.detail
    memory = template("e3", exception="MemoryError", failure={"cause": "memory", "detail": "over"})
    assert checks.check_exceptions([memory], []).status == PASS


def test_unique_scores_counts_distinct_values_among_successful_comparisons():
    distinct = [match("e", f"v{i}", 0.1 * i) for i in range(10)]
    assert checks.check_unique_scores(distinct).status == PASS
    constant = [match("e", f"v{i}", 0.5) for i in range(10)] + [match("e", "x", 0.7, code=ReturnCode.UnknownError)]
    c = checks.check_unique_scores(constant)
    assert c.status == FAIL and c.evidence == {"n_unique": 1, "n_scores": 10, "fraction": 0.1}
    assert checks.check_unique_scores([]).status == FAIL


def test_a_negative_or_non_finite_score_with_success_fails():
    assert checks.check_scores_valid([match("e", "v", 0.0), match("e", "w", -1.0, code=2)]).status == PASS
    c = checks.check_scores_valid([match("e", "v", -0.2), match("e", "w", math.nan)])
    assert c.status == FAIL and c.evidence["count"] == 2 and "e.template/v.template=-0.2" in c.detail


def test_comparisons_with_a_failed_template_must_give_minus_one_and_a_failure_code():
    enrol = {"e1": template("e1"), "e2": template("e2", ReturnCode.FaceDetectionError)}
    verif = {"v1": template("v1")}
    right = [match("e1", "v1", 0.8), match("e2", "v1", -1.0, ReturnCode.VerifTemplateError)]
    c = checks.check_failed_templates_matchable(enrol, verif, right)
    assert c.status == PASS and c.evidence == {"comparisons_with_failed_template": 1, "wrong": 0}
    wrong = [match("e2", "v1", 0.3)]
    c = checks.check_failed_templates_matchable(enrol, verif, wrong)
    assert c.status == FAIL and c.evidence["wrong"] == 1 and "score 0.3 code Success" in c.detail


def test_template_sizes_fail_on_an_empty_template():
    assert checks.check_template_sizes([template("e1"), template("e2", size=540)]).status == PASS
    c = checks.check_template_sizes([template("e1"), template("e2", ReturnCode.FaceDetectionError, size=0)])
    assert c.status == FAIL and "e2" in c.detail
    parse_error = template("e3", ReturnCode.ParseError, size=0, decode_error="not an image")
    assert checks.check_template_sizes([template("e1"), parse_error]).status == PASS


def test_eye_coordinates_outside_the_image_fail_and_swapped_eyes_warn():
    assert checks.check_eye_coordinates([template("e1")]).status == PASS
    outside = template("e2", eyes=EyePair(True, True, 100, 40, 30, 40))  # x == width
    c = checks.check_eye_coordinates([outside])
    assert c.status == FAIL and "e2 left (100,40) in 100x80" in c.detail
    swapped = template("e3", eyes=EyePair(True, True, 30, 40, 60, 40))
    c = checks.check_eye_coordinates([swapped])
    assert c.status == WARN and c.evidence["left_of_right"] == 1


def test_single_thread_fails_on_work_outside_the_main_thread_or_between_calls():
    one = ThreadSample(wall_s=10.0, cpu_s=9.5, main_cpu_s=9.45, max_threads=1, busy_threads=1)
    assert checks.check_single_thread(one).status == PASS
    pool = ThreadSample(wall_s=10.0, cpu_s=18.0, main_cpu_s=9.0, max_threads=4, busy_threads=2)
    c = checks.check_single_thread(pool)
    assert c.status == FAIL and c.evidence["other_threads_cpu_s"] == 9.0
    idle_pool = ThreadSample(wall_s=10.0, cpu_s=9.5, main_cpu_s=9.45, max_threads=3, busy_threads=1)
    c = checks.check_single_thread(idle_pool)
    assert c.status == WARN and c.evidence["nist_thread_count"] == 4
    spinning = ThreadSample(wall_s=10.0, cpu_s=9.5, main_cpu_s=9.45, max_threads=1, idle_s=2.0, idle_cpu_s=1.5)
    assert checks.check_single_thread(spinning).status == FAIL


def test_latency_limits_the_median_and_warns_on_the_max():
    stats = {"n": 20, "median_ms": 400.0, "p90_ms": 500.0, "p99_ms": 900.0, "max_ms": 950.0}
    assert checks.check_latency(stats, 1000).status == PASS
    assert checks.check_latency(dict(stats, max_ms=1200.0), 1000).status == WARN
    c = checks.check_latency(dict(stats, median_ms=1100.0, max_ms=1200.0), 1000)
    assert c.status == FAIL and "median over budget" in c.detail
    assert checks.check_latency({}, 1000).status == FAIL


def test_templates_that_differ_between_the_two_runs_warn():
    single = [template("e1", sha="a"), template("e2", sha="b")]
    assert checks.check_deterministic(single, {"e1": template("e1", sha="a")}).status == PASS
    c = checks.check_deterministic(single, {"e2": template("e2", sha="c")})
    assert c.status == WARN and "e2" in c.detail


def test_lost_calls_are_listed_by_cause():
    crash = template("e1", failure={"cause": "crash", "detail": "killed by SIGSEGV"})
    late = match("e2", "v2", -1.0, code=ReturnCode.UnknownError, failure={"cause": "timeout", "detail": "5 s"})
    phases = {"enroll": [crash, template("e3")], "match": [late]}
    c = checks.check_crashes(phases)
    assert c.status == FAIL and c.evidence["inputs"] == ["enroll e1: killed by SIGSEGV"]
    assert checks.check_crashes({"enroll": [template("e3")]}, ["exit 1"]).status == FAIL
    t = checks.check_timeouts(phases, 5.0)
    assert t.status == FAIL and t.evidence["inputs"] == ["match e2.template/v2.template"]
    assert checks.check_timeouts({"enroll": [template("e3")]}, 5.0).status == PASS


def test_not_implemented_fails_in_any_phase():
    assert checks.check_not_implemented({"enroll": [template("e1")]}).status == PASS
    multi = MultiOutcome("m1", "m1.jpg", int(ReturnCode.NotImplemented), [], [], None)
    c = checks.check_not_implemented({"multi": [multi]})
    assert c.status == FAIL and c.evidence["inputs"] == {"multi": ["m1"]}


def multi(mid, n_templates, n_eyes) -> MultiOutcome:
    rows = [MultiPersonRow(mid, f"{mid}.jpg", 532, 0, n_templates, i, EYES) for i in range(n_templates)]
    return MultiOutcome(mid, f"{mid}.jpg", 0, rows, ["a"] * n_templates, 5.0, n_templates=n_templates, n_eyes=n_eyes)


def test_multiperson_needs_a_template_and_one_eye_pair_per_template():
    assert checks.check_multiperson([multi("m1", 2, 2)]).status == PASS
    assert checks.check_multiperson([]).status == PASS
    c = checks.check_multiperson([multi("m1", 2, 1), multi("m2", 0, 0)])
    assert c.status == FAIL and c.evidence["bad"] == ["m1: 2 templates, 1 EyePairs", "m2: no template"]


def test_multi_image_lines_need_one_eye_pair_per_image():
    assert checks.check_multi_image_eyes([template("e1", n_images=3)]).status == PASS
    c = checks.check_multi_image_eyes([template("e1", n_images=3, n_eyes=1)])
    assert c.status == FAIL and "e1: 1 EyePairs for 3 images" in c.detail


@pytest.mark.parametrize("text, status", [("frvt 1.0\n", PASS), ("  \n", FAIL), (None, FAIL)])
def test_version_file_must_not_be_empty(text, status):
    assert checks.check_version_file(text).status == status
