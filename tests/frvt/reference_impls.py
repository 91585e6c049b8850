"""Small, real implementations of the contract for testing the harness, and deliberately broken ones.

``PixelMatcher`` is a genuine (if weak) face matcher: no detector, a 24x24 grey thumbnail of the
centre of the image, normalised, compared by cosine similarity. It is not a test double: it runs
the whole contract for real, fast enough for unit tests. Each broken subclass breaks one rule that
``frvt validate`` must catch.
"""

from __future__ import annotations

import functools
import os
import struct
import threading
from pathlib import Path

import cv2
import numpy as np

from frvt.contract import EyePair, MatchResult, MultiTemplateResult, ReturnCode, ReturnStatus, TemplateResult

MAGIC = b"PXM1"
CONFIG_NAME = "pixel.cfg"


def make_config_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / CONFIG_NAME).write_text("size=24\n")
    return path


class PixelMatcher:
    version = "pixel-matcher 1.0"
    organization = "testorg"

    def __init__(self) -> None:
        self.size = None

    def initialize(self, config_dir: str) -> ReturnStatus:
        cv2.setNumThreads(1)  # an implementation chooses its own threads: the harness sets none
        try:
            text = (Path(config_dir) / CONFIG_NAME).read_text()
            self.size = int(text.strip().split("=")[1])
        except (OSError, ValueError, IndexError) as exc:
            return ReturnStatus(ReturnCode.ConfigError, str(exc))
        return ReturnStatus(ReturnCode.Success)

    def _failed(self, code: ReturnCode, info: str, n_images: int = 1) -> TemplateResult:
        return TemplateResult(ReturnStatus(code, info), MAGIC + b"\x00", [EyePair()] * max(n_images, 1))

    def create_face_template(self, images, role) -> TemplateResult:
        if not images:
            return self._failed(ReturnCode.NumDataError, "no image")
        try:
            pixels = images[0].to_array()
        except ValueError as exc:
            return self._failed(ReturnCode.ParseError, str(exc), len(images))
        grey = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
        h, w = grey.shape
        centre = grey[h // 5 : h - h // 5, w // 5 : w - w // 5]
        if centre.size == 0 or float(centre.std()) < 2.0:
            return self._failed(ReturnCode.FaceDetectionError, "flat image", len(images))
        v = cv2.resize(centre, (self.size, self.size), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
        v -= v.mean()
        v /= np.linalg.norm(v) + 1e-12
        eyes = EyePair(True, True, int(w * 0.62), int(h * 0.4), int(w * 0.38), int(h * 0.4))
        return TemplateResult(
            ReturnStatus(ReturnCode.Success),
            MAGIC + b"\x01" + v.astype("<f4").tobytes(),
            [eyes] + [EyePair()] * (len(images) - 1),
        )

    def create_face_templates(self, image, role) -> MultiTemplateResult:
        """The multi-person call: the one 'face' this matcher sees, with its eyes."""
        r = self.create_face_template([image], role)
        return MultiTemplateResult(r.status, [r.template], r.eyes[:1] or [EyePair()])

    def _decode(self, template: bytes):
        if len(template) < 5 or template[:4] != MAGIC:
            return None
        if template[4] != 1:
            return None
        return np.frombuffer(template[5:], dtype="<f4")

    def match_templates(self, verif: bytes, enroll: bytes) -> MatchResult:
        a, b = self._decode(verif), self._decode(enroll)
        if a is None or b is None or a.shape != b.shape:
            return MatchResult(ReturnStatus(ReturnCode.VerifTemplateError, "failed or foreign template"), -1.0)
        return MatchResult(ReturnStatus(ReturnCode.Success), float((1.0 + float(a @ b)) / 2.0))


class NegativeScores(PixelMatcher):
    """Returns similarities in [-1, 1] with Success: fails ``scores_non_negative``."""

    def match_templates(self, verif, enroll):
        r = super().match_templates(verif, enroll)
        return MatchResult(r.status, r.similarity * 2.0 - 1.0) if r.status.ok else r


class ExtraThreads(PixelMatcher):
    """Computes in two extra threads, like an unconfigured BLAS pool: fails ``single_thread``."""

    def create_face_template(self, images, role):
        def burn():
            a = np.random.default_rng(0).random((180, 180))
            for _ in range(12):
                a = np.tanh(a @ a.T / 180.0)  # numpy releases the GIL: real parallel work

        threads = [threading.Thread(target=burn) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return super().create_face_template(images, role)


HARDCODED_ENV = "FRVT_TEST_HARDCODED_CONFIG"


class HardcodedConfig(PixelMatcher):
    """Reads its config from a fixed path (``$FRVT_TEST_HARDCODED_CONFIG``, the original folder)
    instead of the directory it is given: fails ``config_path``."""

    def initialize(self, config_dir):
        return super().initialize(os.environ[HARDCODED_ENV])


class EmptyTemplate(PixelMatcher):
    """Returns an empty template when no face is found: fails ``template_sizes``."""

    def _failed(self, code, info, n_images=1):
        return TemplateResult(ReturnStatus(code, info), b"", [EyePair()] * n_images)


class ScoresFailedTemplates(PixelMatcher):
    """Gives failed templates a 0.0 score with Success: fails ``failed_templates_matchable``."""

    def match_templates(self, verif, enroll):
        r = super().match_templates(verif, enroll)
        return r if r.status.ok else MatchResult(ReturnStatus(ReturnCode.Success), 0.0)


class ConstantScore(PixelMatcher):
    """Scores every pair 0.5: fails ``unique_scores``."""

    def match_templates(self, verif, enroll):
        r = super().match_templates(verif, enroll)
        return MatchResult(r.status, 0.5) if r.status.ok else r


class EyesOutside(PixelMatcher):
    """Reports eye points outside the image: fails ``eye_coordinates``."""

    def create_face_template(self, images, role):
        r = super().create_face_template(images, role)
        if r.status.ok:
            r.eyes = [EyePair(True, True, images[0].width + 10, 5, 3, 5)]
        return r


class Raises(PixelMatcher):
    """Lets an exception cross the contract on flat images: fails ``no_exceptions``."""

    def _failed(self, code, info, n_images=1):
        raise RuntimeError(f"flat image ({info})")


class NoVersion(PixelMatcher):
    version = ""


def template_bytes(size: int) -> bytes:
    return MAGIC + b"\x01" + struct.pack(f"<{size}f", *([0.0] * size))


# ---------------------------------------------------------------------------------------------
# The gallery: implementations that break the harness's own assumptions. Each misbehaves on one
# input only (the image named by TRIGGER, an edge case of the bundled set) so that the run must
# record that input and go on.

TRIGGER = "S003"  # a subject whose images exist in the small test set


def _is_trigger(images) -> bool:
    """True for the image of the trigger subject: its pixels' checksum is remembered by name."""
    return any(getattr(im, "width", 0) and _fingerprint(im) in _trigger_prints() for im in images)


def _fingerprint(image) -> int:
    return (image.width * 7919 + image.height) ^ (sum(image.data[:4096:97]) << 1)


@functools.lru_cache(maxsize=1)
def _trigger_prints() -> frozenset[int]:
    from frvt.driver import decode_image

    root = Path(__file__).resolve().parents[2] / "data" / "validation" / "images" / "meds" / TRIGGER
    return frozenset(_fingerprint(decode_image(p)) for p in root.glob("*.jpg"))


class SegfaultOnOne(PixelMatcher):
    """Dereferences a NULL pointer on one image: fails ``no_crashes`` (SIGSEGV)."""

    def create_face_template(self, images, role):
        if _is_trigger(images):
            import ctypes

            ctypes.string_at(0)
        return super().create_face_template(images, role)


class HangOnOne(PixelMatcher):
    """Never returns on one image: fails ``no_timeouts``."""

    def create_face_template(self, images, role):
        if _is_trigger(images):
            import time

            time.sleep(3600)
        return super().create_face_template(images, role)


class ExitInMatch(PixelMatcher):
    """Calls ``os._exit`` in one comparison: fails ``no_crashes``."""

    calls = 0

    def match_templates(self, verif, enroll):
        self.calls += 1
        if self.calls == 7:
            os._exit(3)
        return super().match_templates(verif, enroll)


class RunawayAllocation(PixelMatcher):
    """Allocates without end on one image: fails ``no_crashes`` (memory limit)."""

    def create_face_template(self, images, role):
        if _is_trigger(images):
            hoard = []
            while True:
                hoard.append(np.ones(16 << 20, np.uint8))  # touched pages: resident memory grows
        return super().create_face_template(images, role)


class CExtensionRaises(PixelMatcher):
    """Lets an exception raised inside a C extension (zlib) cross the contract: fails ``no_exceptions``."""

    def create_face_template(self, images, role):
        if _is_trigger(images):
            import zlib

            zlib.decompress(b"not a zlib stream")
        return super().create_face_template(images, role)


class AbortOnOne(PixelMatcher):
    """Calls C's abort() on one image (what an uncaught C++ exception does): fails ``no_crashes``."""

    def create_face_template(self, images, role):
        if _is_trigger(images):
            import ctypes

            ctypes.CDLL(None).abort()
        return super().create_face_template(images, role)


class NativeHardcodedConfig(PixelMatcher):
    """Opens its config with C's fopen at the original path (``$FRVT_TEST_HARDCODED_CONFIG``),
    as a native library with a hard-coded path does: fails ``config_path``."""

    def initialize(self, config_dir):
        import ctypes

        libc = ctypes.CDLL(None)
        libc.fopen.restype = ctypes.c_void_p
        path = os.path.join(os.environ[HARDCODED_ENV], CONFIG_NAME).encode()
        handle = libc.fopen(path, b"r")
        if not handle:
            return ReturnStatus(ReturnCode.ConfigError, f"cannot open {path.decode()}")
        libc.fclose(ctypes.c_void_p(handle))
        return super().initialize(config_dir)


class NotImplementedTemplates(PixelMatcher):
    """createFaceTemplate returns NotImplemented (NIST's run stops): fails ``not_implemented``."""

    def create_face_template(self, images, role):
        return TemplateResult(ReturnStatus(ReturnCode.NotImplemented, "later"), b"", [])


class MultiPersonFewerEyes(PixelMatcher):
    """The multi-person call returns two templates and one EyePair: fails ``multiperson_templates``."""

    def create_face_templates(self, image, role):
        r = super().create_face_template([image], role)
        return MultiTemplateResult(r.status, [r.template, r.template], r.eyes[:1])


class SlowPixelMatcher(PixelMatcher):
    """Like MultiPerson, 30 ms slower per template: gives a kill time to land mid-phase."""

    def create_face_template(self, images, role):
        import time

        time.sleep(0.03)
        return super().create_face_template(images, role)
