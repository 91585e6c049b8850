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
        raise TemplateFormatError(
            f"template made by another model (fingerprint {fingerprint.hex()}, expected {model_fingerprint.hex()})"
        )
    if flags & FLAG_NO_FACE:
        if dim != 0:
            raise TemplateFormatError("no-face template carries an embedding")
        return Template(None, 0, fingerprint)
    if dim == 0:
        raise TemplateFormatError("template has an empty embedding")
    embedding = np.frombuffer(data, dtype="<f4", count=dim, offset=_HEADER.size).astype(np.float32)
    return Template(embedding, n_faces, fingerprint)


SIMILARITY = "cosine-q24"
"""The declared similarity of the embeddings (see :func:`similarity_matrix`); stores record it."""

QUANTUM_BITS = 24
"""Embedding components are taken on a grid of ``2**-24`` before the dot product."""


def quantise(embeddings: np.ndarray) -> np.ndarray:
    """Unit embeddings (n, d) -> integers ``round(x * 2**24)`` held exactly in float64, shape (n, d).

    Every product and every partial sum of a dot product of two such rows is an integer below
    ``2**53`` in magnitude (Cauchy-Schwarz: at most ``|qa| |qb|``, about ``2**48`` for unit vectors), so
    float64 arithmetic computes the dot product exactly in any order: a BLAS matrix product, a
    scalar loop and any blocking give the same bits.

    Raises ValueError when a row's norm exceeds 4 (the exactness bound would not hold).
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (n, d), got shape {x.shape}")
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    if norms.size and not np.all(norms <= 4.0):
        i = int(np.flatnonzero(~(norms <= 4.0))[0])
        raise ValueError(f"embedding {i} has norm {norms[i]:.6g}; the similarity is exact for norms up to 4")
    return np.rint(x * 2.0**QUANTUM_BITS)


def similarity_matrix(qa: np.ndarray, qb: np.ndarray) -> np.ndarray:
    """Similarities of every row of ``qa`` (n, d) with every row of ``qb`` (m, d), float32 (n, m).

    ``qa``, ``qb`` come from :func:`quantise`. The similarity is ``(1 + cos) / 2`` clipped to [0, 1],
    higher = more alike, with ``cos`` the exact dot product of the quantised embeddings times
    ``2**-48``, rounded once to float32. The result does not depend on how the product is blocked.
    """
    s = qa @ qb.T  # exact: see quantise
    s *= 2.0 ** (-2 * QUANTUM_BITS)  # exact: a power of two
    s += 1.0
    s *= 0.5
    np.clip(s, 0.0, 1.0, out=s)
    return s.astype(np.float32)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Similarity of two unit embeddings (d,): ``(1 + cos) / 2`` in [0, 1], higher = more alike, symmetric.

    The float32 value :func:`similarity_matrix` gives for the pair, as a Python float. It is a
    monotone function of the Euclidean distance ``d`` of unit vectors (``similarity = 1 - d**2 / 4``).

    >>> similarity(np.array([1.0, 0.0]), np.array([1.0, 0.0]))
    1.0
    """
    return float(similarity_matrix(quantise(np.reshape(a, (1, -1))), quantise(np.reshape(b, (1, -1))))[0, 0])


