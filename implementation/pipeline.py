"""The default FRVT 1:1 implementation: RetinaFace -> dlib-chip alignment -> TVM-compiled ResNet.

Multi-person (NIST's one-image, several-people call): every face found gets its own template and
its eyes, left to right.

Per image: decode the contract's pixels, detect faces with 5 landmarks (RetinaFace MobileNet-0.25,
compiled by TVM), keep the largest / most central face, cut dlib's 150x150 chip with a similarity
transform, embed the chip and its mirror image with dlib's ResNet (compiled by TVM) and average
the two unit vectors. Several images make one template: the normalised mean of their embeddings.

A detection whose landmarks cannot be a face (eyes swapped or far outside its box, eyes too
close, no similarity transform to a face: :func:`implementation.detect.implausibility`) is passed
over for the next one; when none is left the call fails with ``FaceDetectionError``, never with a
template made from it.

When no plausible face is found upright, the detector is run again on the image turned by 90, 270
and 180 degrees (mugshots arrive rotated now and then); landmarks are mapped back to the original
image.

Similarity: ``(1 + cos) / 2`` of the unit embeddings, in [0, 1], higher = more alike (see
:func:`implementation.template.similarity`). A failed template always exists (the "no face"
template) and matches with -1 and ``VerifTemplateError``.

Everything runs on one thread: TVM's pool is one thread, OpenCV's is one thread.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from frvt.contract import (
    EyePair,
    Image,
    MatchResult,
    MultiTemplateResult,
    ReturnCode,
    ReturnStatus,
    TemplateResult,
    TemplateRole,
)
from implementation import template as tpl
from implementation.align import align
from implementation.config_dir import CONFIG_FORMAT, CONFIG_NAME
from implementation.detect import FACE_GEOMETRY, FaceGeometry, RetinaFaceDetector, implausibility, select_face
from implementation.model_config import ModelConfig
from implementation.resample import warp_bilinear

__version__ = "0.1.0"

STAGES = ("decode", "detect", "align", "embed", "encode")

# rotation tried, and how to map a point of the rotated image back to the original (w, h of original)
_ROTATIONS = (
    (None, lambda x, y, w, h: (x, y)),
    (cv2.ROTATE_90_CLOCKWISE, lambda x, y, w, h: (y, h - x)),
    (cv2.ROTATE_90_COUNTERCLOCKWISE, lambda x, y, w, h: (w - y, x)),
    (cv2.ROTATE_180, lambda x, y, w, h: (w - x, h - y)),
)


def _no_face(implausible: int) -> str:
    """The failure text when no face is used; names the implausible detections passed over."""
    if implausible == 0:
        return "no face found"
    return f"no plausible face found ({implausible} implausible detection(s) passed over)"


def _describe(embedder: str, flip: bool) -> str:
    """The implementation's version text: the pipeline, its embedder and whether faces are flip-averaged."""
    views = "flip-averaged" if flip else "single view"
    return f"frvt-default {__version__}: RetinaFace-MobileNet0.25 + {embedder} (TVM, {views})"


