"""frvt.perf.profile and ``frvt profile``: per-call latency with an injected clock (no sleeping, no
wall-clock assertions), stage accounting, operator profiles, the estimate, JSON round trip,
--compare, and one real run in a fresh process through the CLI."""

from __future__ import annotations

import json
import math
import sys
import time
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from frvt.settings import SINGLE_THREAD_ENV
from frvt.cli import app
from frvt.contract import Image, MatchResult, ReturnCode, ReturnStatus, TemplateResult
from frvt.perf.profile import (
    ProfileError,
    _match_pairs,
    compare_profiles,
    estimate_for_target,
    find_images,
    format_comparison,
    format_profile,
    load_profile,
    measure_implementation,
    plot_latency_histogram,
    profile_implementation,
    save_profile,
)
from validation.latency import latency_stats

MEDS = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "meds"


class FakeClock:
    """Seconds that move only when told to."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def advance(self, ms: float) -> None:
        self.t += ms / 1000.0


class TinyVerifier:
    """A small real implementation: the template is the unit vector of a 16x16 grey thumbnail.

    With a FakeClock, each stage advances the clock by a fixed cost (detect grows with the image
    area) and the call spends ``UNTRACKED_MS`` outside any stage; without one, stages are timed
    with ``perf_counter``. An all-black image has "no face": FaceDetectionError, only the detect
    stage, an empty (failed) template that matches with -1.
    """

    ALIGN_MS, EMBED_MS, ENCODE_MS, UNTRACKED_MS, MATCH_MS = 1.0, 20.0, 0.25, 0.5, 0.01

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock
        self.last_stage_times: dict[str, float] = {}
        self.target = {"kind": "numpy"}

    @staticmethod
    def detect_ms(image: Image) -> float:
        return image.width * image.height / 1e4

    def _stage(self, name, fn, cost_ms):
        if self.clock is None:
            t0 = time.perf_counter()
            out = fn()
            self.last_stage_times[name] = (time.perf_counter() - t0) * 1000.0
        else:
            out = fn()
            self.clock.advance(cost_ms)
            self.last_stage_times[name] = cost_ms
        return out

    def initialize(self, config_dir: str) -> ReturnStatus:
        return ReturnStatus(ReturnCode.Success)

    def create_face_template(self, images, role) -> TemplateResult:
        self.last_stage_times = {}
        image = images[0]
        if self.clock is not None:
            self.clock.advance(self.UNTRACKED_MS)
        pixels = self._stage("detect", image.to_array, self.detect_ms(image))
        if not pixels.any():
            return TemplateResult(ReturnStatus(ReturnCode.FaceDetectionError, "no face"), b"", [])
        grey = self._stage("align", lambda: pixels if pixels.ndim == 2 else pixels.mean(axis=2), self.ALIGN_MS)
        thumb = self._stage(
            "embed", lambda: cv2.resize(grey.astype(np.float32), (16, 16), interpolation=cv2.INTER_AREA), self.EMBED_MS
        )
        v = thumb.ravel() - thumb.mean()
        template = self._stage(
            "encode", lambda: (v / (np.linalg.norm(v) or 1.0)).astype(np.float32).tobytes(), self.ENCODE_MS
        )
        return TemplateResult(ReturnStatus(ReturnCode.Success), template, [])

    def match_templates(self, verif: bytes, enroll: bytes) -> MatchResult:
        if self.clock is not None:
            self.clock.advance(self.MATCH_MS)
        if not verif or not enroll:
            return MatchResult(ReturnStatus(ReturnCode.VerifTemplateError), -1.0)
        a, b = np.frombuffer(verif, np.float32), np.frombuffer(enroll, np.float32)
        return MatchResult(ReturnStatus(ReturnCode.Success), float((1.0 + a @ b) / 2.0))

    def operator_profiles(self, image):
        return {
            "thumbnail": [
                {"name": "resize", "time_us": 30.0, "percent": 30.0},
                {"name": "normalise", "time_us": 60.0, "percent": 60.0},
                {"name": "tobytes", "time_us": 10.0, "percent": 10.0},
            ]
        }


class RaisingVerifier(TinyVerifier):
    def create_face_template(self, images, role):
        raise RuntimeError("boom")


def write_images(folder: Path, sizes, black: int = 0, corrupt: bool = False) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for k, (w, h) in enumerate(sizes):
        p = folder / f"img{k:02d}.png"
        cv2.imwrite(str(p), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        paths.append(p)
    for k in range(black):
        p = folder / f"black{k}.png"
        cv2.imwrite(str(p), np.zeros((40, 30), np.uint8))
        paths.append(p)
    if corrupt:
        p = folder / "corrupt.jpg"
        p.write_bytes(b"this is not a jpeg")
        paths.append(p)
    return paths


SIZES = [(100 + 40 * k, 120 + 30 * k) for k in range(12)]


def expected_call_ms(w: int, h: int) -> float:
    t = TinyVerifier
    return t.UNTRACKED_MS + w * h / 1e4 + t.ALIGN_MS + t.EMBED_MS + t.ENCODE_MS


@pytest.fixture
def image_dir(tmp_path):
    write_images(tmp_path / "imgs", SIZES)
    return tmp_path / "imgs"


def measure(paths, clock=None, **kw):
    clock = clock or FakeClock()
    impl = TinyVerifier(clock)
    kw.setdefault("warmup", 2)
    return measure_implementation(impl, paths, clock=clock, cpu_clock=None, **kw)


def test_percentiles_are_those_of_the_per_call_times(image_dir):
    result = measure(find_images(image_dir), repeats=2)
    expected = [expected_call_ms(w, h) for w, h in SIZES] * 2
    c = result["create_face_template"]
    assert c["n"] == 24  # warm-ups excluded
    assert c["samples_ms"] == pytest.approx(expected)
    ref = latency_stats(expected)
    for key in ("median_ms", "p90_ms", "p99_ms", "max_ms"):
        assert c[key] == pytest.approx(ref[key])
    m = result["match_templates"]
    assert m["n"] == 12 * 11  # every ordered pair of distinct templates, fewer than max_matches
    assert m["median_ms"] == pytest.approx(TinyVerifier.MATCH_MS)
    assert result["decode"]["n"] == 12 and result["decode"]["max_ms"] == 0.0  # the fake clock did not move
    assert result["create_face_template"]["return_codes"] == {"Success": 24}


def test_stages_and_other_add_up_to_each_call(image_dir):
    result = measure(find_images(image_dir), repeats=1)
    st = result["stages"]
    assert st["order"] == ["detect", "align", "embed", "encode", "other"]
    calls = result["create_face_template"]["samples_ms"]
    for i, call in enumerate(calls):
        assert sum(st["stages"][s]["samples_ms"][i] for s in st["order"]) == pytest.approx(call)
    assert st["stages"]["other"]["samples_ms"] == pytest.approx([TinyVerifier.UNTRACKED_MS] * 12)
    assert st["stages"]["detect"]["samples_ms"] == pytest.approx([w * h / 1e4 for w, h in SIZES])
    assert st["stages"]["embed"]["mean_ms"] == pytest.approx(TinyVerifier.EMBED_MS)
    assert sum(s["share"] for s in st["stages"].values()) == pytest.approx(1.0)
    assert st["calls_with_negative_other"] == 0
    text = format_profile(result)
    assert "stage breakdown" in text and "embed" in text


def test_failed_calls_count_their_missing_stages_as_zero(tmp_path):
    paths = write_images(tmp_path / "imgs", SIZES[:3], black=2)
    result = measure(paths, warmup=0)
    assert result["create_face_template"]["return_codes"] == {"Success": 3, "FaceDetectionError": 2}
    st = result["stages"]["stages"]
    assert st["embed"]["samples_ms"][3:] == [0.0, 0.0]
    assert st["other"]["samples_ms"] == pytest.approx([TinyVerifier.UNTRACKED_MS] * 5)
    # failed templates are matched too, and say so
    assert result["match_templates"]["return_codes"]["VerifTemplateError"] > 0


def test_verdict_follows_the_chosen_statistic(image_dir):
    paths = find_images(image_dir)
    calls = sorted(expected_call_ms(w, h) for w, h in SIZES)
    median = float(np.median(calls))
    between = (median + calls[-1]) / 2
    assert measure(paths, budget_ms=between)["verdict"] == "PASS"
    r = measure(paths, budget_ms=between, verdict_statistic="p99")
    assert r["verdict"] == "FAIL" and r["verdict_statistic"] == "p99_ms"
    r = measure(paths, budget_ms=median - 0.01)
    assert r["verdict"] == "FAIL"
    assert r["create_face_template"]["n_over_budget"] == sum(c > median - 0.01 for c in calls)
    assert "VERDICT: FAIL" in format_profile(r)


def test_instability_is_flagged_for_a_wide_spread_only(tmp_path):
    wide = measure(write_images(tmp_path / "wide", [(50, 50), (60, 60), (2000, 1500)]))
    assert wide["create_face_template"]["unstable"]
    narrow = measure(write_images(tmp_path / "narrow", [(100, 100)] * 5))
    assert not narrow["create_face_template"]["unstable"]


def test_operator_profile_keeps_the_top_operators_with_shares(image_dir):
    result = measure(find_images(image_dir), top_operators=2)
    prof = result["operators"]["models"]["thumbnail"]
    assert [r["name"] for r in prof["top"]] == ["normalise", "resize"]
    assert [r["share"] for r in prof["top"]] == pytest.approx([0.6, 0.3])
    assert prof["n_operators"] == 3 and prof["total_us"] == pytest.approx(100.0)
    assert prof["top_share"] == pytest.approx(0.9)
    assert result["target"] == {"kind": "numpy"}


def test_undecodable_images_are_skipped_and_listed(tmp_path):
    paths = write_images(tmp_path / "imgs", SIZES[:4], corrupt=True)
    result = measure(paths)
    assert result["images"]["n_files"] == 5 and result["images"]["n_profiled"] == 4
    assert [Path(s["image"]).name for s in result["images"]["skipped"]] == ["corrupt.jpg"]
    with pytest.raises(ProfileError, match="none of the 1"):
        measure(paths[-1:])


def test_an_exception_crossing_the_contract_stops_the_profile(image_dir):
    clock = FakeClock()
    with pytest.raises(ProfileError, match="RuntimeError: boom"):
        measure_implementation(RaisingVerifier(clock), find_images(image_dir), clock=clock, cpu_clock=None)


def test_match_pairs_are_distinct_and_spread():
    pairs = _match_pairs(5, 7)
    assert len(pairs) == 7 and len(set(pairs)) == 7 and all(i != j for i, j in pairs)
    assert sorted(i for i, _ in pairs[:5]) == [0, 1, 2, 3, 4]  # every template before any twice
    assert len(_match_pairs(4, 1000)) == 12 and _match_pairs(1, 10) == []


def test_find_images_reads_nist_lists_and_folders(tmp_path):
    paths = write_images(tmp_path / "set" / "faces", SIZES[:3])
    (tmp_path / "set" / "enroll.txt").write_text(f"e1 faces/{paths[0].name} 2\ne2 faces/{paths[1].name} 2\n")
    (tmp_path / "set" / "verif.txt").write_text(f"v1 faces/{paths[1].name} 2\nv2 faces/{paths[2].name} 2\n")
    assert find_images(tmp_path / "set") == [p.resolve() for p in paths]  # each once, in list order
    assert len(find_images(tmp_path / "set" / "faces")) == 3
    (tmp_path / "set" / "verif.txt").write_text("v1\n")
    with pytest.raises(ProfileError, match="verif.txt:1"):
        find_images(tmp_path / "set")
    with pytest.raises(ProfileError, match="does not exist"):
        find_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProfileError, match="no image files"):
        find_images(tmp_path / "empty")


def test_find_images_on_meds():
    if not MEDS.is_dir():
        pytest.skip("../shared/data/meds is not here")
    assert len(find_images(MEDS)) == 114


def test_estimate_scales_by_fma_throughput_and_says_it_is_an_estimate():
    create = {"median_ms": 100.0, "p99_ms": 150.0, "cpu": {"median_ms": 80.0, "p99_ms": 120.0}}
    est = estimate_for_target(create, 79.36)
    assert est["label"].startswith("ESTIMATE") and est["basis"] == "thread CPU time"
    assert est["fma_gflops_target"] == pytest.approx({"turbo": 99.2, "base": 70.4})
    assert est["median_ms"]["turbo"] == pytest.approx(80.0 * 79.36 / 99.2)
    assert est["median_ms"]["base"] == pytest.approx(80.0 * 79.36 / 70.4)
    assert est["p99_ms"]["base"] == pytest.approx(120.0 * 79.36 / 70.4)
    assert len(est["assumptions"]) >= 3
    wall = estimate_for_target({"median_ms": 100.0, "p99_ms": 150.0}, 70.4)
    assert wall["basis"] == "wall time" and wall["median_ms"]["base"] == pytest.approx(100.0)
    assert estimate_for_target(create, None)["available"] is False


def test_in_process_profile_round_trips_through_json(image_dir, tmp_path, monkeypatch):
    clock = FakeClock()
    # an importable module:attribute whose factory hands TinyVerifier the test's clock
    module = types.ModuleType("tiny_fake_clock_impl")
    module.make = lambda: TinyVerifier(clock)
    monkeypatch.setitem(sys.modules, "tiny_fake_clock_impl", module)
    result = profile_implementation(
        "tiny_fake_clock_impl:make", images=image_dir, isolate=False, fma=False, clock=clock
    )
    path = save_profile(result, tmp_path / "p.json")
    assert load_profile(path) == result  # JSON-native all the way down
    for call in ("create_face_template", "match_templates"):
        for key in ("median_ms", "p90_ms", "p99_ms", "max_ms", "n"):
            assert key in result[call]
    assert result["schema"] == "frvt.profile/1" and result["budget_ms"] == 1000.0 and result["verdict"] == "PASS"
    assert "git_revision" in result["machine"] and "tvm" in result["machine"]["versions"]
    png = plot_latency_histogram(result, tmp_path / "hist.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_gives_per_stage_ratios(image_dir):
    a = measure(find_images(image_dir))
    b = json.loads(json.dumps(a))
    for s in b["stages"]["stages"].values():
        s["mean_ms"] *= 2
    b["create_face_template"]["median_ms"] *= 0.5
    del b["stages"]["stages"]["encode"]
    rows = {r["name"]: r for r in compare_profiles(a, b)}
    assert rows["stage embed mean"]["ratio"] == pytest.approx(2.0)
    assert rows["create_face_template median"]["ratio"] == pytest.approx(0.5)
    assert math.isnan(rows["stage encode mean"]["ratio"])
    assert "2.00" in format_comparison(list(rows.values()))


def test_text_warns_about_pinning_and_waiting_for_a_core(image_dir):
    result = measure(find_images(image_dir))
    assert "pinned" not in format_profile(result)
    result["machine"] = {"usable_cores": 2, "logical_cores": 2}
    result["process"]["cpu_affinity_after_run"] = [0]
    result["process"]["load_average"] = [4.5, 4.0, 3.0]
    result["create_face_template"]["wall_to_cpu"] = 2.0
    text = format_profile(result)
    assert "pinned the process to CPU(s) [0] of 2" in text
    assert "2.00x the thread CPU time" in text and "load average 4.5" in text


def test_load_profile_rejects_other_json(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"schema": "frvt.validate/1"}))
    with pytest.raises(ProfileError, match="not a frvt.profile"):
        load_profile(p)


def test_bad_arguments_are_errors_naming_the_value(image_dir):
    with pytest.raises(ProfileError, match="budget_ms"):
        profile_implementation(images=image_dir, budget_ms=0)
    with pytest.raises(ProfileError, match="p95"):
        profile_implementation(images=image_dir, verdict_statistic="p95")
    with pytest.raises(ProfileError, match="cannot be sent"):
        profile_implementation(images=image_dir, clock=FakeClock())


# --- the command, in process; the measurement itself in a fresh process ------------------------


@pytest.fixture
def importable_tests(monkeypatch):
    """Make this file importable as ``test_profile`` in the fresh process."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent))


