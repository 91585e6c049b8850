"""Template stores: one HDF5 file of templates made by one implementation, for scoring at scale.

Layout (schema ``frvt.templates/1``)::

    attrs   schema, implementation ("module:Attr"), implementation_version, config_dir, role,
            header (JSON: what the templates are, e.g. the model fingerprint, the vector form and
            its declared similarity; two stores compare only when their headers are equal)
    id        (n,) str     template ids, unique, in input order
    identity  (n,) str     the subject of each image
    image     (n,) str     the image path as given
    code      (n,) int16   the create_face_template return code; -1 = not made yet
    template  (n,) vlen uint8   the template bytes (empty until made)
    ms        (n,) float32 milliseconds spent in create_face_template
    info      (n,) str     the implementation's or the harness's explanation of a failure

Why HDF5 and not Zarr: h5py is already a dependency, a store is one file that moves as one (a
million 532-byte templates are 0.5 GB), and one writer (the enrolling client) suffices because
workers send templates back rather than write them. Writes go in batches, each one opened, written
and closed, so a killed run leaves at most the batch being written unrecorded; ``code == -1`` marks
what is still to do and a new run continues from there. Scoring opens the file read-only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

SCHEMA = "frvt.templates/1"
NOT_MADE = -1


class StoreError(ValueError):
    """A template store that cannot be used: names the file, and the template or dataset."""

    def __init__(self, path: str | os.PathLike, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = str(path)


@dataclass(frozen=True)
class StoreInfo:
    """What a store holds, without its templates.

    Attributes
    ----------
    path : Path
    ids, identities, images : numpy.ndarray of str, shape (n,)
    codes : numpy.ndarray of int16, shape (n,)
        Return codes; ``NOT_MADE`` (-1) for templates still to make.
    implementation, implementation_version, config_dir, role : str
    header : dict
        The template header (compatibility key).
    """

    path: Path
    ids: np.ndarray
    identities: np.ndarray
    images: np.ndarray
    codes: np.ndarray
    implementation: str
    implementation_version: str
    config_dir: str
    role: str
    header: dict

    @property
    def n(self) -> int:
        return int(self.codes.size)

    def without_names(self) -> StoreInfo:
        """This information without the ids, identities and image names (None): what a worker that
        computes comparisons needs, a few bytes a template instead of a few hundred."""
        return replace(self, ids=None, identities=None, images=None)

    @property
    def n_made(self) -> int:
        return int(np.count_nonzero(self.codes != NOT_MADE))

    @property
    def complete(self) -> bool:
        return self.n_made == self.n

    def vector_form(self):
        """The header's vector form (an object with ``vectors`` and ``similarity_matrix``), or None."""
        spec = self.header.get("vector_form")
        if not spec:
            return None
        import importlib

        module, _, attr = spec.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
            return cls.from_header(self.header)
        except (ImportError, AttributeError) as exc:
            raise StoreError(self.path, f"cannot load the vector form {spec!r} its header names: {exc}") from None
        except (ValueError, KeyError) as exc:
            raise StoreError(self.path, f"header {self.header}: {exc}") from None


def _str(a) -> np.ndarray:
    return np.array([x.decode() if isinstance(x, bytes) else str(x) for x in a], dtype=object)


