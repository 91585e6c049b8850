"""Score sources: comparison scores read chunk by chunk (an in-memory array, a headerless float32
or float64 file, a ``.npy`` file, an HDF5 dataset), never loaded whole, and the HDF5 score file
writer. A file source names the file and the index of a non-finite score."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np

from validation.metrics import ScoreError, prepare_scores


DEFAULT_CHUNK = 1 << 18
"""Scores per chunk (1 MiB of float32: small enough to stay in cache while it is binned)."""


class ScoreFileError(ScoreError):
    """A score file that cannot be used: names the file, the line (text) or index (binary), the value."""


class ScoreSource(Protocol):
    """A one-dimensional array of scores read chunk by chunk.

    ``chunks`` yields ``(offset, values)`` with ``values`` a float32 or float64 array in the
    caller's units (similarities or distances). NaN marks a failed comparison (a non-match at every
    threshold); a file source raises :class:`ScoreFileError` on a NaN or infinite value in the file
    itself, so NaN appears only where a failure mask put it.
    """

    name: str
    dtype: np.dtype

    def __len__(self) -> int: ...

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[tuple[int, np.ndarray]]: ...


def _check_finite(values: np.ndarray, offset: int, name: str, allowed: np.ndarray | None = None) -> None:
    bad = ~np.isfinite(values)
    if allowed is not None:
        bad &= ~allowed
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ScoreFileError(name, offset + i, values[i], "score is not finite")


class ArrayScores:
    """An in-memory array as a score source (no validation: use :func:`source_from_array`).

    Parameters
    ----------
    values : numpy.ndarray, shape (n,)
        float32 or float64 scores in the caller's units, NaN for failures (other numbers become
        float64), or subject ids.
    name : str
    """

    def __init__(self, values: np.ndarray, name: str = "array") -> None:
        v = np.asarray(values)
        if v.ndim != 1:
            raise ScoreError(name, None, f"shape {v.shape}", "scores must be one-dimensional")
        if v.dtype.kind in "biuf" and v.dtype not in (np.float32, np.float64):
            v = v.astype(np.float64) if v.dtype.kind == "f" else v
        self.values = v
        self.name = name
        self.dtype = v.dtype

    def __len__(self) -> int:
        return int(self.values.size)

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, self.values.size, chunk_size):
            yield start, self.values[start : start + chunk_size]


class RawScores:
    """A headerless little-endian file of float32 (default) or float64 scores, read with plain reads.

    Parameters
    ----------
    path : path-like
    dtype : "float32" or "float64"
    """

    def __init__(self, path: str | os.PathLike, dtype: str = "float32") -> None:
        self.path = Path(path)
        self.name = str(self.path)
        self.dtype = np.dtype(dtype).newbyteorder("<")
        if self.dtype.kind != "f":
            raise ValueError(f"raw score files hold floats, not {dtype}")
        self._offset = 0
        size = self.path.stat().st_size
        if size % self.dtype.itemsize:
            raise ScoreFileError(
                self.name, None, f"{size} bytes", f"file size is not a multiple of {self.dtype.itemsize} ({self.dtype})"
            )
        self._n = size // self.dtype.itemsize

    def __len__(self) -> int:
        return self._n

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[tuple[int, np.ndarray]]:
        buf = np.empty(min(chunk_size, max(self._n, 1)), dtype=self.dtype)
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            start = 0
            while start < self._n:
                want = min(chunk_size, self._n - start)
                view = buf[:want]
                got = fh.readinto(memoryview(view).cast("B"))
                if got != want * self.dtype.itemsize:
                    raise ScoreFileError(self.name, start, f"{got} bytes", "file shorter than expected")
                values = view.astype(self.dtype.newbyteorder("="), copy=False)
                _check_finite(values, start, self.name)
                yield start, values
                start += want


class NpyScores(RawScores):
    """A one-dimensional float32/float64 ``.npy`` file, read in chunks after its header."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.name = str(self.path)
        with open(self.path, "rb") as fh:
            try:
                version = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(fh)
            except ValueError as exc:
                raise ScoreFileError(self.name, None, "", f"not a .npy file ({exc})") from None
            self._offset = fh.tell()
        if len(shape) != 1 or dtype.kind != "f" or dtype.itemsize not in (4, 8) or dtype.byteorder == ">":
            raise ScoreFileError(
                self.name,
                None,
                f"shape {shape} dtype {dtype}",
                "expected a one-dimensional little-endian float32 or float64 array",
            )
        self.dtype = dtype
        self._n = int(shape[0])