@dataclass(frozen=True)
class VectorForm:
    """How to read this implementation's templates as fixed-length vectors and compare them in blocks.

    A template scorer that knows this form computes similarity blocks as matrix products instead
    of calling ``match_templates`` pair by pair, with the same values (:func:`similarity`). It is
    picklable and needs no model: it travels to workers that never load the networks.

    Attributes
    ----------
    model_fingerprint : bytes
        4 bytes; a template of another model is refused.
    dim : int
        Embedding size.
    similarity : str
        The declared similarity (:data:`SIMILARITY`).
    """

    model_fingerprint: bytes
    dim: int
    similarity: str = SIMILARITY

    def header(self) -> dict:
        """What a template store records to check compatibility."""
        return {
            "template_format": f"frvt-template/{FORMAT_VERSION}",
            "model_fingerprint": self.model_fingerprint.hex(),
            "dim": self.dim,
            "similarity": self.similarity,
            "vector_form": f"{__name__}:{type(self).__name__}",
        }

    @classmethod
    def from_header(cls, header: dict) -> "VectorForm":
        fmt = header.get("template_format")
        if fmt != f"frvt-template/{FORMAT_VERSION}":
            raise TemplateFormatError(
                f"template format {fmt!r}, this implementation reads frvt-template/{FORMAT_VERSION}"
            )
        if header.get("similarity") != SIMILARITY:
            raise TemplateFormatError(
                f"declared similarity {header.get('similarity')!r}, this implementation computes {SIMILARITY!r}"
            )
        return cls(bytes.fromhex(header["model_fingerprint"]), int(header["dim"]), SIMILARITY)

    def vectors(self, templates) -> tuple[np.ndarray, np.ndarray]:
        """Templates (sequence of bytes) -> quantised embeddings (n, dim) float64 and a has-face mask (n,).

        A no-face template gives a zero row and False. Raises :class:`TemplateFormatError` with the
        template's position for bytes that are not a template of this model and dimension.
        """
        fast = self._vectors_of_well_formed(templates)
        if fast is not None:
            return fast
        q = np.zeros((len(templates), self.dim), np.float64)
        ok = np.zeros(len(templates), bool)
        rows = []
        for i, data in enumerate(templates):
            try:
                t = decode(data, self.model_fingerprint)
                if t.has_face and t.embedding.size != self.dim:
                    raise TemplateFormatError(f"embedding of {t.embedding.size} values, expected {self.dim}")
            except TemplateFormatError as exc:
                err = TemplateFormatError(f"template {i}: {exc}")
                err.index = i
                raise err from None
            if t.has_face:
                rows.append(i)
                q[i] = t.embedding
                ok[i] = True
        if rows:
            q[rows] = quantise(q[rows])
        return q, ok

    def _vectors_of_well_formed(self, templates) -> tuple[np.ndarray, np.ndarray] | None:
        """:meth:`vectors` at once with numpy when every template is a well-formed one of this model
        (a face template of ``dim`` values or a no-face template, checksums right); None otherwise,
        and :meth:`vectors` decodes one by one to name the first bad template."""
        n = len(templates)
        face_len, none_len = _HEADER.size + 4 * self.dim + 4, _HEADER.size + 4
        lens = np.fromiter((len(t) for t in templates), np.int64, count=n)
        face = lens == face_len
        if not np.all(face | (lens == none_len)):
            return None
        q = np.zeros((n, self.dim), np.float64)
        for want, rows, size, flags, dim in (
            (True, np.flatnonzero(face), face_len, 0, self.dim),
            (False, np.flatnonzero(~face), none_len, FLAG_NO_FACE, 0),
        ):
            if not rows.size:
                continue
            raw = np.frombuffer(b"".join(templates[r] for r in rows), np.uint8).reshape(rows.size, size)
            head = np.frombuffer(_HEADER.pack(MAGIC, FORMAT_VERSION, flags, 0, dim, self.model_fingerprint), np.uint8)
            fields = np.r_[0:8, 10:16]  # every header byte but the number of faces
            if not (raw[:, fields] == head[fields]).all():
                return None
            crc = raw[:, -4:].copy().view("<u4").ravel()
            if any(zlib.crc32(raw[k, :-4].tobytes()) != crc[k] for k in range(rows.size)):
                return None
            if want:
                q[rows] = raw[:, _HEADER.size : -4].copy().view("<f4")
        ok = face
        if ok.any():
            q[ok] = quantise(q[ok])
        return q, ok

    def similarity_matrix(self, qa: np.ndarray, qb: np.ndarray) -> np.ndarray:
        """See :func:`similarity_matrix`."""
        return similarity_matrix(qa, qb)
