"""The default template with its embedder in int8: what it costs in accuracy and what it buys in speed.

The dlib embedder is quantised by ONNX Runtime's static quantisation (QDQ format, int8 weights per
output channel, uint8 activations, min-max calibration), calibrated on the chips the default
pipeline makes of NIST MEDS and AT&T images (never LFW, which measures it). Weights use 7 bits
(``reduce_range``): without VNNI, the AVX2 int8 kernels (``vpmaddubsw``) add pairs of products in
16 bits, which full-range weights can saturate. The quantised model takes the template's call, the
chip and its mirror image as one batch of two.

    python scripts/int8_embedder.py quantize --out runs/int8/dlib_int8.onnx
    python scripts/int8_embedder.py speed --model runs/int8/dlib_int8.onnx --repeats 60 --json docs/results/int8_embedder_speed.json

``speed`` times the embedder's call of two images, interleaved call by call in one process, one
thread, thread CPU time: the tuned TVM build the default implementation loads, ONNX Runtime on the
float model, ONNX Runtime on the int8 model; and how far the int8 embeddings are from the float
ones. The whole template with the int8 embedder is :class:`Int8Verifier`, for any command that
takes an implementation (``FRVT_INT8_ONNX`` names the model)::

    export FRVT_INT8_ONNX=runs/int8/dlib_int8.onnx PYTHONPATH=scripts
    frvt enroll ../shared/data/lfw/lfw-deepfunneled runs/int8/lfw_int8.h5 -i int8_embedder:Int8Verifier
    frvt score --all-vs-all runs/int8/lfw_int8.h5 --bootstrap 200 \\
        --label "frvt-default, int8 embedder, on LFW all pairs" -o docs/results/lfw_all_pairs_int8
    frvt lfw --store runs/int8/lfw_int8.h5 --json docs/results/lfw_int8.json

and the same three with the default implementation (no ``-i``) for the float side.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from implementation.pipeline import FaceVerifier  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
EMBEDDER_ONNX = REPO / "data" / "models" / "dlib_face_recognition_resnet_model_v1.onnx"


def _session(path: Path):
    """An ONNX Runtime session on one thread, every graph optimisation on."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class _OrtEmbedder:
    """An ONNX Runtime embedder with the compiled model's calling convention."""

    def __init__(self, path: Path) -> None:
        self.session = _session(path)
        inp = self.session.get_inputs()[0]
        self.name = inp.name
        self.input_shape = tuple(int(d) for d in inp.shape)

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.name: np.ascontiguousarray(x, np.float32)})


class Int8Verifier(FaceVerifier):
    """The default implementation with the int8 embedder named by ``FRVT_INT8_ONNX`` (detection,
    alignment, flip-averaging and templates as the default's; the templates name the int8 model)."""

    def initialize(self, config_dir: str):
        status = super().initialize(config_dir)
        if status.code.value != 0:
            return status
        from frvt.contract import ReturnCode, ReturnStatus

        path = os.environ.get("FRVT_INT8_ONNX", "")
        if not path or not Path(path).is_file():
            return ReturnStatus(ReturnCode.ConfigError, f"FRVT_INT8_ONNX names no model file: {path!r}")
        self._embedder = _OrtEmbedder(Path(path))
        self._embedder_timed = self._timed("embedder", self._embedder)
        self._fingerprint = hashlib.sha256(Path(path).read_bytes()).digest()[:4]
        self.version = f"{self.version}, int8 embedder"
        return status


def calibration_batches(verifier: FaceVerifier, limit: int) -> list[np.ndarray]:
    """The embedder's inputs (chip and mirror image, one batch of two) for the faces the default
    pipeline finds in MEDS and AT&T images, up to ``limit``, in a fixed order."""
    import cv2

    from frvt.driver import decode_image
    from implementation.align import align

    paths = sorted((SHARED / "meds").rglob("*.jpg")) + sorted((SHARED / "att").rglob("*.pgm"))
    batches = []
    for p in paths:
        if len(batches) >= limit:
            break
        try:
            pixels = decode_image(str(p)).to_array()
        except Exception as exc:  # an unreadable image is skipped, and said
            print(f"skipped {p}: {exc}", file=sys.stderr)
            continue
        rgb = cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB) if pixels.ndim == 2 else pixels
        landmarks, _ = verifier._detect(rgb)
        if landmarks is None:
            continue
        chip = align(rgb, landmarks, verifier._chip_size, verifier._config.chip)
        batches.append(np.ascontiguousarray(verifier._config.network_batch(chip, mirror=True), np.float32))
    return batches