def test_cli_profiles_in_a_fresh_single_thread_process_and_compares(image_dir, tmp_path, importable_tests):
    runner = CliRunner()
    out_a, out_b, png = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "h.png"
    res = runner.invoke(
        app,
        [
            "profile",
            "--implementation",
            "test_profile:TinyVerifier",
            "--images",
            str(image_dir),
            "--budget-ms",
            "60000",
            "--json",
            str(out_a),
            "--plot",
            str(png),
            "--no-fma",
            "--no-progress",
            "--warmup",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "VERDICT: PASS" in res.output and "stage breakdown" in res.output and "operators of thumbnail" in res.output
    data = load_profile(out_a)
    assert data["create_face_template"]["n"] == 12 and data["match_templates"]["n"] == 132
    assert data["process"]["thread_env"] == dict(SINGLE_THREAD_ENV)
    assert data["process"]["threads_after_run"] == 1
    assert data["stages"]["calls_with_negative_other"] == 0
    assert png.read_bytes()[:4] == b"\x89PNG"

    slower = json.loads(out_a.read_text())
    for s in slower["stages"]["stages"].values():
        s["mean_ms"] *= 3
    out_b.write_text(json.dumps(slower))
    res = runner.invoke(app, ["profile", "--compare", str(out_a), str(out_b)])
    assert res.exit_code == 0, res.output
    embed = [line for line in res.output.splitlines() if line.startswith("stage embed mean")]
    assert embed and embed[0].split()[-1] == "3.00"


def test_cli_fail_verdict_exits_1_and_bad_input_exits_2(image_dir, tmp_path, importable_tests):
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "profile",
            "-i",
            "test_profile:TinyVerifier",
            "--images",
            str(image_dir),
            "--budget-ms",
            "0.001",
            "--no-fma",
            "--no-progress",
            "--max-matches",
            "5",
        ],
    )
    assert res.exit_code == 1 and "VERDICT: FAIL" in res.output
    res = runner.invoke(
        app, ["profile", "-i", "test_profile:NoSuchThing", "--images", str(image_dir), "--no-fma", "--no-progress"]
    )
    assert res.exit_code == 2 and "NoSuchThing" in res.output
    res = runner.invoke(app, ["profile", "--images", str(tmp_path / "missing"), "--no-progress"])
    assert res.exit_code == 2 and "does not exist" in res.output
