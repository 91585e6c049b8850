"""implementation.tvm_runtime: loading and running an exported module (a tiny ONNX model compiled
once) against ONNX Runtime, on one thread, without importing the TVM compiler; operator times."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from implementation.tvm_runtime import CompiledModel
from onnx_models import TINY_INPUT_SHAPE, run_onnxruntime

REPO = Path(__file__).resolve().parents[2]


def test_compiled_matches_onnxruntime(tiny_compiled, tiny_model):
    out, _ = tiny_compiled
    model = CompiledModel.load(out)
    assert model.input_name == "input" and model.input_shape == TINY_INPUT_SHAPE
    rng = np.random.default_rng(3)
    for _ in range(3):
        x = rng.normal(0, 1, TINY_INPUT_SHAPE).astype(np.float32)
        ours = model(x)
        reference = run_onnxruntime(tiny_model, {"input": x})
        assert len(ours) == len(reference) == 1
        assert ours[0].shape == (1, 10)
        np.testing.assert_allclose(ours[0], reference[0], rtol=0, atol=1e-4)


def test_wrong_input_shape_is_an_error_naming_it(tiny_compiled):
    model = CompiledModel.load(tiny_compiled[0] / "model.so")
    with pytest.raises(ValueError, match=r"\(1, 3, 8, 8\)"):
        model(np.zeros((1, 3, 8, 8), np.float32))


def test_profile_reports_operators(tiny_compiled):
    model = CompiledModel.load(tiny_compiled[0])
    rows = model.profile(np.ones(TINY_INPUT_SHAPE, np.float32), repeat=3)
    assert rows and all(row.time_us >= 0 for row in rows)
    assert sum(row.percent for row in rows) == pytest.approx(100.0)
    assert [r.time_us for r in rows] == sorted((r.time_us for r in rows), reverse=True)
    assert any("conv2d" in row.name for row in rows)


def test_inference_runs_on_one_thread(tiny_compiled):
    """In a fresh process: no thread appears when the model runs, and CPU time ~ wall time."""
    script = textwrap.dedent(f"""
        import json, time, numpy as np, psutil
        from implementation.tvm_runtime import CompiledModel
        model = CompiledModel.load({str(tiny_compiled[0])!r})
        x = np.ones({TINY_INPUT_SHAPE!r}, np.float32)
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


def test_loading_does_not_import_the_tvm_compiler(tiny_compiled):
    """The template path needs only the C++ runtime through tvm_ffi, not the tvm package."""
    script = textwrap.dedent(f"""
        import sys, numpy as np
        from implementation.tvm_runtime import CompiledModel
        model = CompiledModel.load({str(tiny_compiled[0])!r})
        model(np.zeros({TINY_INPUT_SHAPE!r}, np.float32))
        print(sorted(name for name in sys.modules if name == "tvm" or name.startswith("tvm.")))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_missing_library_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        CompiledModel.load(tmp_path)
