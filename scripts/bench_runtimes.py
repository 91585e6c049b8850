"""Evidence for the ISA notes of ``frvt bench`` (docs/benchmarks.md); prints JSON.

    python scripts/bench_runtimes.py dlib-isa        # which SIMD instructions dlib-bin's binary contains
    python scripts/bench_runtimes.py onednn-verbose  # oneDNN's ISA in OpenVINO, uncapped and with ONEDNN_MAX_CPU_ISA=AVX2
    python scripts/bench_runtimes.py caps            # what each ISA cap does to each library

``dlib-isa`` disassembles dlib-bin's extension module with ``objdump -d`` (binutils) and counts
instructions that use 256-bit (ymm) and 512-bit (zmm) registers, FMA (``vfmadd``/``vfnmadd``...)
and AVX2-only integer/permute instructions. ``onednn-verbose`` runs the dlib model once with
OpenVINO's CPU plugin in a fresh process per setting with ``ONEDNN_VERBOSE=1`` and reports the
``isa:`` line oneDNN prints and the primitive types of the convolutions in OpenVINO's executed
graph (OpenVINO runs its convolutions through its own executors, which oneDNN's verbose mode does
not list one by one). ``caps`` runs one fresh process per setting (no cap, the libraries' own
environment switches only, the CPUID cap of ``frvt.perf.bench`` only, both) and reports what each
library then sees or picks: numpy's AVX512F flag, OpenCV's AVX512-SKX dispatch, OpenVINO's
convolution primitives, and ONNX Runtime's CPU-time median on the dlib model (20 calls) and its
output's difference from the uncapped run (a different kernel rounds differently).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DLIB_ONNX = REPO_ROOT / "data" / "models" / "dlib_face_recognition_resnet_model_v1.onnx"

_AVX2_ONLY = re.compile(
    r"\b(vpbroadcast[bwdq]|vperm2i128|vinserti128|vextracti128|vpermd|vpermq|vpgather\w+|vgather\w+)\b"
)
_FMA = re.compile(r"\bv(f|fn)m(add|sub)\w*\b")

_OV_ONCE = r"""
import json, numpy as np, openvino as ov, sys
core = ov.Core()
cm = core.compile_model(sys.argv[1], "CPU", {"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1,
                                              "INFERENCE_PRECISION_HINT": "f32", "ENABLE_CPU_PINNING": False})
cm.create_infer_request().infer({0: np.zeros((1, 3, 150, 150), np.float32)})
kinds = {}
for op in cm.get_runtime_model().get_ordered_ops():
    rt = op.get_rt_info()
    if "primitiveType" in rt and rt["layerType"].astype(str) == "Convolution":
        kind = rt["primitiveType"].astype(str)
        kinds[kind] = kinds.get(kind, 0) + 1
print("PRIMITIVES", json.dumps(kinds))
"""


def dlib_isa() -> dict:
    """Instruction counts of dlib-bin's ``_dlib_pybind11*.so``."""
    import dlib

    objdump = shutil.which("objdump")
    if objdump is None:
        return {"error": "objdump (binutils) not found"}
    site = Path(dlib.__file__).resolve().parents[1]
    libraries = sorted(site.glob("_dlib_pybind11*.so"))
    if not libraries:
        return {"error": f"no _dlib_pybind11*.so in {site}"}
    counts = collections.Counter()
    with subprocess.Popen(
        [objdump, "-d", "--no-show-raw-insn", str(libraries[0])], stdout=subprocess.PIPE, text=True
    ) as proc:
        for line in proc.stdout:
            if "\t" not in line:
                continue
            counts["instructions"] += 1
            if "%ymm" in line:
                counts["ymm"] += 1
            if "%zmm" in line:
                counts["zmm"] += 1
            if _FMA.search(line):
                counts["fma"] += 1
            if _AVX2_ONLY.search(line):
                counts["avx2_only"] += 1
    return {
        "library": str(libraries[0]),
        "dlib_version": dlib.__version__,
        "USE_AVX_INSTRUCTIONS": bool(getattr(dlib, "USE_AVX_INSTRUCTIONS", False)),
        "DLIB_USE_BLAS": bool(getattr(dlib, "DLIB_USE_BLAS", False)),
        "counts": dict(counts),
        "verdict": (
            "AVX-512"
            if counts["zmm"]
            else "AVX2+FMA"
            if counts["fma"] or counts["avx2_only"]
            else "AVX (256-bit, no FMA, no AVX2)"
            if counts["ymm"]
            else "SSE only"
        ),
    }


