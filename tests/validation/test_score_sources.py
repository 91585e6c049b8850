"""validation.score_sources: file sources equal the array, failure masks, bad values named by file
and index, the HDF5 score writer."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from validation import metrics as M
from validation import score_sources
from validation import streaming as S

TARGETS = (1e-4, 1e-3, 1e-2, 0.1, 0.29)

pytestmark = pytest.mark.usefixtures("quiet_metric_warnings")


def test_file_sources_equal_array(tmp_path):
    rng = np.random.default_rng(2)
    gen = rng.normal(2, 1, 500).astype(np.float32)
    imp = rng.normal(0, 1, 50_000).astype(np.float32)
    raw = tmp_path / "imp.f32"
    imp.tofile(raw)
    npy = tmp_path / "imp.npy"
    np.save(npy, imp)
    h5 = tmp_path / "s.h5"
    with score_sources.HDF5ScoreWriter(h5) as w:
        w.append("genuine", gen)
        for part in np.array_split(imp, 7):
            w.append("impostor", part)
    want = S.evaluate(gen, imp, TARGETS)
    for src in (
        score_sources.open_scores(raw),
        score_sources.open_scores(npy),
        score_sources.open_scores(h5, "impostor"),
        score_sources.RawScores(raw),
    ):
        assert len(src) == imp.size
        ev = S.evaluate(gen, src, TARGETS, chunk_size=4096)
        assert ev.operating_points == want.operating_points and ev.eer == want.eer
    f64 = tmp_path / "imp.f64"
    imp.astype(np.float64).tofile(f64)
    want64 = M.fnmr_at_fmr(gen, imp.astype(float), TARGETS)
    assert S.evaluate(gen, score_sources.open_scores(f64), TARGETS).operating_points == want64


def test_hdf5_failed_dataset_marks_failures(tmp_path):
    rng = np.random.default_rng(3)
    imp = rng.normal(0, 1, 4000).astype(np.float32)  # the writer stores float32
    failed = rng.random(4000) < 0.1
    imp_stored = np.where(failed, -1.0, imp)
    h5 = tmp_path / "s.h5"
    with score_sources.HDF5ScoreWriter(h5, with_failed=True) as w:
        w.append("genuine", [3.0, 2.0])
        w.append("impostor", imp_stored, failed=failed)
    ev = S.evaluate([3.0, 2.0], score_sources.HDF5Scores(h5, "impostor", "impostor_failed"), TARGETS)
    assert ev.operating_points == M.fnmr_at_fmr([3.0, 2.0], imp, TARGETS, impostor_failed=failed)
    assert ev.n_impostor_failed == failed.sum()


def test_bad_values_in_files_name_position(tmp_path):
    x = np.arange(10, dtype=np.float32)
    x[7] = np.nan
    raw = tmp_path / "bad.f32"
    x.tofile(raw)
    with pytest.raises(score_sources.ScoreFileError, match=r"bad.f32, index 7.*nan") as e:
        S.evaluate([1.0], score_sources.RawScores(raw), (0.1,))
    assert e.value.position == 7 and isinstance(e.value, ValueError)
    h5 = tmp_path / "bad.h5"
    with h5py.File(h5, "w") as f:
        f["impostor"] = np.array([0.1, np.inf, 0.3])
    with pytest.raises(score_sources.ScoreFileError, match=r"bad.h5:impostor, index 1.*inf"):
        S.evaluate([1.0], score_sources.HDF5Scores(h5, "impostor"), (0.5,))
    with pytest.raises(score_sources.ScoreFileError, match="dataset missing"):
        score_sources.HDF5Scores(h5, "genuine")
    odd = tmp_path / "odd.f32"
    odd.write_bytes(b"\x00" * 7)
    with pytest.raises(score_sources.ScoreFileError, match="multiple of 4"):
        score_sources.RawScores(odd)
    with pytest.raises(M.ScoreError, match="index 1"):
        S.evaluate([1.0], np.array([0.0, np.nan]), (0.5,))


def test_writer_validates_lengths(tmp_path):
    with score_sources.HDF5ScoreWriter(tmp_path / "w.h5", with_subjects=True) as w:
        with pytest.raises(ValueError, match="subject"):
            w.append("genuine", [1.0])
        with pytest.raises(ValueError, match="1 values for 2 scores"):
            w.append("genuine", [1.0, 2.0], subjects=[1])
        w.append("impostor", [0.5, 0.1], subjects=[3, 4])
    with h5py.File(tmp_path / "w.h5") as f:
        assert f.attrs["schema"] == "frvt.scores/1" and list(f["impostor_subject"][:]) == [3, 4]
