"""frvt enroll: a real Dask cluster, the default implementation, resuming, bad input."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from scale_fixtures import make_image_folder
from typer.testing import CliRunner

from frvt.cli import app
from frvt.enroll import enroll, folder_entries
from frvt.store import NOT_MADE, StoreError, read_store_info, read_templates


@pytest.fixture(scope="module")
def enrolled(shared_data, default_config_dir, tmp_path_factory):
    folder = make_image_folder(shared_data / "lfw", tmp_path_factory.mktemp("images"), per_person=3)
    store = tmp_path_factory.mktemp("store") / "t.h5"
    report = enroll(folder, store, config_dir=default_config_dir, workers=2, batch=4, progress=False)
    return folder, store, report


def test_enrolment_makes_every_template_and_reports_failures(enrolled):
    folder, store, report = enrolled
    info = read_store_info(store)
    assert info.n == len(folder_entries(folder)) == report.n_images == report.n_made
    assert info.complete and report.workers == 2
    assert info.header["dim"] == 128 and info.header["similarity"] == "cosine-q24"
    bad = [i for i, tid in enumerate(info.ids) if tid.endswith("truncated")]
    assert len(bad) == 1 and info.codes[bad[0]] == 5  # ParseError, named in the failures
    assert [f[0] for f in report.failures] == [info.ids[bad[0]]] and "not a decodable image" in report.failures[0][2]
    assert np.count_nonzero(info.codes == 0) == info.n - 1


def test_enrolment_equals_the_implementation_called_directly(enrolled, face_verifier):
    from frvt.contract import TemplateRole
    from frvt.driver import decode_image

    folder, store, _ = enrolled
    info = read_store_info(store)
    templates = read_templates(store, 0, info.n)
    for k in (0, 7, info.n - 1):
        if info.codes[k] == 0:
            image = decode_image(folder / info.images[k])
            assert face_verifier.create_face_template([image], TemplateRole.Enrollment_11).template == templates[k]


def test_an_interrupted_enrolment_continues_and_loses_nothing(enrolled, default_config_dir, tmp_path):
    folder, store, _ = enrolled
    copy = tmp_path / "t.h5"
    shutil.copy(store, copy)
    with h5py.File(copy, "r+") as f:  # what a run killed after its first batches leaves
        code = f["code"][:]
        code[5:] = NOT_MADE
        f["code"][:] = code
    before = read_templates(copy, 0, 5)
    report = enroll(folder, copy, config_dir=default_config_dir, workers=1, progress=False)
    info = read_store_info(copy)
    assert report.n_made == info.n - 5 and info.complete
    assert read_templates(copy, 0, 5) == before
    assert read_templates(copy, 0, info.n) == read_templates(store, 0, info.n)
    again = enroll(folder, copy, config_dir=default_config_dir, workers=1, progress=False)
    assert again.n_made == 0


def test_a_store_of_other_images_is_refused(enrolled, default_config_dir, tmp_path):
    folder, store, _ = enrolled
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    shutil.rmtree(other / max(p.name for p in other.iterdir()))
    copy = tmp_path / "t.h5"
    shutil.copy(store, copy)
    with pytest.raises(StoreError, match="another image list"):
        enroll(other, copy, config_dir=default_config_dir, workers=1, progress=False)


def test_cli_names_a_missing_source(tmp_path):
    r = CliRunner().invoke(app, ["enroll", str(tmp_path / "nothing"), str(tmp_path / "s.h5"), "--workers", "1"])
    assert r.exit_code == 2 and "no such image list or folder" in r.output


def test_cli_help():
    r = CliRunner().invoke(app, ["enroll", "--help"])
    assert r.exit_code == 0 and "Resumable" in r.output