def _default_verifier() -> FaceVerifier:
    from frvt.settings import limit_threads_by_default

    limit_threads_by_default()
    v = FaceVerifier()
    status = v.initialize(str(v.default_config_dir()))
    if status.code.value != 0:
        raise SystemExit(f"the default implementation did not initialize: {status.info}")
    return v


def quantize(out: Path, n_calibration: int) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from frvt.perf.bench.inputs import batched_onnx

    verifier = _default_verifier()
    batches = calibration_batches(verifier, n_calibration)
    print(f"{len(batches)} calibration chips (MEDS, AT&T)", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    batch2 = batched_onnx(EMBEDDER_ONNX, 2, out.with_name(out.stem + "_fp32_b2.onnx"))
    prepared = out.with_name(out.stem + "_fp32_b2_prep.onnx")
    quant_pre_process(str(batch2), str(prepared), skip_symbolic_shape=True)  # static shapes: ONNX inference suffices
    name = _session(prepared).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            b = next(self.it, None)
            return None if b is None else {name: b}

    quantize_static(
        str(prepared),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        reduce_range=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); float batch-of-two model {batch2}", file=sys.stderr)


def speed(model: Path, repeats: int, json_out: Path | None) -> None:
    from frvt.perf.machine import git_revision, machine_info

    verifier = _default_verifier()
    batches = calibration_batches(verifier, 64)
    tvm = verifier._embedder
    fp32 = _OrtEmbedder(model.with_name(model.stem + "_fp32_b2.onnx"))
    int8 = _OrtEmbedder(model)
    runtimes = {"tvm_tuned": tvm, "onnxruntime_fp32": fp32, "onnxruntime_int8": int8}
    times: dict[str, list[float]] = {k: [] for k in runtimes}
    for b in batches[:4]:  # warm-up
        for f in runtimes.values():
            f(b)
    for r in range(repeats):
        b = batches[r % len(batches)]
        for k, f in runtimes.items():
            t = time.thread_time()
            f(b)
            times[k].append((time.thread_time() - t) * 1e3)

    def unit(v):
        v = np.asarray(v, np.float64).reshape(v.shape[0], -1)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    cos, dist = [], []
    for b in batches:
        e_tvm, e_int8 = unit(tvm(b)[0]), unit(int8(b)[0])
        cos.extend(np.sum(e_tvm * e_int8, axis=1).tolist())
        dist.extend(np.abs(e_tvm - e_int8).max(axis=1).tolist())
    med = {k: statistics.median(v) for k, v in times.items()}
    doc = {
        "schema": "frvt.int8-embedder/1",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "git_revision": git_revision(),
        "machine": machine_info(),
        "call": "the embedder on the chip and its mirror image, one batch of two, one thread",
        "repeats": repeats,
        "median_ms": med,
        "p90_ms": {k: float(np.percentile(v, 90)) for k, v in times.items()},
        "int8_over_tvm_tuned": med["onnxruntime_int8"] / med["tvm_tuned"],
        "int8_over_onnxruntime_fp32": med["onnxruntime_int8"] / med["onnxruntime_fp32"],
        "embedding_cosine_int8_vs_float": {"min": min(cos), "median": statistics.median(cos)},
        "embedding_max_abs_difference": {"max": max(dist), "median": statistics.median(dist)},
        "chips": len(batches),
    }
    for k, v in med.items():
        print(f"{k}: median {v:.2f} ms", file=sys.stderr)
    print(
        f"int8 / TVM tuned {doc['int8_over_tvm_tuned']:.2f}, int8 / ONNX Runtime fp32 "
        f"{doc['int8_over_onnxruntime_fp32']:.2f}; unit embeddings int8 vs float: cosine min "
        f"{min(cos):.5f}, largest component difference {max(dist):.4f}",
        file=sys.stderr,
    )
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(doc, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quantize", help="write the int8 model (and the float batch-of-two model beside it)")
    q.add_argument("--out", type=Path, required=True)
    q.add_argument("--calibration", type=int, default=200, help="calibration chips")
    s = sub.add_parser("speed", help="the embedder's call: TVM tuned, ONNX Runtime fp32 and int8, interleaved")
    s.add_argument("--model", type=Path, required=True)
    s.add_argument("--repeats", type=int, default=60)
    s.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.cmd == "quantize":
        quantize(args.out, args.calibration)
    else:
        speed(args.model, args.repeats, args.json)


if __name__ == "__main__":
    main()
