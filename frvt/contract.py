"""The NIST FRVT (FRTE) 1:1 contract, mirroring ``frvt_structs.h`` and ``frvt11.h`` of API v6.

Failures are values at this boundary: every call returns a :class:`ReturnStatus`; no exception
crosses it. A template is always produced and always matchable; matching against a template whose
creation failed gives similarity -1 with a non-success code.
"""

from __future__ import annotations

import enum
import importlib
from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

import numpy as np


class ReturnCode(enum.IntEnum):
    """NIST's return codes (``FRVT::ReturnCode``), with NIST's numeric values."""

    Success = 0
    UnknownError = 1
    ConfigError = 2
    RefuseInput = 3
    ExtractError = 4
    ParseError = 5
    TemplateCreationError = 6
    VerifTemplateError = 7
    FaceDetectionError = 8
    NumDataError = 9
    TemplateFormatError = 10
    EnrollDirError = 11
    InputLocationError = 12
    MemoryError = 13
    MatchError = 14
    QualityAssessmentError = 15
    NotImplemented = 16
    VendorError = 17


@dataclass(frozen=True)
class ReturnStatus:
    """A return code with an optional free-text explanation."""

    code: ReturnCode = ReturnCode.Success
    info: str = ""

    @property
    def ok(self) -> bool:
        return self.code == ReturnCode.Success


class TemplateRole(enum.IntEnum):
    Enrollment_11 = 0
    Verification_11 = 1
    Enrollment_1N = 2
    Search_1N = 3


class ImageLabel(enum.IntEnum):
    """``Image::Label``: what kind of photograph an image is."""

    FaceUnknown = 0
    FaceIso = 1
    FaceMugshot = 2
    FacePhotojournalism = 3
    FaceWild = 4
    FaceVisa = 5
    FaceBorder = 6
    FaceSelfie = 7


@dataclass(frozen=True)
class Image:
    """An image as NIST hands it over: row-major pixels, RGB interleaved when ``depth`` is 24.

    Parameters
    ----------
    width, height : int
        Size in pixels.
    depth : int
        Bits per pixel: 8 (grey) or 24 (RGB, in that channel order).
    data : bytes
        ``width * height * depth / 8`` bytes.
    description : ImageLabel
    """

    width: int
    height: int
    depth: int
    data: bytes
    description: ImageLabel = ImageLabel.FaceUnknown

    @property
    def size(self) -> int:
        return self.width * self.height * self.depth // 8

    def to_array(self) -> np.ndarray:
        """Pixels as ``uint8`` of shape (height, width) for depth 8 or (height, width, 3) RGB.

        Raises ValueError when the buffer does not hold exactly ``size`` bytes.
        """
        if self.depth not in (8, 24):
            raise ValueError(f"image depth {self.depth} is neither 8 nor 24")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size {self.width}x{self.height} is empty")
        if len(self.data) != self.size:
            raise ValueError(f"image buffer holds {len(self.data)} bytes, expected {self.size}")
        a = np.frombuffer(self.data, dtype=np.uint8)
        if self.depth == 8:
            return a.reshape(self.height, self.width)
        return a.reshape(self.height, self.width, 3)

    @classmethod
    def from_array(cls, pixels: np.ndarray, description: ImageLabel = ImageLabel.FaceUnknown) -> "Image":
        """From ``uint8`` pixels, (h, w) grey or (h, w, 3) RGB."""
        pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
        if pixels.ndim == 2:
            depth = 8
        elif pixels.ndim == 3 and pixels.shape[2] == 3:
            depth = 24
        else:
            raise ValueError(f"pixels of shape {pixels.shape} are neither grey nor RGB")
        return cls(pixels.shape[1], pixels.shape[0], depth, pixels.tobytes(), description)


@dataclass(frozen=True)
class EyePair:
    """Eye centres in the original image's pixels.

    NIST's convention: the *left* eye is the subject's left eye, which appears on the right-hand
    side of a frontal photograph (larger x); the right eye has the smaller x.
    """

    is_left_assigned: bool = False
    is_right_assigned: bool = False
    xleft: int = 0
    yleft: int = 0
    xright: int = 0
    yright: int = 0


@dataclass
class TemplateResult:
    """What ``create_face_template`` returns: a status, the template bytes, one EyePair per image."""

    status: ReturnStatus
    template: bytes
    eyes: list[EyePair] = field(default_factory=list)


@dataclass
class MatchResult:
    """What ``match_templates`` returns: a status and a similarity (>= 0, higher = more alike;
    -1 when either template is a failed one)."""

    status: ReturnStatus
    similarity: float


@runtime_checkable
class Implementation(Protocol):
    """NIST's ``Interface`` for 1:1 verification, in Python.

    ``initialize`` is called once, before worker processes are forked, with a read-only directory.
    No exception may cross any of these calls.
    """

    def initialize(self, config_dir: str) -> ReturnStatus: ...

    def create_face_template(self, images: Sequence[Image], role: TemplateRole) -> TemplateResult: ...

    def match_templates(self, verif_template: bytes, enroll_template: bytes) -> MatchResult: ...


DEFAULT_IMPLEMENTATION = "implementation:FaceVerifier"


def load_implementation(spec: str = DEFAULT_IMPLEMENTATION) -> Implementation:
    """Instantiate an implementation named ``module:attribute`` (a class or zero-argument factory).

    Raises ValueError with the name when it cannot be imported or does not have the three calls.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"implementation {spec!r} is not of the form module:attribute")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module {module_name!r} of implementation {spec!r}: {exc}") from exc
    try:
        factory = getattr(module, attr)
    except AttributeError as exc:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r}") from exc
    obj = factory()
    missing = [
        m for m in ("initialize", "create_face_template", "match_templates") if not callable(getattr(obj, m, None))
    ]
    if missing:
        raise ValueError(f"implementation {spec!r} lacks {', '.join(missing)}")
    return obj