def onednn_verbose(model: Path = DLIB_ONNX) -> dict:
    """oneDNN's reported ISA and OpenVINO's convolution primitive types, uncapped and capped to AVX2."""
    results = {}
    for label, cap in (("uncapped", None), ("ONEDNN_MAX_CPU_ISA=AVX2", "AVX2")):
        env = dict(os.environ, ONEDNN_VERBOSE="1", OMP_NUM_THREADS="1")
        env.pop("ONEDNN_MAX_CPU_ISA", None)
        if cap:
            env["ONEDNN_MAX_CPU_ISA"] = cap
        proc = subprocess.run([sys.executable, "-c", _OV_ONCE, str(model)], env=env, capture_output=True, text=True)
        isa = [line.split("isa:", 1)[1].strip() for line in proc.stdout.splitlines() if ",isa:" in line]
        impls = [
            json.loads(line.split(" ", 1)[1]) for line in proc.stdout.splitlines() if line.startswith("PRIMITIVES ")
        ]
        results[label] = {
            "onednn_isa": isa[0] if isa else None,
            "convolution_primitives": impls[0] if impls else None,
            "returncode": proc.returncode,
        }
    return results


_CAPS_PROBE = r"""
import json, sys, time
import numpy as np, cv2, onnxruntime as ort, openvino as ov
model, out = sys.argv[1], sys.argv[2]
cv2.setNumThreads(1)
options = ort.SessionOptions(); options.intra_op_num_threads = 1; options.inter_op_num_threads = 1
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).standard_normal((1, 3, 150, 150)).astype(np.float32)
y = session.run(None, {"input": x})[0]
times = []
for _ in range(20):
    c = time.process_time(); session.run(None, {"input": x}); times.append(time.process_time() - c)
np.save(out, y)
compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32",
                                                  "ENABLE_CPU_PINNING": False})
prims = sorted({op.get_rt_info()["primitiveType"].astype(str) for op in compiled.get_runtime_model().get_ordered_ops()
                if op.get_rt_info()["layerType"].astype(str) == "Convolution"})
print(json.dumps({"numpy_avx512f": bool(np._core._multiarray_umath.__cpu_features__["AVX512F"]),
                  "opencv_avx512_skx": bool(cv2.checkHardwareSupport(256)), "openvino_convolutions": prims,
                  "onnxruntime_cpu_median_ms": float(np.median(times)) * 1e3}))
"""


def caps(model: Path = DLIB_ONNX) -> dict:
    """What no cap, the environment switches, the CPUID cap and both do to each library."""
    import tempfile

    import numpy as np

    sys.path.insert(0, str(REPO_ROOT))
    from frvt.perf.bench import AVX2_CAPS, THREAD_ENV, build_cpuid_cap

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        lib, reason = build_cpuid_cap(tmp)
        settings = {"none": ({}, False), "environment switches": (AVX2_CAPS, False)}
        if lib is not None:
            settings.update({"CPUID cap": ({}, True), "both": (AVX2_CAPS, True)})
        else:
            results["CPUID cap"] = {"unavailable": reason}
        reference = None
        for label, (switches, cpuid) in settings.items():
            env = {k: v for k, v in os.environ.items() if k not in AVX2_CAPS and k != "LD_PRELOAD"}
            env.update(THREAD_ENV)
            env.update(switches)
            if cpuid:
                env["LD_PRELOAD"] = str(lib)
            out = Path(tmp) / f"{len(results)}.npy"
            proc = subprocess.run(
                [sys.executable, "-c", _CAPS_PROBE, str(model), str(out)], env=env, capture_output=True, text=True
            )
            if proc.returncode != 0:
                results[label] = {"error": proc.stderr.strip()[-500:]}
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            y = np.load(out)
            reference = y if reference is None else reference
            row["onnxruntime_max_abs_diff_vs_none"] = float(np.abs(y - reference).max())
            results[label] = row
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("check", choices=("dlib-isa", "onednn-verbose", "caps"))
    args = parser.parse_args()
    result = {"dlib-isa": dlib_isa, "onednn-verbose": onednn_verbose, "caps": caps}[args.check]()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
