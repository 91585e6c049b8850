"""Tests for frvt.compiler.compile and implementation.tvm_runtime on a tiny ONNX model."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from frvt.compiler import compile as tvm_compile
from implementation.model_config import ModelConfig
from implementation.tvm_runtime import CompiledModel
from onnx_models import run_onnxruntime, save_model

REPO = Path(__file__).resolve().parents[3]
INPUT_SHAPE = (1, 3, 16, 16)


def _tiny_onnx(path: Path, seed: int = 0) -> Path:
    """conv 3x3 (3->8, bias) -> relu -> flatten -> gemm (8*16*16 -> 10)."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "conv_b"),
        numpy_helper.from_array(rng.normal(0, 0.05, (10, 8 * 16 * 16)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, 10).astype(np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "conv_w", "conv_b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["embedding"], transB=1),
    ]
    return save_model(path, nodes, {"input": INPUT_SHAPE}, {"embedding": (1, 10)}, inits, name="tiny")


TINY_CONFIG = ModelConfig(name="tiny", input_shape=INPUT_SHAPE, mean=(1.0, 2.0, 3.0), scale=0.5, embedding_size=10)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return _tiny_onnx(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture(scope="module")
def compiled(tiny_model, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("compiled") / "tiny-broadwell"
    metadata = tvm_compile.compile_model(
        tiny_model, target="broadwell", output_dir=out, model_config=TINY_CONFIG, progress=False
    )
    return out, metadata


# ----------------------------------------------------------------------------------- targets


def test_parse_target_names_and_json():
    assert tvm_compile.parse_target("broadwell") == {"kind": "llvm", "mcpu": "broadwell", "num-cores": 1}
    assert tvm_compile.parse_target('{"kind": "llvm", "mcpu": "skylake", "num-cores": 4}') == {
        "kind": "llvm",
        "mcpu": "skylake",
        "num-cores": 4,
    }
    native = tvm_compile.parse_target("native")
    assert native["kind"] == "llvm" and native["mcpu"] and native["mcpu"] != "generic"
    assert tvm_compile.target_name(native) == native["mcpu"]


@pytest.mark.parametrize("bad", ["pentium", "{not json", '["llvm"]', '{"mcpu": "x"}'])
def test_parse_target_rejects_with_the_value(bad):
    with pytest.raises(ValueError, match="target"):
        tvm_compile.parse_target(bad)


def test_cache_key_depends_on_target_model_database_and_config(tiny_model, tmp_path):
    broadwell = tvm_compile.cache_key(tiny_model, "broadwell")
    assert broadwell == tvm_compile.cache_key(tiny_model, {"kind": "llvm", "mcpu": "broadwell", "num-cores": 1})
    assert broadwell != tvm_compile.cache_key(tiny_model, '{"kind": "llvm", "mcpu": "skylake"}')
    other = _tiny_onnx(tmp_path / "other.onnx", seed=1)
    assert broadwell != tvm_compile.cache_key(other, "broadwell")
    assert broadwell != tvm_compile.cache_key(tiny_model, "broadwell", model_config=TINY_CONFIG)
    database = tmp_path / "db"
    database.mkdir()
    (database / tvm_compile.RECORD_FILE).write_text("[0, [[], [0.001], {}, []]]\n")
    assert broadwell != tvm_compile.cache_key(tiny_model, "broadwell", database)
    assert broadwell == tvm_compile.cache_key(tiny_model, "broadwell", conv_scheme="NCHW")
    assert broadwell != tvm_compile.cache_key(tiny_model, "broadwell", conv_scheme="NHWC")


# ------------------------------------------------------------------------------- compile + run


def test_compiled_matches_onnxruntime(compiled, tiny_model):
    out, _ = compiled
    model = CompiledModel.load(out)
    assert model.input_name == "input" and model.input_shape == INPUT_SHAPE
    rng = np.random.default_rng(3)
    for _ in range(3):
        x = rng.normal(0, 1, INPUT_SHAPE).astype(np.float32)
        ours = model(x)
        reference = run_onnxruntime(tiny_model, {"input": x})
        assert len(ours) == len(reference) == 1
        assert ours[0].shape == (1, 10)
        np.testing.assert_allclose(ours[0], reference[0], rtol=0, atol=1e-4)


def test_nhwc_convolutions_match_onnxruntime_and_are_recorded(tiny_model, tmp_path):
    """The NHWC build computes the convolution in another layout; the model's input and
    outputs are unchanged."""
    metadata = tvm_compile.compile_model(
        tiny_model, target="broadwell", output_dir=tmp_path / "nhwc", progress=False, conv_scheme="NHWC"
    )
    assert metadata["conv_scheme"] == "NHWC"
    x = np.random.default_rng(4).normal(0, 1, INPUT_SHAPE).astype(np.float32)
    ours = CompiledModel.load(tmp_path / "nhwc")(x)
    np.testing.assert_allclose(ours[0], run_onnxruntime(tiny_model, {"input": x})[0], rtol=0, atol=1e-4)


def test_conv_scheme_defaults_to_the_databases(tiny_model, tmp_path):
    target = tvm_compile.parse_target("broadwell")
    assert tvm_compile.database_conv_scheme(None) == "NCHW"
    old = tmp_path / "old"  # a manifest from before the option: NCHW
    tvm_compile.write_manifest(old, tiny_model, target)
    assert tvm_compile.database_conv_scheme(old) == "NCHW"
    new = tmp_path / "new"
    tvm_compile.write_manifest(new, tiny_model, target, conv_scheme="NHWC")
    assert tvm_compile.database_conv_scheme(new) == "NHWC"
    assert tvm_compile.cache_key(tiny_model, target, new) == tvm_compile.cache_key(
        tiny_model, target, new, conv_scheme="NHWC"
    )
    (new / tvm_compile.MANIFEST_NAME).write_text(json.dumps({"conv_scheme": "NCWH"}))
    with pytest.raises(tvm_compile.CompileError, match="NCWH"):
        tvm_compile.database_conv_scheme(new)


def test_tuning_another_scheme_into_a_database_is_refused(tiny_model, tmp_path):
    """One database, one scheme: its manifest would otherwise name only the last one tuned."""
    database = tmp_path / "db"
    tvm_compile.write_manifest(database, tiny_model, tvm_compile.parse_target("broadwell"), conv_scheme="NHWC")
    (database / tvm_compile.RECORD_FILE).write_text(_record(0, 0.001) + "\n")
    with pytest.raises(ValueError, match="NHWC records"):
        tvm_compile.compile_model(
            tiny_model,
            output_dir=tmp_path / "x",
            progress=False,
            database=database,
            tune=True,
            conv_scheme="NHWC-winograd",
        )


def test_unknown_conv_scheme_is_an_error_naming_it(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="HWCN"):
        tvm_compile.compile_model(tiny_model, output_dir=tmp_path / "x", progress=False, conv_scheme="HWCN")
    assert not (tmp_path / "x").exists()


def test_wrong_input_shape_is_an_error_naming_it(compiled):
    model = CompiledModel.load(compiled[0] / "model.so")
    with pytest.raises(ValueError, match=r"\(1, 3, 8, 8\)"):
        model(np.zeros((1, 3, 8, 8), np.float32))


def test_metadata_and_output_directory(compiled, tiny_model):
    import tvm

    out, metadata = compiled
    assert sorted(p.name for p in out.iterdir()) == ["metadata.json", "model.so", "model_config.json"]
    on_disk = json.loads((out / "metadata.json").read_text())
    assert on_disk == metadata
    assert metadata["model_sha256"] == tvm_compile.file_sha256(tiny_model)
    assert metadata["input_name"] == "input" and metadata["input_shape"] == list(INPUT_SHAPE)
    assert metadata["output_shapes"] == [[1, 10]]
    assert metadata["target"] == {"kind": "llvm", "mcpu": "broadwell", "num-cores": 1}
    assert metadata["tvm_version"] == tvm.__version__
    assert metadata["tuned"] is False and metadata["database"] is None and metadata["database_records"] == 0
    assert metadata["conv_scheme"] == "NCHW" and metadata["winograd"] is None
    # the weights one call reads: the conv's 8x3x3x3 + 8 and the FC's 10x2048 + 10 float32
    assert metadata["weight_bytes"] == 4 * (8 * 3 * 3 * 3 + 8 + 10 * 8 * 16 * 16 + 10)
    assert metadata["preprocessing"]["mean"] == [1.0, 2.0, 3.0]
    assert ModelConfig.load(out / "model_config.json") == TINY_CONFIG
    assert CompiledModel.load(out).metadata == metadata


def test_profile_reports_operators(compiled):
    model = CompiledModel.load(compiled[0])
    rows = model.profile(np.ones(INPUT_SHAPE, np.float32), repeat=3)
    assert rows and all(row.time_us >= 0 for row in rows)
    assert sum(row.percent for row in rows) == pytest.approx(100.0)
    assert [r.time_us for r in rows] == sorted((r.time_us for r in rows), reverse=True)
    assert any("conv2d" in row.name for row in rows)


def test_inference_runs_on_one_thread(compiled):
    """In a fresh process: no thread appears when the model runs, and CPU time ~ wall time."""
    script = textwrap.dedent(f"""
        import json, time, numpy as np, psutil
        from implementation.tvm_runtime import CompiledModel
        model = CompiledModel.load({str(compiled[0])!r})
        x = np.ones({INPUT_SHAPE!r}, np.float32)
        proc = psutil.Process()
        before = proc.num_threads()
        model(x)
        cpu0, wall0 = sum(proc.cpu_times()[:2]), time.perf_counter()
        while time.perf_counter() - wall0 < 0.5:
            model(x)
        cpu = sum(proc.cpu_times()[:2]) - cpu0
        wall = time.perf_counter() - wall0
        print(json.dumps({{"before": before, "after": proc.num_threads(), "cpu_per_wall": cpu / wall}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["after"] == report["before"]
    assert report["cpu_per_wall"] < 1.3


def test_loading_does_not_import_the_tvm_compiler(compiled):
    """The template path needs only the C++ runtime through tvm_ffi, not the tvm package."""
    script = textwrap.dedent(f"""
        import sys, numpy as np
        from implementation.tvm_runtime import CompiledModel
        model = CompiledModel.load({str(compiled[0])!r})
        model(np.zeros({INPUT_SHAPE!r}, np.float32))
        print(sorted(name for name in sys.modules if name == "tvm" or name.startswith("tvm.")))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_ensure_compiled_builds_once_per_key(tiny_model, tmp_path):
    first = tvm_compile.ensure_compiled(tiny_model, "broadwell", tmp_path)
    stamp = (first / "model.so").stat().st_mtime_ns
    again = tvm_compile.ensure_compiled(tiny_model, "broadwell", tmp_path)
    assert again == first and (again / "model.so").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no staging left behind


def test_missing_library_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        CompiledModel.load(tmp_path)


# -------------------------------------------------------------------------- tuning databases


def _record(workload: int, seconds: float) -> str:
    return json.dumps([workload, [[], [seconds], {"kind": "llvm"}, []]])


def test_prune_keeps_the_fastest_per_workload_and_drops_failures(tmp_path):
    lines = [_record(0, s) for s in (0.5, 0.1, 0.3, 0.2)] + [_record(1, 1e10), _record(1, 0.7), _record(1, 0.9)]
    (tmp_path / tvm_compile.RECORD_FILE).write_text("\n".join(lines) + "\n")
    assert tvm_compile.prune_database(tmp_path, keep_per_workload=2) == (7, 4)
    kept = [json.loads(line) for line in (tmp_path / tvm_compile.RECORD_FILE).read_text().splitlines()]
    assert [(w, r[1][0]) for w, r in kept] == [(0, 0.1), (0, 0.2), (1, 0.7), (1, 0.9)]
    assert tvm_compile.count_records(tmp_path) == 4


def test_merge_database_shares_workloads_and_renumbers_records(tmp_path):
    source, destination = tmp_path / "src", tmp_path / "dst"
    for directory, workloads, records in (
        (source, ['["a"]', '["b"]'], [_record(0, 0.1), _record(1, 0.2)]),
        (destination, ['["b"]'], [_record(0, 0.3)]),
    ):
        directory.mkdir()
        (directory / tvm_compile.WORKLOAD_FILE).write_text("".join(w + "\n" for w in workloads))
        (directory / tvm_compile.RECORD_FILE).write_text(
            "".join(r + "\n" for r in records) + "[0, [[], [0.9"
        )  # partial line
    assert tvm_compile.merge_database(source, destination) == 2
    assert (destination / tvm_compile.WORKLOAD_FILE).read_text().splitlines() == ['["b"]', '["a"]']
    merged = [json.loads(line) for line in (destination / tvm_compile.RECORD_FILE).read_text().splitlines()]
    assert [(w, r[1][0]) for w, r in merged] == [(0, 0.3), (1, 0.1), (0, 0.2)]


def test_drop_records_deletes_only_the_given_workloads(tmp_path):
    (tmp_path / tvm_compile.WORKLOAD_FILE).write_text('["111", "m0"]\n["222", "m1"]\n["333", "m2"]\n')
    lines = [_record(0, 0.1), _record(1, 0.2), _record(2, 0.3), _record(1, 0.4)]
    (tmp_path / tvm_compile.RECORD_FILE).write_text("".join(line + "\n" for line in lines))
    assert tvm_compile.drop_records(tmp_path, {"222"}) == 2
    kept = [json.loads(line) for line in (tmp_path / tvm_compile.RECORD_FILE).read_text().splitlines()]
    assert [(w, r[1][0]) for w, r in kept] == [(0, 0.1), (2, 0.3)]
    assert len((tmp_path / tvm_compile.WORKLOAD_FILE).read_text().splitlines()) == 3  # indices stay valid


def test_tune_script_measures_cold_records_them_and_refuses_to_mix(tiny_model, tmp_path):
    """A real (two-candidate) MetaSchedule run with the caches flushed before each timed call."""
    database = tmp_path / "db"
    tune = [
        sys.executable,
        str(REPO / "scripts" / "tune.py"),
        str(tiny_model),
        "--database",
        str(database),
        "--op",
        "conv2d",
        "--scheduler",
        "round-robin",
        "--trials-per-iter",
        "2",
        "--trials",
        "2",
        "--builder-workers",
        "1",
        "--search-threads",
        "1",
        "--population",
        "8",
        "--genetic-iters",
        "1",
    ]
    run = subprocess.run([*tune, "--cache-flush"], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert tvm_compile.count_records(database) >= 1
    cold = tvm_compile.database_cold_tasks(database)
    assert len(cold) == 1 and "conv2d" in next(iter(cold))
    # measured cold: each record holds COLD_EVALUATOR["repeat"] single-call times
    record = json.loads((database / tvm_compile.RECORD_FILE).read_text().splitlines()[0])
    assert len(record[1][1]) == tvm_compile.COLD_EVALUATOR["repeat"]
    listing = subprocess.run([*tune, "--tasks"], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert listing.returncode == 0 and " cold" in listing.stdout
    # the same task measured warm now would mix the two kinds of time: refused, naming the task
    warm = subprocess.run([*tune, "--trials", "4"], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert warm.returncode == 2
    assert "measured cold" in warm.stdout + warm.stderr and next(iter(cold)) in warm.stdout + warm.stderr
    assert tvm_compile.count_records(database) >= 1
    # the cold records measured again, warm, into another database: rebuilt from their traces
    target = tvm_compile.parse_target("broadwell")
    tasks = tvm_compile.select_tasks(
        tvm_compile.extract_tasks(tvm_compile.prepare_module(tvm_compile.import_onnx(tiny_model), target), target),
        ["conv2d"],
    )
    again = tmp_path / "again"
    remeasured = tvm_compile.remeasure_records(tasks, target, database, again, top_k=1, cache_flush=False)
    assert remeasured.added == 1 == tvm_compile.count_records(again), remeasured.errors
    record = json.loads((again / tvm_compile.RECORD_FILE).read_text().splitlines()[0])
    assert len(record[1][1]) == 1 and 0 < record[1][1][0] < 1  # one warm mean, in seconds
    # a candidate that cannot be measured (here: no build finishes in a millisecond) is reported, named
    failed = tvm_compile.remeasure_records(
        tasks, target, database, tmp_path / "none", top_k=1, cache_flush=False, builder_timeout_sec=1e-3
    )
    assert failed.added == 0 and tvm_compile.count_records(tmp_path / "none") == 0
    assert len(failed.errors) == 1 and tasks[0].task_name in failed.errors[0] and "build:" in failed.errors[0]


def test_find_tuned_database_matches_hash_and_target(tiny_model, tmp_path):
    target = tvm_compile.parse_target("broadwell")
    database = tmp_path / "tiny-broadwell"
    tvm_compile.write_manifest(database, tiny_model, target)
    assert tvm_compile.find_tuned_database(tiny_model, target, roots=(tmp_path,)) is None  # no records yet
    (database / tvm_compile.RECORD_FILE).write_text(_record(0, 0.001) + "\n")
    assert tvm_compile.find_tuned_database(tiny_model, target, roots=(tmp_path,)) == database
    skylake = tvm_compile.parse_target('{"kind": "llvm", "mcpu": "skylake"}')
    assert tvm_compile.find_tuned_database(tiny_model, skylake, roots=(tmp_path,)) is None
    other = _tiny_onnx(tmp_path / "other.onnx", seed=2)
    assert tvm_compile.find_tuned_database(other, target, roots=(tmp_path,)) is None


def test_find_tuned_database_prefers_the_canonical_name_then_more_records(tiny_model, tmp_path):
    target = tvm_compile.parse_target("broadwell")
    for name, n_records in (("tiny-broadwell-a", 1), ("tiny-broadwell-b", 3), ("tiny-broadwell", 2)):
        tvm_compile.write_manifest(tmp_path / name, tiny_model, target)
        (tmp_path / name / tvm_compile.RECORD_FILE).write_text(
            "".join(_record(0, 0.001) + "\n" for _ in range(n_records))
        )
    assert tvm_compile.find_tuned_database(tiny_model, target, roots=(tmp_path,)) == tmp_path / "tiny-broadwell"
    (tmp_path / "tiny-broadwell" / tvm_compile.MANIFEST_NAME).unlink()
    assert tvm_compile.find_tuned_database(tiny_model, target, roots=(tmp_path,)) == tmp_path / "tiny-broadwell-b"


# ------------------------------------------------------------------------------------------ CLI


def test_cli_compile_writes_a_loadable_directory(tiny_model, tmp_path):
    from typer.testing import CliRunner

    from frvt.cli.app import app

    config = tmp_path / "config.json"
    TINY_CONFIG.save(config)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["compile", str(tiny_model), "--output", str(out), "--model-config", str(config), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "model.so" in result.output and "untuned" in result.output
    assert CompiledModel.load(out)(np.zeros(INPUT_SHAPE, np.float32))[0].shape == (1, 10)


def test_cli_compile_bad_target_exits_2(tiny_model, tmp_path):
    from typer.testing import CliRunner

    from frvt.cli.app import app

    result = CliRunner().invoke(
        app, ["compile", str(tiny_model), "--target", "pentium", "--output", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "pentium" in result.output
