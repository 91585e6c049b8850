"""The template's byte layout: versioned, self-checking, with an explicit "no face" template.

Layout (little-endian)::

    offset size  field
    0      4     magic b"FRVT"
    4      2     format version (1)
    6      2     flags: bit 0 = no face (the template of a failed creation)
    8      2     number of faces the embedding was made from
    10     2     embedding dimension d (0 for a no-face template)
    12     4     model fingerprint: first 4 bytes of sha256 of the embedder's ONNX
    16     4*d   the unit-length embedding, float32
    16+4d  4     CRC-32 of every byte before it

float32 rather than float16: the 128-D template is 532 bytes either way small, and float32 loses
nothing. A template of another format version or another model, or one with a flipped bit, is
rejected with :class:`TemplateFormatError`, never misread.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

MAGIC = b"FRVT"
FORMAT_VERSION = 1
FLAG_NO_FACE = 0x1
_HEADER = struct.Struct("<4sHHHH4s")


class TemplateFormatError(ValueError):
    """The bytes are not a template this implementation can read."""


@dataclass(frozen=True)
class Template:
    embedding: np.ndarray | None  # (d,) float32 unit vector; None for a no-face template
    n_faces: int
    model_fingerprint: bytes

    @property
    def has_face(self) -> bool:
        return self.embedding is not None


def encode(embedding: np.ndarray | None, model_fingerprint: bytes, n_faces: int = 1) -> bytes:
    """Template bytes for a unit embedding of shape (d,), or the no-face template when None."""
    if len(model_fingerprint) != 4:
        raise ValueError("the model fingerprint is 4 bytes")
    if embedding is None:
        body = _HEADER.pack(MAGIC, FORMAT_VERSION, FLAG_NO_FACE, 0, 0, model_fingerprint)
    else:
        v = np.asarray(embedding, dtype="<f4").ravel()
        if not np.all(np.isfinite(v)):
            raise ValueError("embedding has non-finite values")
        body = _HEADER.pack(MAGIC, FORMAT_VERSION, 0, n_faces, v.size, model_fingerprint) + v.tobytes()
    return body + struct.pack("<I", zlib.crc32(body))


def decode(data: bytes, model_fingerprint: bytes | None = None) -> Template:
    """Parse template bytes; raises TemplateFormatError naming what is wrong."""
    data = bytes(data)
    if len(data) < _HEADER.size + 4:
        raise TemplateFormatError(f"template of {len(data)} bytes is shorter than the {_HEADER.size + 4}-byte minimum")
    magic, version, flags, n_faces, dim, fingerprint = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise TemplateFormatError(f"not an frvt template (magic {magic!r})")
    if version != FORMAT_VERSION:
        raise TemplateFormatError(f"template format version {version}, this implementation reads {FORMAT_VERSION}")
    expected = _HEADER.size + 4 * dim + 4
    if len(data) != expected:
        raise TemplateFormatError(f"template is {len(data)} bytes, its header says {expected}")
    (crc,) = struct.unpack_from("<I", data, len(data) - 4)
    if crc != zlib.crc32(data[:-4]):
        raise TemplateFormatError("template checksum mismatch (corrupted)")
    if model_fingerprint is not None and fingerprint != model_fingerprint:
        raise TemplateFormatError(f"template made by another model (fingerprint {fingerprint.hex()}, expected {model_fingerprint.hex()})")
    if flags & FLAG_NO_FACE:
        if dim != 0:
            raise TemplateFormatError("no-face template carries an embedding")
        return Template(None, 0, fingerprint)
    if dim == 0:
        raise TemplateFormatError("template has an empty embedding")
    embedding = np.frombuffer(data, dtype="<f4", count=dim, offset=_HEADER.size).astype(np.float32)
    return Template(embedding, n_faces, fingerprint)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Similarity of two unit embeddings: ``(1 + cos) / 2`` in [0, 1], higher = more alike, symmetric.

    It is a monotone function of the Euclidean distance ``d`` of unit vectors
    (``similarity = 1 - d**2 / 4``).

    >>> similarity(np.array([1.0, 0.0]), np.array([1.0, 0.0]))
    1.0
    """
    cos = float(np.dot(a.astype(np.float64), b.astype(np.float64)))
    return min(1.0, max(0.0, (1.0 + cos) / 2.0))