def create_store(
    path: str | os.PathLike,
    ids: Sequence[str],
    identities: Sequence[str],
    images: Sequence[str],
    *,
    implementation: str,
    implementation_version: str,
    config_dir: str,
    role: str,
    header: dict,
) -> None:
    """Write an empty store (every template still to make); atomically replaces nothing that exists."""
    import h5py

    path = Path(path)
    if path.exists():
        raise StoreError(path, "exists already")
    if len(set(ids)) != len(ids):
        seen = set()
        dup = next(i for i in ids if i in seen or seen.add(i))
        raise StoreError(path, f"duplicate template id {dup!r}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    n = len(ids)
    text = h5py.string_dtype()
    with h5py.File(tmp, "w") as f:
        f.attrs.update(
            schema=SCHEMA,
            implementation=implementation,
            implementation_version=implementation_version,
            config_dir=str(config_dir),
            role=role,
            header=json.dumps(header, sort_keys=True),
        )
        f.create_dataset("id", data=np.array(ids, dtype=object), dtype=text)
        f.create_dataset("identity", data=np.array(identities, dtype=object), dtype=text)
        f.create_dataset("image", data=np.array(images, dtype=object), dtype=text)
        f.create_dataset("code", data=np.full(n, NOT_MADE, np.int16), chunks=(min(max(n, 1), 1 << 16),))
        f.create_dataset("template", shape=(n,), dtype=h5py.vlen_dtype(np.uint8), chunks=(min(max(n, 1), 4096),))
        f.create_dataset("ms", data=np.full(n, np.nan, np.float32))
        f.create_dataset("info", shape=(n,), dtype=text)
    os.replace(tmp, path)


def _open(path: Path, mode: str = "r"):
    import h5py

    if not path.is_file():
        raise StoreError(path, "no such template store")
    try:
        f = h5py.File(path, mode)
    except OSError as exc:
        raise StoreError(path, f"not a readable HDF5 template store ({exc})") from None
    if f.attrs.get("schema") != SCHEMA:
        schema = f.attrs.get("schema")
        f.close()
        raise StoreError(path, f"schema {schema!r}, expected {SCHEMA!r}")
    return f


def read_store_info(path: str | os.PathLike) -> StoreInfo:
    """The store's ids, identities, codes and header; raises StoreError naming what is wrong."""
    path = Path(path)
    f = _open(path)
    with f:
        try:
            for name in ("id", "identity", "image", "code", "template", "ms", "info"):
                if name not in f:
                    raise StoreError(path, f"dataset {name!r} missing")
            n = f["id"].shape[0]
            for name in ("identity", "image", "code", "template"):
                if f[name].shape != (n,):
                    raise StoreError(path, f"dataset {name!r} has shape {f[name].shape}, expected ({n},)")
            info = StoreInfo(
                path,
                _str(f["id"][:]),
                _str(f["identity"][:]),
                _str(f["image"][:]),
                f["code"][:].astype(np.int16),
                str(f.attrs.get("implementation", "")),
                str(f.attrs.get("implementation_version", "")),
                str(f.attrs.get("config_dir", "")),
                str(f.attrs.get("role", "")),
                json.loads(f.attrs.get("header", "{}")),
            )
        except OSError as exc:
            raise StoreError(path, f"unreadable ({exc})") from None
        except json.JSONDecodeError as exc:
            raise StoreError(path, f"header is not JSON ({exc})") from None
    return info


def write_results(
    path: str | os.PathLike,
    rows: np.ndarray,
    codes: np.ndarray,
    templates: Sequence[bytes],
    ms: np.ndarray,
    infos: Sequence[str],
) -> None:
    """Record made templates at ``rows``; the code is written last, so a row counts as made only
    once its template is in the file."""
    path = Path(path)
    order = np.argsort(rows)
    rows = np.asarray(rows)[order]
    f = _open(path, "r+")
    with f:
        t = f["template"]
        for r, k in zip(rows, order):
            t[int(r)] = np.frombuffer(templates[k], np.uint8)
        f["ms"][rows] = np.asarray(ms, np.float32)[order]
        f["info"][rows] = np.array([infos[k] for k in order], dtype=object)
        f["code"][rows] = np.asarray(codes, np.int16)[order]


def read_templates(path: str | os.PathLike, start: int, stop: int) -> list[bytes]:
    """Template bytes of rows ``start:stop``; raises StoreError naming the rows on a corrupt chunk."""
    path = Path(path)
    f = _open(path)
    with f:
        try:
            return [bytes(a) for a in f["template"][start:stop]]
        except (OSError, KeyError) as exc:
            raise StoreError(path, f"templates {start}..{stop - 1} unreadable ({exc})") from None


def check_compatible(a: StoreInfo, b: StoreInfo) -> None:
    """Raise StoreError unless two stores' templates can be compared (same implementation and header)."""
    if a.header != b.header:
        keys = sorted(k for k in set(a.header) | set(b.header) if a.header.get(k) != b.header.get(k))
        detail = ", ".join(f"{k}: {a.header.get(k)!r} vs {b.header.get(k)!r}" for k in keys)
        raise StoreError(b.path, f"templates not comparable with {a.path} ({detail})")
    if (a.implementation, a.implementation_version) != (b.implementation, b.implementation_version):
        raise StoreError(
            b.path,
            f"made by {b.implementation} ({b.implementation_version}), {a.path} by "
            f"{a.implementation} ({a.implementation_version})",
        )