class HDF5Scores:
    """One-dimensional dataset of an HDF5 file, read by slices (the file is opened per pass).

    Parameters
    ----------
    path : path-like
    dataset : str
        Dataset name, e.g. ``"impostor"``.
    failed_dataset : str, optional
        A boolean dataset of the same length; True marks a failed comparison (its score becomes
        NaN, the failure marker, and is not validated).
    validate : bool
        Check scores are finite (False for id datasets).
    """

    def __init__(
        self, path: str | os.PathLike, dataset: str, failed_dataset: str | None = None, validate: bool = True
    ) -> None:
        import h5py

        self.path = Path(path)
        self.dataset = dataset
        self.failed_dataset = failed_dataset
        self.validate = validate
        self.name = f"{self.path}:{dataset}"
        with h5py.File(self.path, "r") as f:
            if dataset not in f:
                raise ScoreFileError(str(self.path), None, dataset, "dataset missing")
            d = f[dataset]
            if d.ndim != 1:
                raise ScoreFileError(self.name, None, f"shape {d.shape}", "dataset must be one-dimensional")
            self._n = int(d.shape[0])
            if validate and d.dtype.kind not in "fiu":
                raise ScoreFileError(self.name, None, str(d.dtype), "scores must be numbers")
            self.dtype = d.dtype if d.dtype in (np.float32, np.float64) or not validate else np.dtype(np.float64)
            if failed_dataset is not None:
                if failed_dataset not in f:
                    raise ScoreFileError(str(self.path), None, failed_dataset, "dataset missing")
                if f[failed_dataset].shape != d.shape:
                    raise ScoreFileError(
                        f"{self.path}:{failed_dataset}",
                        None,
                        str(f[failed_dataset].shape),
                        f"must have the shape of {dataset} {d.shape}",
                    )

    def __len__(self) -> int:
        return self._n

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[tuple[int, np.ndarray]]:
        import h5py

        with h5py.File(self.path, "r") as f:
            d = f[self.dataset]
            fd = f[self.failed_dataset] if self.failed_dataset is not None else None
            for start in range(0, self._n, chunk_size):
                values = d[start : start + chunk_size]
                if not self.validate:
                    yield start, values
                    continue
                if values.dtype not in (np.float32, np.float64):
                    values = values.astype(np.float64)
                failed = fd[start : start + chunk_size].astype(bool) if fd is not None else None
                _check_finite(values, start, self.name, failed)
                if failed is not None and failed.any():
                    values = values.copy()
                    values[failed] = np.nan
                yield start, values


def open_scores(path: str | os.PathLike, dataset: str | None = None) -> ScoreSource:
    """A source for a binary score file, chosen by extension.

    ``.npy``: a 1-D float array; ``.f32``/``.bin``/``.raw``: headerless float32; ``.f64``: headerless
    float64; ``.h5``/``.hdf5``: the dataset ``dataset``. Text files are read by
    :func:`validation.score.read_score_text`.
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext == ".npy":
        return NpyScores(p)
    if ext in (".f32", ".bin", ".raw"):
        return RawScores(p, "float32")
    if ext == ".f64":
        return RawScores(p, "float64")
    if ext in (".h5", ".hdf5"):
        if dataset is None:
            raise ValueError(f"{p}: name the HDF5 dataset to read")
        return HDF5Scores(p, dataset)
    raise ValueError(f"{p}: unknown binary score file extension {ext!r} (.npy, .f32, .bin, .raw, .f64, .h5)")


def source_from_array(scores, failed=None, *, higher_is_better: bool = True, name: str = "impostor") -> ArrayScores:
    """Validate an in-memory score array and wrap it as a source (failures become NaN).

    Raises :class:`validation.metrics.ScoreError` naming the index of a non-finite score that is
    not marked as failed.
    """
    prepare_scores(scores, failed, higher_is_better=higher_is_better, name=name)  # validation only
    a = np.asarray(scores)
    a = a.astype(np.float32 if a.dtype == np.float32 else np.float64, copy=True)
    if failed is not None:
        a[np.asarray(failed, dtype=bool)] = np.nan
    return ArrayScores(a, name)


class HDF5ScoreWriter:
    """Append genuine and impostor scores (and subject ids) to an HDF5 score file, chunk by chunk.

    The layout :mod:`validation.score` reads: float32 datasets ``genuine`` and ``impostor``;
    optional int64 ``genuine_subject`` / ``impostor_subject`` (one subject id per score, for the
    subject bootstrap; for an impostor pair, the enrolled template's subject); optional boolean
    ``genuine_failed`` / ``impostor_failed``; attribute ``schema = "frvt.scores/1"`` and
    ``direction`` (``"similarity"`` or ``"distance"``).

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "s.h5")
    >>> with HDF5ScoreWriter(p, with_subjects=True) as w:
    ...     w.append("genuine", [0.9, 0.8], subjects=[1, 2])
    ...     w.append("impostor", [0.1], subjects=[1])
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        with_subjects: bool = False,
        with_failed: bool = False,
        direction: str = "similarity",
        dtype: str = "float32",
    ) -> None:
        import h5py

        if direction not in ("similarity", "distance"):
            raise ValueError(f"direction must be 'similarity' or 'distance', not {direction!r}")
        self._f = h5py.File(path, "w")
        self._f.attrs["schema"] = "frvt.scores/1"
        self._f.attrs["direction"] = direction
        self.with_subjects = with_subjects
        self.with_failed = with_failed
        for cls in ("genuine", "impostor"):
            self._f.create_dataset(cls, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(1 << 18,))
            if with_subjects:
                self._f.create_dataset(f"{cls}_subject", shape=(0,), maxshape=(None,), dtype="int64", chunks=(1 << 18,))
            if with_failed:
                self._f.create_dataset(f"{cls}_failed", shape=(0,), maxshape=(None,), dtype="bool", chunks=(1 << 18,))

    def append(self, cls: str, scores, subjects=None, failed=None) -> None:
        """Append scores of class ``"genuine"`` or ``"impostor"`` (and their subjects / failure flags)."""
        if cls not in ("genuine", "impostor"):
            raise ValueError(f"class must be 'genuine' or 'impostor', not {cls!r}")
        s = np.asarray(scores).reshape(-1)
        parts = [(cls, s)]
        if self.with_subjects:
            if subjects is None:
                raise ValueError("this file stores subject ids: pass subjects")
            parts.append((f"{cls}_subject", np.asarray(subjects, dtype=np.int64).reshape(-1)))
        if self.with_failed:
            parts.append(
                (
                    f"{cls}_failed",
                    np.zeros(s.size, bool) if failed is None else np.asarray(failed, dtype=bool).reshape(-1),
                )
            )
        for name, a in parts:
            if a.size != s.size:
                raise ValueError(f"{name} has {a.size} values for {s.size} scores")
        for name, a in parts:
            d = self._f[name]
            n0 = d.shape[0]
            d.resize((n0 + a.size,))
            d[n0:] = a

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "HDF5ScoreWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
