"""The NIST FRVT (FRTE) 1:1 contract, mirroring ``frvt_structs.h`` 3.1 and ``frvt11.h`` 6.0.

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


#: The versions of NIST's headers this contract mirrors: ``frvt11.h`` (API) and ``frvt_structs.h``.
#: NIST's driver refuses a library compiled with any other pair.
API_MAJOR_VERSION, API_MINOR_VERSION = 6, 0
FRVT_STRUCTS_MAJOR_VERSION, FRVT_STRUCTS_MINOR_VERSION = 3, 1


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
    """A return code with an optional free-text explanation.

    As in NIST's struct, a status made without a code is ``UnknownError``: success is said
    explicitly, ``ReturnStatus(ReturnCode.Success)``.
    """

    code: ReturnCode = ReturnCode.UnknownError
    info: str = ""

    @property
    def ok(self) -> bool:
        return self.code == ReturnCode.Success


SUCCESS = ReturnStatus(ReturnCode.Success)


class TemplateRole(enum.IntEnum):
    """``FRVT::TemplateRole``: what a template is made for (the 1:N roles exist in the header too)."""

    Enrollment_11 = 0
    Verification_11 = 1
    Enrollment_1N = 2
    Search_1N = 3


class ImageDescription(enum.IntEnum):
    """``Image::ImageDescription``: what kind of photograph an image is (structs 3.1)."""

    FaceUnknown = 0
    FaceIso = 1
    FaceMugshot = 2
    FacePhotojournalism = 3
    FaceWild = 4
    IrisUnknown = 5
    IrisNIR = 6
    IrisWild = 7


#: The name used by earlier versions of this module.
ImageLabel = ImageDescription


class Illuminant(enum.IntEnum):
    """``Image::Illuminant``: the light the image was taken in."""

    Unspecified = 0
    Visible = 1
    NIR = 2
    SWIR = 3
    MWIR = 4
    LWIR = 5


class IrisLR(enum.IntEnum):
    """``Image::IrisLR``: which iris (not applicable to face images)."""

    Unspecified = 0
    RightIris = 1
    LeftIris = 2


@dataclass(frozen=True)
class Image:
    """An image as NIST hands it over: row-major pixels, RGB interleaved when ``depth`` is 24.

    Defaults are NIST's (``Image()``): 0 x 0, depth 24, FaceUnknown, illuminant and iris side
    unspecified.

    Parameters
    ----------
    width, height : int
        Size in pixels (``uint16`` in NIST's struct: at most 65535).
    depth : int
        Bits per pixel: 8 (grey) or 24 (RGB, in that channel order).
    data : bytes
        ``width * height * depth / 8`` bytes.
    description : ImageDescription
    illuminant : Illuminant
    iris_lr : IrisLR
    """

    width: int = 0
    height: int = 0
    depth: int = 24
    data: bytes = b""
    description: ImageDescription = ImageDescription.FaceUnknown
    illuminant: Illuminant = Illuminant.Unspecified
    iris_lr: IrisLR = IrisLR.Unspecified

    @property
    def size(self) -> int:
        return self.width * self.height * (self.depth // 8)

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
    def from_array(
        cls,
        pixels: np.ndarray,
        description: ImageDescription = ImageDescription.FaceUnknown,
        illuminant: Illuminant = Illuminant.Unspecified,
    ) -> "Image":
        """From ``uint8`` pixels, (h, w) grey or (h, w, 3) RGB."""
        pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
        if pixels.ndim == 2:
            depth = 8
        elif pixels.ndim == 3 and pixels.shape[2] == 3:
            depth = 24
        else:
            raise ValueError(f"pixels of shape {pixels.shape} are neither grey nor RGB")
        return cls(pixels.shape[1], pixels.shape[0], depth, pixels.tobytes(), description, illuminant)


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


@dataclass(frozen=True)
class IrisAnnulus:
    """``FRVT::IrisAnnulus``: limbus centre and pupil / limbus radii in pixels (iris templates)."""

    limbus_center_x: int = 0
    limbus_center_y: int = 0
    pupil_radius: int = 0
    limbus_radius: int = 0


@dataclass
class MultiTemplateResult:
    """What the multi-person ``create_face_templates`` returns: one template and one EyePair per
    person found in the image (at least one template: a failed one when nobody was found)."""

    status: ReturnStatus
    templates: list[bytes] = field(default_factory=list)
    eyes: list[EyePair] = field(default_factory=list)


@dataclass
class IrisTemplateResult:
    """What ``create_iris_template`` returns; face implementations return ``NotImplemented``."""

    status: ReturnStatus
    template: bytes = b""
    iris_locations: list[IrisAnnulus] = field(default_factory=list)


@dataclass
class MatchResult:
    """What ``match_templates`` returns: a status and a similarity (>= 0, higher = more alike;
    -1 when either template is a failed one)."""

    status: ReturnStatus
    similarity: float


@runtime_checkable
class Implementation(Protocol):
    """NIST's ``FRVT_11::Interface`` in Python.

    ``initialize`` is called once per worker process, with a read-only directory whose name the
    harness chooses, before any other call. No exception may cross any of these calls.

    NIST's interface has two ``createFaceTemplate`` overloads; here they have two names:

    - ``create_face_template(images, role)``: one person, one or more images; one template and
      one EyePair per image.
    - ``create_face_templates(image, role)``: one image, every person in it; one template and one
      EyePair per person (optional here: a missing method is treated as returning
      ``NotImplemented``, which NIST's run treats as fatal).

    ``create_iris_template(images, role)`` is optional (NIST's header requires a face library to
    define it and return ``NotImplemented``; the 1:1 face validation never calls it).

    Optional attributes the harness reads after ``initialize``: ``version`` (for
    ``doc/version.txt``), ``organization`` (the package name), ``library_path`` (the core shared
    library a native adapter runs: makes the package submittable), ``last_call_seconds`` (the
    duration of the last call as the implementation measured it, preferred to the harness's clock
    so that an adapter's own overhead is not charged).
    """

    def initialize(self, config_dir: str) -> ReturnStatus: ...

    def create_face_template(self, images: Sequence[Image], role: TemplateRole) -> TemplateResult: ...

    def match_templates(self, verif_template: bytes, enroll_template: bytes) -> MatchResult: ...


REQUIRED_CALLS = ("initialize", "create_face_template", "match_templates")
DEFAULT_IMPLEMENTATION = "implementation:FaceVerifier"


@dataclass(frozen=True)
class ImplementationSpec:
    """How to make an implementation object: a factory named ``module:attribute`` and its keyword
    arguments. Picklable, so that a worker process can build its own object from it.

    >>> ImplementationSpec.parse("implementation:FaceVerifier").factory
    'implementation:FaceVerifier'
    """

    factory: str = DEFAULT_IMPLEMENTATION
    kwargs: tuple[tuple[str, object], ...] = ()

    @classmethod
    def parse(cls, spec: "str | ImplementationSpec", **kwargs) -> "ImplementationSpec":
        if isinstance(spec, ImplementationSpec):
            return spec if not kwargs else cls(spec.factory, tuple(sorted({**dict(spec.kwargs), **kwargs}.items())))
        return cls(str(spec), tuple(sorted(kwargs.items())))

    def __str__(self) -> str:
        if not self.kwargs:
            return self.factory
        return f"{self.factory}({', '.join(f'{k}={v!r}' for k, v in self.kwargs)})"


def resolve_factory(spec: "str | ImplementationSpec"):
    """The callable named by ``spec``; raises ValueError naming what is wrong."""
    spec = ImplementationSpec.parse(spec)
    module_name, sep, attr = spec.factory.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"implementation {spec.factory!r} is not of the form module:attribute")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module {module_name!r} of implementation {spec.factory!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r}") from exc


def load_implementation(spec: "str | ImplementationSpec" = DEFAULT_IMPLEMENTATION) -> Implementation:
    """Instantiate an implementation: ``module:attribute`` (a class or factory, called with no
    arguments) or an :class:`ImplementationSpec` (called with its keyword arguments).

    Raises ValueError with the name when it cannot be imported or does not have the three calls.
    """
    spec = ImplementationSpec.parse(spec)
    obj = resolve_factory(spec)(**dict(spec.kwargs))
    missing = [m for m in REQUIRED_CALLS if not callable(getattr(obj, m, None))]
    if missing:
        raise ValueError(f"implementation {spec} lacks {', '.join(missing)}")
    return obj
