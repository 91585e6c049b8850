"""frvt lfw: View-2 from a template store equals View-2 from templates made by the run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scale_fixtures import PEOPLE, make_image_folder
from typer.testing import CliRunner

from frvt.cli import app
from frvt.enroll import enroll
from frvt.lfw import run_lfw


@pytest.fixture(scope="module")
def small_lfw(shared_data, default_config_dir, tmp_path_factory):
    """An LFW folder of 10 people x 2 images, a 10-fold pairs.txt (one matched and one mismatched
    pair per fold), and a template store of its images."""
    data = tmp_path_factory.mktemp("lfw")
    make_image_folder(shared_data / "lfw", data / "lfw-deepfunneled", per_person=2)
    two = [p for p in PEOPLE if len(list((data / "lfw-deepfunneled" / p).glob("*.jpg"))) >= 2]
    lines = ["10 1"]
    for k in range(10):
        name, other = two[k % len(two)], two[(k + 1) % len(two)]
        lines += [f"{name}\t1\t2", f"{name}\t1\t{other}\t2"]
    (data / "pairs.txt").write_text("\n".join(lines) + "\n")
    store = tmp_path_factory.mktemp("store") / "lfw.h5"
    enroll(data / "lfw-deepfunneled", store, config_dir=default_config_dir, workers=1, progress=False)
    return data, store


def test_view2_from_a_store_equals_view2_from_made_templates(small_lfw, default_config_dir, tmp_path):
    data, store = small_lfw
    made = run_lfw(data, config_dir=default_config_dir, cache_dir=tmp_path / "cache", workers=1, progress=False)
    r = CliRunner().invoke(
        app, ["lfw", "--data-dir", str(data), "--store", str(store), "--json", str(tmp_path / "s.json")]
    )
    assert r.exit_code == 0, r.output
    stored = json.loads((tmp_path / "s.json").read_text())
    for key in ("mean_accuracy", "std_accuracy", "fold_accuracies", "tar_at_far_1e-3", "failed_comparisons"):
        np.testing.assert_equal(stored[key], made[key], err_msg=key)  # TAR at 1e-3: NaN on 10 impostors
    assert stored["n_images"] == made["n_images"] >= 18
    assert stored["template_store"] == str(store) and stored["images_per_second"] is None
    assert stored["failures_to_enrol_count"] == made["failures_to_enrol_count"]


def test_a_store_without_an_image_of_the_protocol_or_of_another_implementation_is_refused(small_lfw, tmp_path):
    data, store = small_lfw
    other = tmp_path / "lfw"
    other.mkdir()
    (other / "lfw-deepfunneled").symlink_to(data / "lfw-deepfunneled")
    (other / "pairs.txt").write_text(
        (data / "pairs.txt").read_text().replace(f"{PEOPLE[1]}\t1\t2", f"{PEOPLE[1]}\t1\t9")
    )
    with pytest.raises(ValueError, match=f"no template for 1 LFW images, e.g. '{PEOPLE[1]}_0009'"):
        run_lfw(other, store=store, progress=False)
    with pytest.raises(ValueError, match="not by mypkg:Other"):
        run_lfw(data, "mypkg:Other", store=store, progress=False)
