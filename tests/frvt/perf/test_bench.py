"""frvt.perf.bench and ``frvt bench``: MAC counting, the interleaved schedule and timing with a fake clock
(no wall-clock assertions), statistics, ratios, and real runs of ONNX Runtime, untuned TVM
and OpenCV DNN on a tiny model built here, in both ISA groups, through the library and the CLI."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import helper, numpy_helper
from typer.testing import CliRunner

from frvt.perf.bench import (
    BenchError,
    _make_row,
    add_ratios,
    add_memory_floor,
    add_throughput,
    build_cpuid_cap,
    format_markdown,
    model_macs,
    output_difference,
    run_benchmark,
    schedule_rounds,
    time_interleaved,
)
from frvt.cli import app
from frvt.compiler.databases import snapshot_database
from onnx_models import save_model

ROW_KEYS = {
    "model",
    "runtime",
    "group",
    "isa",
    "isa_used",
    "isa_capped",
    "status",
    "n",
    "median_ms",
    "p90_ms",
    "min_ms",
    "max_ms",
    "cpu_median_ms",
    "ratio_to_tvm_tuned",
    "gflops",
    "achieved_gflops",
    "fraction_of_fma_peak",
    "max_abs_diff",
    "max_rel_diff",
    "samples_ms",
}


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """Conv 3->8 (3x3, pad 1) + ReLU + Flatten + Gemm 2048->10 on a 1x3x16x16 input."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(0, 0.2, (8, 3, 3, 3)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "b")
    fc_w = numpy_helper.from_array(rng.normal(0, 0.05, (10, 8 * 16 * 16)).astype(np.float32), "fc_w")
    fc_b = numpy_helper.from_array(np.zeros(10, np.float32), "fc_b")
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["conv"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("Flatten", ["relu"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["output"], transB=1),
    ]
    return save_model(
        tmp_path_factory.mktemp("bench") / "tiny.onnx",
        nodes,
        {"input": (1, 3, 16, 16)},
        {"output": (1, 10)},
        [weight, bias, fc_w, fc_b],
        name="tiny",
    )


# --- counting -------------------------------------------------------------------------------


def test_model_macs_counts_conv_and_gemm(tiny_onnx):
    macs = model_macs(tiny_onnx)
    # oracle: one MAC per (output element, input channel, kernel tap); Gemm M x N x K
    conv = sum(1 for _oc in range(8) for _y in range(16) for _x in range(16) for _ic in range(3) for _k in range(9))
    assert macs["Conv"] == conv == 55_296
    assert macs["Gemm"] == 1 * 10 * 2048
    assert macs["MatMul"] == 0
    assert macs["total"] == conv + 20_480


def test_model_macs_of_the_dlib_model_matches_the_documented_count():
    path = Path(__file__).resolve().parents[3] / "data" / "models" / "dlib_face_recognition_resnet_model_v1.onnx"
    if not path.exists():
        pytest.skip("dlib ONNX model not present")
    assert model_macs(path)["total"] / 1e9 == pytest.approx(0.271, abs=0.001)


# --- schedule and timing with a fake clock ---------------------------------------------------


def test_schedule_rounds_gives_each_runtime_its_calls_spread_and_rotated():
    rounds = schedule_rounds({"a": 10, "b": 10, "slow": 3})
    assert len(rounds) == 10
    flat = [name for members in rounds for name in members]
    assert flat.count("a") == 10 and flat.count("b") == 10 and flat.count("slow") == 3
    slow_rounds = [i for i, members in enumerate(rounds) if "slow" in members]
    assert slow_rounds == [3, 6, 9]  # spread over the run, not bunched at the start
    assert rounds[0][0] == "a" and rounds[1][0] == "b"  # order rotates round by round
    assert schedule_rounds({}) == []
    with pytest.raises(ValueError):
        schedule_rounds({"a": -1})


class FakeClock:
    """Wall and CPU clocks (seconds) that move only when a fake runtime runs."""

    def __init__(self) -> None:
        self.wall, self.cpu = 50.0, 7.0

    def spend(self, wall_ms: float, cpu_ms: float) -> None:
        self.wall += wall_ms / 1e3
        self.cpu += cpu_ms / 1e3


def test_time_interleaved_records_each_call_without_warmups_and_drops_failures():
    clock = FakeClock()
    costs = {"fast": iter([100.0, 1.0, 2.0, 3.0, 4.0]), "slow": iter([500.0, 20.0, 40.0])}
    log: list[str] = []

    def runtime(name):
        def call():
            log.append(name)
            ms = next(costs[name])
            clock.spend(ms, ms / 2)
            return [np.full(3, len(log), np.float32)]

        return call

    def broken():
        log.append("broken")
        raise RuntimeError("no kernel")

    times = time_interleaved(
        {"fast": runtime("fast"), "slow": runtime("slow"), "broken": broken},
        repeats={"fast": 4, "slow": 2, "broken": 4},
        warmup={"fast": 1, "slow": 1, "broken": 1},
        clock=lambda: clock.wall,
        cpu_clock=lambda: clock.cpu,
    )
    assert times.wall_ms["fast"] == pytest.approx([1.0, 2.0, 3.0, 4.0])
    assert times.cpu_ms["fast"] == pytest.approx([0.5, 1.0, 1.5, 2.0])
    assert times.wall_ms["slow"] == pytest.approx([20.0, 40.0])
    assert "no kernel" in times.errors["broken"] and log.count("broken") == 1
    assert times.rounds == 5
    # interleaved: the slow runtime runs between fast calls, never all at the end
    assert log.index("slow") < len(log) - 3 and times.order.count("slow") == 3
    np.testing.assert_array_equal(times.first_output["fast"][0], np.full(3, 1, np.float32))


def test_time_interleaved_rejects_bad_counts():
    with pytest.raises(ValueError):
        time_interleaved({"a": lambda: None}, repeats=0)
    with pytest.raises(ValueError):
        time_interleaved({"a": lambda: None}, repeats=1, warmup=-1)


def test_output_difference():
    ref = [np.array([[1.0, -4.0]]), np.array([2.0])]
    assert output_difference([np.array([1.5, -4.0]), np.array([[2.0]])], ref) == pytest.approx((0.5, 0.125))
    assert math.isnan(output_difference([np.zeros(2)], ref)[0])


# --- rows, ratios, throughput --------------------------------------------------------------


def _raw(runtime: str, wall: list[float], cpu_scale: float = 0.5) -> dict:
    return {
        "runtime": runtime,
        "status": "ok",
        "note": "",
        "isa_used": "avx2",
        "isa_capped": True,
        "wall_ms": wall,
        "cpu_ms": [w * cpu_scale for w in wall],
        "max_abs_diff": 1e-7,
        "max_rel_diff": 1e-6,
    }


def test_rows_ratios_and_throughput_from_known_samples():
    tvm = list(range(1, 11))  # median 5.5, p90 9.1 (linear interpolation)
    ort = [2.0 * v for v in tvm]  # twice as slow
    dlib = [4.0 * v for v in tvm]
    rows = [
        _make_row("dlib_resnet", "avx2", _raw(name, samples), None, True)
        for name, samples in (("tvm-tuned", tvm), ("onnxruntime", ort), ("dlib", dlib))
    ]
    rows.append(
        _make_row("dlib_resnet", "avx2", {"runtime": "openvino", "status": "error", "note": "boom"}, None, True)
    )
    add_ratios(rows)
    add_throughput(rows, {"dlib_resnet": 0.55}, peak_gflops=200.0)
    by = {r["runtime"]: r for r in rows}
    assert by["tvm-tuned"]["median_ms"] == pytest.approx(5.5)
    assert by["tvm-tuned"]["p90_ms"] == pytest.approx(9.1)
    assert by["tvm-tuned"]["min_ms"] == 1.0 and by["tvm-tuned"]["max_ms"] == 10.0 and by["tvm-tuned"]["n"] == 10
    assert by["tvm-tuned"]["ratio_to_tvm_tuned"] == pytest.approx(1.0)
    assert by["onnxruntime"]["ratio_to_tvm_tuned"] == pytest.approx(2.0)
    assert by["onnxruntime"]["cpu_ratio_to_tvm_tuned"] == pytest.approx(2.0)
    assert by["dlib"]["ratio_to_tvm_tuned"] == pytest.approx(4.0)
    assert math.isnan(by["openvino"]["ratio_to_tvm_tuned"]) and by["openvino"]["n"] == 0
    assert by["tvm-tuned"]["achieved_gflops"] == pytest.approx(0.55 / 5.5e-3)
    assert by["tvm-tuned"]["fraction_of_fma_peak"] == pytest.approx(100.0 / 200.0)
    assert by["tvm-tuned"]["cpu_per_wall"] == pytest.approx(0.5)
    assert by["tvm-tuned"]["isa"] == "avx2"


def test_memory_floor_uses_a_tvm_builds_packed_weights_and_the_file_weights_otherwise():
    tvm = _raw("tvm-tuned", [4.0, 4.0, 4.0], cpu_scale=1.0)
    tvm["info"] = {"weight_bytes": 30_000_000}  # Winograd kernels: more than the file's weights
    rows = [
        _make_row("dlib_resnet", "avx2", tvm, None, True),
        _make_row("dlib_resnet", "avx2", _raw("onnxruntime", [5.0, 5.0, 5.0], cpu_scale=1.0), None, True),
    ]
    add_memory_floor(rows, {"dlib_resnet": 20_000_000}, read_gbps=10.0)
    by = {r["runtime"]: r for r in rows}
    assert by["tvm-tuned"]["weight_bytes"] == 30_000_000 and by["onnxruntime"]["weight_bytes"] == 20_000_000
    assert by["tvm-tuned"]["memory_floor_ms"] == pytest.approx(3.0)  # 30 MB at 10 GB/s
    assert by["tvm-tuned"]["cpu_fraction_of_memory_floor"] == pytest.approx(3.0 / 4.0)
    assert by["onnxruntime"]["cpu_fraction_of_memory_floor"] == pytest.approx(2.0 / 5.0)
    add_memory_floor(rows, {"dlib_resnet": 20_000_000}, read_gbps=None)
    assert math.isnan(rows[0]["cpu_fraction_of_memory_floor"])


def test_ratio_is_nan_without_a_tuned_row_and_rows_in_the_full_group_are_labelled():
    rows = [
        _make_row("m", "full", _raw("onnxruntime", [1.0, 2.0]), None, True),
        _make_row("m", "full", _raw("tvm-untuned", [9.0, 9.0]), {"kind": "llvm", "mcpu": "x"}, True),
    ]
    add_ratios(rows)
    assert all(math.isnan(r["ratio_to_tvm_tuned"]) for r in rows)
    assert [r["isa"] for r in rows] == ["avx512", "native"]


def test_database_snapshot_keeps_complete_lines_only(tmp_path):
    source = tmp_path / "db"
    source.mkdir()
    (source / "database_workload.json").write_text('["w0"]\n["w1"]\n')
    (source / "database_tuning_record.json").write_text('[0, "a"]\n[1, "b"]\n[1, "c')  # a writer mid-line
    copy = tmp_path / "snap"
    (source / "manifest.json").write_text('{"conv_scheme": "NHWC"}\n')
    n_records = snapshot_database(source, copy)
    assert n_records == 2
    assert (copy / "database_tuning_record.json").read_text() == '[0, "a"]\n[1, "b"]\n'
    assert (copy / "database_workload.json").read_text() == '["w0"]\n["w1"]\n'
    assert (copy / "manifest.json").read_text() == '{"conv_scheme": "NHWC"}\n'  # the scheme and settings travel


# --- the CPUID cap ---------------------------------------------------------------------------


def test_tuned_row_builds_in_the_databases_conv_scheme(tiny_onnx, tmp_path, monkeypatch):
    """The build from the bench's snapshot uses the original's scheme and Winograd settings, or
    an NHWC database would be applied to an NCHW build (and match nothing)."""
    from frvt.perf import bench
    from frvt.compiler import compile as _bound_before_the_patch  # noqa: F401 (it imports the real lookup by name)
    from frvt.compiler import databases, targets

    database = tmp_path / "tiny-broadwell"
    settings = {"tiles": [[8, 4]], "min_channels": 2}
    databases.write_manifest(
        database, tiny_onnx, targets.parse_target("broadwell"), conv_scheme="NHWC-winograd", winograd=settings
    )
    monkeypatch.setattr(databases, "find_tuned_database", lambda path, target, **shape: database)
    spec = bench.ModelSpec("tiny", tiny_onnx)
    artefact, _, note = bench._tvm_artefact(spec, "avx2", True, tmp_path / "cache", lambda text: None, tmp_path)
    assert "NHWC-winograd" in note
    metadata = json.loads((artefact / "metadata.json").read_text())
    assert metadata["conv_scheme"] == "NHWC-winograd" and metadata["winograd"] == settings


def test_cpuid_cap_hides_avx512_and_keeps_real_crashes_fatal(tmp_path):
    lib, reason = build_cpuid_cap(tmp_path)
    if lib is None:
        pytest.skip(f"no CPUID cap here: {reason}")
    env = dict(os.environ, LD_PRELOAD=str(lib))
    probe = (
        "import ctypes, sys, cv2, numpy; lib = ctypes.CDLL(sys.argv[1]);"
        "f = numpy._core._multiarray_umath.__cpu_features__;"
        "print(lib.frvt_cpuid_cap_active(), int(f['AVX512F']), int(f['AVX2']), int(cv2.checkHardwareSupport(256)))"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(lib)], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["1", "0", "1", "0"], out.stderr
    # a genuine segmentation fault is not swallowed by the CPUID handler (nor turned into a hang)
    crash = subprocess.run(
        [sys.executable, "-c", "import ctypes; ctypes.string_at(0)"], env=env, capture_output=True, timeout=60
    )
    assert crash.returncode == -signal.SIGSEGV


# --- real runs --------------------------------------------------------------------------------


def test_run_benchmark_on_a_tiny_model_in_both_isa_groups(tiny_onnx, tmp_path):
    result = run_benchmark(
        models=[str(tiny_onnx)],
        runtimes=["tvm-untuned", "onnxruntime", "opencv"],
        groups=["avx2", "full"],
        repeats=4,
        untuned_repeats=2,
        warmup=1,
        fma=False,
        cache_dir=tmp_path / "compiled",
    )
    assert result["schema"] == "frvt.bench/1"
    assert result["models"]["tiny"]["gflops"] == pytest.approx(2 * (55_296 + 20_480) / 1e9)
    rows = {(r["model"], r["runtime"], r["group"]): r for r in result["rows"]}
    assert set(rows) == {("tiny", rt, g) for rt in ("tvm-untuned", "onnxruntime", "opencv") for g in ("avx2", "full")}
    for row in rows.values():
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert row["status"] == "ok", row["note"]
        assert row["max_abs_diff"] < 1e-4
        assert row["n"] == (2 if row["runtime"] == "tvm-untuned" else 4)
        assert math.isnan(row["ratio_to_tvm_tuned"])  # no tuned TVM requested
    assert rows[("tiny", "onnxruntime", "avx2")]["max_abs_diff"] == 0.0  # the reference itself
    assert rows[("tiny", "tvm-untuned", "avx2")]["target"]["mcpu"] == "broadwell"
    assert rows[("tiny", "tvm-untuned", "avx2")]["isa_used"] == "avx2"
    assert rows[("tiny", "opencv", "avx2")]["isa_used"] == "avx2"  # OPENCV_CPU_DISABLE took effect
    if result["machine"]["isa"]["avx512f"]:
        assert rows[("tiny", "opencv", "avx2")]["isa_capped"] is True
        # MLAS has no switch of its own: only the CPUID cap caps it
        assert rows[("tiny", "onnxruntime", "avx2")]["isa_capped"] is result["cpuid_cap"]["used"]
        assert rows[("tiny", "onnxruntime", "full")]["isa_used"] == "avx512"
        assert rows[("tiny", "opencv", "full")]["isa_used"] == "avx512"
    # every group ran in its own process with the single-thread environment (and the caps in avx2 only)
    envs = {g["group"]: g["environment"] for g in result["groups"]}
    assert envs["avx2"]["ONEDNN_MAX_CPU_ISA"] == "AVX2" and envs["full"]["ONEDNN_MAX_CPU_ISA"] is None
    assert all(env["OMP_NUM_THREADS"] == "1" for env in envs.values())
    assert all(g["rounds"] == 5 for g in result["groups"])  # 1 warm-up + 4 timed calls, interleaved
    markdown = format_markdown(result)
    assert "| tvm-untuned | avx2 | avx2 |" in markdown and "OPENCV_CPU_DISABLE" in markdown


def test_run_benchmark_at_a_batch_compiles_and_feeds_every_runtime_that_batch(tiny_onnx, tmp_path):
    result = run_benchmark(
        models=[str(tiny_onnx)],
        runtimes=["tvm-untuned", "tvm-tuned", "onnxruntime"],
        groups=["avx2"],
        repeats=2,
        untuned_repeats=1,
        warmup=0,
        fma=False,
        cache_dir=tmp_path / "compiled",
        batch=3,
    )
    info = result["models"]["tiny"]
    assert info["input_shape"] == [3, 3, 16, 16] and info["batch"] == 3 and result["settings"]["batch"] == 3
    assert info["gflops"] == pytest.approx(3 * 2 * (55_296 + 20_480) / 1e9)  # the whole batch
    rows = {r["runtime"]: r for r in result["rows"]}
    for name in ("tvm-untuned", "onnxruntime"):
        assert rows[name]["status"] == "ok", rows[name]["note"]
    assert rows["tvm-untuned"]["max_abs_diff"] < 1e-4  # all three outputs agree with ONNX Runtime's
    # a database is tuned for one input shape: none exists for this one
    assert rows["tvm-tuned"]["status"] == "skipped" and "3x3x16x16" in rows["tvm-tuned"]["note"]


def test_batched_dlib_input_is_the_chip_and_its_mirror_image():
    from frvt.perf.bench.inputs import make_inputs
    from frvt.perf.bench.models import builtin_models

    spec = builtin_models()["dlib_resnet"]
    one, _ = make_inputs(spec)
    two, described = make_inputs(spec, batch=2)
    assert two["x"].shape == (2, 3, 150, 150) and "mirror" in described
    np.testing.assert_array_equal(two["x"][0], one["x"][0])
    np.testing.assert_array_equal(two["x"][1], one["x"][0][:, :, ::-1])
    with pytest.raises(BenchError, match="batch"):
        make_inputs(spec, batch=0)


def test_run_benchmark_rejects_unknown_names(tiny_onnx):
    with pytest.raises(BenchError, match="unknown runtime"):
        run_benchmark(models=[str(tiny_onnx)], runtimes=["tensorflow"], fma=False)
    with pytest.raises(BenchError, match="unknown model"):
        run_benchmark(models=["resnet9000"], fma=False)
    with pytest.raises(BenchError, match="ISA group"):
        run_benchmark(models=[str(tiny_onnx)], groups=["avx10"], fma=False)


def test_cli_writes_json_and_markdown(tiny_onnx, tmp_path):
    out, md = tmp_path / "bench.json", tmp_path / "benchmarks.md"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "--models",
            str(tiny_onnx),
            "--runtimes",
            "onnxruntime,opencv",
            "--groups",
            "full",
            "--repeats",
            "3",
            "--warmup",
            "0",
            "--no-fma",
            "--no-progress",
            "--json",
            str(out),
            "--markdown",
            str(md),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["schema"] == "frvt.bench/1"
    assert [(r["runtime"], r["group"]) for r in data["rows"]] == [("onnxruntime", "full"), ("opencv", "full")]
    assert all({"model", "runtime", "isa", "median_ms", "p90_ms", "max_abs_diff"} <= set(r) for r in data["rows"])
    text = md.read_text()
    assert "frvt bench --models" in text and "### tiny" in text and data["created"] in text
    assert "tiny" in result.output and "onnxruntime" in result.output


def test_cli_reports_bad_input_with_exit_status_2(tiny_onnx):
    result = CliRunner().invoke(
        app, ["bench", "--models", str(tiny_onnx), "--runtimes", "nope", "--no-fma", "--no-progress"]
    )
    assert result.exit_code == 2
    assert "unknown runtime" in result.output
