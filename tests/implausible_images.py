"""Generated images that must not become a template of a wrong face, for the Python and C++ tests.

- near-black images: a constant 3, noise of 0..6, and a mugshot at 1% of its brightness (the
  detector finds nothing in them: they must be refused);
- upside-down mugshots: RetinaFace finds the upright-looking face in them but puts its eyes in the
  wrong order or its landmarks in no face's shape;
- an upside-down mugshot beside a smaller upright one: the bigger, implausible detection must be
  passed over for the smaller, plausible one.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEDS = ROOT / "data" / "validation" / "images" / "meds"

#: Mugshots whose 180-degree turn makes the detector's upright view give an implausible face.
UPSIDE_DOWN = ("S001-01", "S001-02", "S002-01", "S003-01", "S004-01", "S007-01")


def mugshot(name: str) -> np.ndarray:
    """RGB uint8 of ``data/validation/images/meds/<subject>/<name>-t10_01.jpg``."""
    path = MEDS / name.split("-")[0] / f"{name}-t10_01.jpg"
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def near_black() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "near_black_constant": np.full((480, 640, 3), 3, np.uint8),
        "near_black_noise": rng.integers(0, 7, (480, 640, 3)).astype(np.uint8),
        "near_black_mugshot": np.round(mugshot("S001-01") * 0.01).astype(np.uint8),
    }


def upside_down() -> dict[str, np.ndarray]:
    return {
        f"upside_down_{name}": np.ascontiguousarray(cv2.rotate(mugshot(name), cv2.ROTATE_180)) for name in UPSIDE_DOWN
    }


def upside_down_beside_upright() -> np.ndarray:
    """S003-01 upside down (480 x 600) on the left, S002-01 upright at half size on the right."""
    big = cv2.rotate(mugshot("S003-01"), cv2.ROTATE_180)
    small = cv2.resize(mugshot("S002-01"), None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    canvas = np.zeros((big.shape[0], big.shape[1] + small.shape[1], 3), np.uint8)
    canvas[:, : big.shape[1]] = big
    top = (big.shape[0] - small.shape[0]) // 2
    canvas[top : top + small.shape[0], big.shape[1] :] = small
    return canvas


def all_images() -> dict[str, np.ndarray]:
    return {**near_black(), **upside_down(), "upside_down_beside_upright": upside_down_beside_upright()}


def write_pngs(folder: Path) -> dict[str, Path]:
    """Every image as a lossless PNG in ``folder`` (the C++ library reads files through the driver)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rgb in all_images().items():
        paths[name] = folder / f"{name}.png"
        cv2.imwrite(str(paths[name]), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return paths