class FaceVerifier:
    """NIST 1:1 contract over the TVM-compiled face pipeline. See the module docstring."""

    organization = "frvt"
    #: What the templates come from; ``initialize`` replaces it with the loaded embedder and view mode.
    version = _describe("dlib ResNet v1", flip=True)

    def __init__(self) -> None:
        self._detector: RetinaFaceDetector | None = None
        self._embedder = None
        self._detector_model = None
        self._config: ModelConfig | None = None
        self._fingerprint = b"\0\0\0\0"
        self._flip = True
        self.target: dict | None = None
        self.last_stage_times: dict[str, float] = {}
        #: Thread CPU milliseconds of each network call of the last ``create_face_template`` call,
        #: by network (CPU time: on a shared machine the wall clock also counts waiting for a core).
        self.last_model_times: dict[str, list[float]] = {}
        self._model_dirs: dict[str, Path] = {}
        self._embedder_timed = None
        #: What a detection must satisfy to be taken for a face (the C++ library reads the same
        #: limits from its native.cfg).
        self.geometry: FaceGeometry = FACE_GEOMETRY

    # -- set-up -------------------------------------------------------------------------------
    def default_config_dir(self) -> Path:
        """Build (once, cached) and return the default config directory (TVM compile: minutes)."""
        from implementation.config_dir import build_config_dir

        return build_config_dir(progress=True)

    def initialize(self, config_dir: str) -> ReturnStatus:
        """Load the compiled detector and embedder from ``config_dir`` (read-only)."""
        from implementation.tvm_runtime import CompiledModel

        try:
            root = Path(config_dir)
            settings = json.loads((root / CONFIG_NAME).read_text())
            if settings.get("format") != CONFIG_FORMAT:
                return ReturnStatus(
                    ReturnCode.ConfigError,
                    f"{root / CONFIG_NAME}: format {settings.get('format')}, expected {CONFIG_FORMAT}",
                )
            detector_dir, embedder_dir = root / settings["detector"], root / settings["embedder"]
            self._detector_model = CompiledModel.load(detector_dir)
            self._embedder = CompiledModel.load(embedder_dir)
            self._config = ModelConfig.load(embedder_dir / "model_config.json")
            height, width = self._detector_model.input_shape[2:4]
            self._detector = RetinaFaceDetector(
                self._timed("detector", self._detector_model), input_size=(height, width)
            )
            self._embedder_timed = self._timed("embedder", self._embedder)
            self._model_dirs = {"detector": detector_dir, "embedder": embedder_dir}
            sha = self._embedder.metadata.get("model_sha256", "")
            self._fingerprint = bytes.fromhex(sha[:8]) if len(sha) >= 8 else b"\0\0\0\0"
            self._flip = bool(settings.get("flip_average", True))
            self.target = settings.get("target")
            self.version = _describe(self._config.name, self._flip)
            cv2.setNumThreads(1)
            # The compiled chip warp is loaded (or compiled) here, not in the first template's time.
            # Numba loads SciPy's BLAS then; without a thread count its OpenBLAS would start an
            # idle thread pool in this single-threaded implementation.
            os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
            warp_bilinear(np.zeros((2, 2, 3), np.uint8), np.eye(2, 3), 2)
        except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
            return ReturnStatus(ReturnCode.ConfigError, f"cannot load config from {config_dir}: {exc}")
        return ReturnStatus(ReturnCode.Success)

    def model_dirs(self) -> dict[str, Path]:
        """The compiled-model directory of each network (``metadata.json``, ``model.onnx``), by
        the names :attr:`last_model_times` uses; empty before ``initialize``."""
        return dict(self._model_dirs)

    def _timed(self, name: str, model):
        """``model`` with each call's thread CPU milliseconds appended to ``last_model_times[name]``."""

        def call(x: np.ndarray):
            t = time.thread_time()
            out = model(x)
            self.last_model_times.setdefault(name, []).append((time.thread_time() - t) * 1e3)
            return out

        return call

    # -- templates ----------------------------------------------------------------------------
    def _failed(self, code: ReturnCode, info: str, n_images: int) -> TemplateResult:
        return TemplateResult(
            ReturnStatus(code, info), tpl.encode(None, self._fingerprint), [EyePair()] * max(n_images, 1)
        )

    def _detect_all(self, rgb: np.ndarray, choose_one: bool) -> tuple[list[np.ndarray], int]:
        """Landmarks (5, 2) in original pixels of the chosen face (``choose_one``) or of every face,
        from the first rotation in which any plausible face is found (:func:`implausibility`),
        every face ordered left to right; and how many implausible detections were passed over."""
        h, w = rgb.shape[:2]
        skipped = 0
        for rotation, back in _ROTATIONS:
            view = rgb if rotation is None else cv2.rotate(rgb, rotation)
            detected = self._detector.detect(view)
            faces = [f for f in detected if implausibility(f.box, f.landmarks, self.geometry) is None]
            skipped += len(detected) - len(faces)
            if choose_one:
                chosen = select_face(faces, view.shape)
                faces = [chosen] if chosen is not None else []
            if faces:
                found = [
                    np.array([back(float(x), float(y), w, h) for x, y in f.landmarks], dtype=np.float32) for f in faces
                ]
                return sorted(found, key=lambda lm: float(lm[:, 0].mean())), skipped
        return [], skipped

    def _detect(self, rgb: np.ndarray) -> tuple[np.ndarray | None, int]:
        """The chosen face's landmarks (5, 2) in original pixels, or None; tries rotations. Also
        how many implausible detections were passed over."""
        found, skipped = self._detect_all(rgb, choose_one=True)
        return (found[0] if found else None), skipped

    @staticmethod
    def _eyes(landmarks: np.ndarray, w: int, h: int) -> EyePair:
        """NIST's EyePair: left = the subject's left eye (RetinaFace's second landmark)."""
        (xr, yr), (xl, yl) = landmarks[0], landmarks[1]
        clip = lambda v, n: int(min(max(round(float(v)), 0), n - 1))  # noqa: E731
        return EyePair(True, True, clip(xl, w), clip(yl, h), clip(xr, w), clip(yr, h))

    @property
    def _chip_size(self) -> int:
        return int(self._config.chip.get("size", 150)) if self._config.chip else 150

    def _embedder_batches(self, chip: np.ndarray) -> list[np.ndarray]:
        """The embedder's inputs for one chip: the chip and, when flip-averaging, its mirror
        image, as one batch when the embedder was compiled for a batch of two, else one each."""
        views = self._config.network_batch(chip, mirror=self._flip)
        if int(self._embedder.input_shape[0]) == len(views):
            return [views]
        return [views[i : i + 1] for i in range(len(views))]

    def _embed(self, chip: np.ndarray) -> np.ndarray:
        """The chip's unit embedding: the normalised sum of the unit embeddings of the chip and,
        when flip-averaging, its mirror image."""
        total = np.zeros(self._config.embedding_size, np.float64)
        for batch in self._embedder_batches(chip):
            for v in np.asarray(self._embedder_timed(batch)[0], np.float64):
                v = v.ravel()
                total += v / (np.linalg.norm(v) + 1e-12)
        return (total / (np.linalg.norm(total) + 1e-12)).astype(np.float32)

    def create_face_template(self, images: Sequence[Image], role: TemplateRole) -> TemplateResult:
        """One template from all faces found in ``images``; never raises."""
        times = dict.fromkeys(STAGES, 0.0)
        self.last_stage_times = times
        self.last_model_times = {}
        if self._embedder is None:
            return self._failed(ReturnCode.ConfigError, "initialize was not called or failed", len(images))
        if not images:
            return self._failed(ReturnCode.NumDataError, "no image given", 0)
        try:
            embeddings, eyes, problems = [], [], []
            for index, image in enumerate(images):
                t = time.perf_counter()
                try:
                    pixels = image.to_array()
                except ValueError as exc:
                    problems.append((ReturnCode.ParseError, f"image {index}: {exc}"))
                    eyes.append(EyePair())
                    continue
                rgb = cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB) if pixels.ndim == 2 else pixels
                t2 = time.perf_counter()
                times["decode"] += (t2 - t) * 1e3
                landmarks, skipped = self._detect(rgb)
                t3 = time.perf_counter()
                times["detect"] += (t3 - t2) * 1e3
                if landmarks is None:
                    problems.append((ReturnCode.FaceDetectionError, f"image {index}: {_no_face(skipped)}"))
                    eyes.append(EyePair())
                    continue
                h, w = rgb.shape[:2]
                eyes.append(self._eyes(landmarks, w, h))
                chip = align(rgb, landmarks, self._chip_size, self._config.chip)
                t4 = time.perf_counter()
                times["align"] += (t4 - t3) * 1e3
                embeddings.append(self._embed(chip))
                times["embed"] += (time.perf_counter() - t4) * 1e3
            t5 = time.perf_counter()
            if not embeddings:
                code, info = problems[0] if problems else (ReturnCode.UnknownError, "no face")
                result = TemplateResult(
                    ReturnStatus(code, "; ".join(p[1] for p in problems)), tpl.encode(None, self._fingerprint), eyes
                )
            else:
                mean = np.mean(embeddings, axis=0)
                mean /= np.linalg.norm(mean) + 1e-12
                info = "; ".join(p[1] for p in problems)
                result = TemplateResult(
                    ReturnStatus(ReturnCode.Success, info), tpl.encode(mean, self._fingerprint, len(embeddings)), eyes
                )
            times["encode"] = (time.perf_counter() - t5) * 1e3
            return result
        except Exception as exc:  # the contract: no exception crosses
            return self._failed(ReturnCode.TemplateCreationError, f"{type(exc).__name__}: {exc}", len(images))

    def create_face_templates(self, image: Image, role: TemplateRole) -> MultiTemplateResult:
        """NIST's multi-person call: one template and one EyePair per face RetinaFace finds in
        ``image`` (left to right); one "no face" template when it finds none. Never raises."""
        failed = lambda code, info: MultiTemplateResult(  # noqa: E731
            ReturnStatus(code, info), [tpl.encode(None, self._fingerprint)], [EyePair()]
        )
        self.last_model_times = {}
        if self._embedder is None:
            return failed(ReturnCode.ConfigError, "initialize was not called or failed")
        try:
            try:
                pixels = image.to_array()
            except ValueError as exc:
                return failed(ReturnCode.ParseError, str(exc))
            rgb = cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB) if pixels.ndim == 2 else pixels
            faces, skipped = self._detect_all(rgb, choose_one=False)
            if not faces:
                return failed(ReturnCode.FaceDetectionError, _no_face(skipped))
            h, w = rgb.shape[:2]
            templates = [
                tpl.encode(self._embed(align(rgb, lm, self._chip_size, self._config.chip)), self._fingerprint, 1)
                for lm in faces
            ]
            return MultiTemplateResult(
                ReturnStatus(ReturnCode.Success), templates, [self._eyes(lm, w, h) for lm in faces]
            )
        except Exception as exc:  # the contract: no exception crosses
            return failed(ReturnCode.TemplateCreationError, f"{type(exc).__name__}: {exc}")

    # -- matching -----------------------------------------------------------------------------
    def match_templates(self, verif_template: bytes, enroll_template: bytes) -> MatchResult:
        """Similarity in [0, 1]; -1 with VerifTemplateError when either template failed or is foreign."""
        try:
            v = tpl.decode(verif_template, self._fingerprint)
            e = tpl.decode(enroll_template, self._fingerprint)
        except tpl.TemplateFormatError as exc:
            return MatchResult(ReturnStatus(ReturnCode.TemplateFormatError, str(exc)), -1.0)
        except Exception as exc:  # pragma: no cover - decode only raises TemplateFormatError
            return MatchResult(ReturnStatus(ReturnCode.MatchError, str(exc)), -1.0)
        if not (v.has_face and e.has_face):
            which = "verification" if not v.has_face else "enrolment"
            return MatchResult(ReturnStatus(ReturnCode.VerifTemplateError, f"the {which} template holds no face"), -1.0)
        if v.embedding.shape != e.embedding.shape:
            return MatchResult(ReturnStatus(ReturnCode.TemplateFormatError, "templates of different sizes"), -1.0)
        return MatchResult(ReturnStatus(ReturnCode.Success), tpl.similarity(v.embedding, e.embedding))

    def vector_form(self) -> tpl.VectorForm | None:
        """Templates as fixed-length vectors with the declared similarity (after ``initialize``)."""
        if self._config is None or self._config.similarity != tpl.SIMILARITY:
            return None
        return tpl.VectorForm(self._fingerprint, self._config.embedding_size, self._config.similarity)

    # -- profiling ----------------------------------------------------------------------------
    def operator_profiles(self, image: Image) -> dict[str, list[dict]]:
        """Per-operator times of the detector and embedder on one image (TVM's Relax VM profiler)."""
        rgb = image.to_array()
        rgb = cv2.cvtColor(rgb, cv2.COLOR_GRAY2RGB) if rgb.ndim == 2 else rgb
        x, _ = self._detector.preprocess(rgb)
        out = {"detector": [asdict(op) for op in self._detector_model.profile(x)]}
        landmarks, _ = self._detect(rgb)
        size = self._chip_size
        chip = (
            align(rgb, landmarks, size, self._config.chip)
            if landmarks is not None
            else np.zeros((size, size, 3), np.uint8)
        )
        out["embedder"] = [asdict(op) for op in self._embedder.profile(self._embedder_batches(chip)[0])]
        return out
