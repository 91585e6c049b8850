"""frvt.lfw: the LFW View-2 run on a small LFW-shaped tree made of the bundled MEDS images (people
as folders ``<name>/<name>_NNNN.jpg``, a ``pairs.txt`` of 10 folds), with a real small
implementation in real worker processes: counts, the template cache, and resuming; and View-2
from a template store (``frvt lfw --store``) on real LFW images with the default implementation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import reference_impls
from scale_fixtures import PEOPLE as LFW_PEOPLE
from scale_fixtures import make_image_folder
from typer.testing import CliRunner

from frvt.cli import app
from frvt.enroll import enroll
from frvt.lfw import all_image_ids, image_entries, image_id, pair_ids, run_lfw
from validation.lfw_protocol import read_pairs

ROOT = Path(__file__).resolve().parents[2]
MEDS = ROOT / "data" / "validation" / "images" / "meds"
IMPLEMENTATION = "reference_impls:PixelMatcher"
PEOPLE = ["S001", "S006", "S008", "S015"]  # subjects with three or more images


@pytest.fixture(scope="module")
def lfw_tree(tmp_path_factory) -> Path:
    """``lfw-deepfunneled/`` with four people's MEDS images and a View-2 ``pairs.txt`` of 10 folds,
    one matched and one mismatched pair each; one more person whom no pair names."""
    root = tmp_path_factory.mktemp("lfw")
    images = root / "lfw-deepfunneled"
    for person in PEOPLE:
        (images / person).mkdir(parents=True)
        for n, src in enumerate(sorted((MEDS / person).glob("*.jpg"))[:3], start=1):
            shutil.copyfile(src, images / person / f"{image_id(person, n)}.jpg")
    (images / "S002").mkdir()  # a person no pair names
    shutil.copyfile(MEDS / "S002" / "S002-01-t10_01.jpg", images / "S002" / "S002_0001.jpg")
    lines = ["10 1"]
    for fold in range(10):
        a, b = PEOPLE[fold % 4], PEOPLE[(fold + 1) % 4]
        lines.append(f"{a} {1 + fold % 2} {2 + fold % 2}")
        lines.append(f"{a} {1 + fold % 3} {b} {1 + (fold + 1) % 3}")
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory) -> Path:
    return reference_impls.make_config_dir(tmp_path_factory.mktemp("pixel_config"))


def test_ids_and_entries_follow_lfws_file_names(lfw_tree):
    assert image_id("Abel_Pacheco", 1) == "Abel_Pacheco_0001"
    first = read_pairs(lfw_tree / "pairs.txt")[0]
    assert pair_ids(first) == ("S001_0001", "S001_0002")
    ids = all_image_ids(lfw_tree / "lfw-deepfunneled")
    assert len(ids) == 13 and ids[0] == "S001_0001"
    entry = image_entries(lfw_tree / "lfw-deepfunneled", ["S006_0002"])[0]
    assert entry.identity == "S006" and entry.path.is_file() and entry.path.name == "S006_0002.jpg"


def test_run_counts_the_protocols_pairs_and_caches_one_template_per_image(lfw_tree, config_dir, tmp_path):
    cache = tmp_path / "cache"
    result = run_lfw(lfw_tree, IMPLEMENTATION, config_dir, cache, workers=1, progress=False)
    pairs = read_pairs(lfw_tree / "pairs.txt")
    wanted = {i for p in pairs for i in pair_ids(p)}
    assert (result["n_genuine"], result["n_impostor"]) == (10, 10)
    assert result["n_images"] == len(wanted) == 12  # only the images the pairs name
    assert result["failures_to_enrol_count"] == 0 and result["failed_comparisons"] == 0
    assert len(result["fold_accuracies"]) == 10 and 0.0 <= result["mean_accuracy"] <= 1.0
    assert result["schema"] == "frvt.lfw/1" and result["implementation_version"] == "pixel-matcher 1.0"
    assert {p.stem for p in (cache / "templates" / "enroll").glob("*.tmpl")} == wanted
    records = [json.loads(line) for line in (cache / "templates.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in records) == sorted(wanted) and all(r["code"] == 0 for r in records)


def test_a_killed_run_resumes_and_gives_the_same_numbers(lfw_tree, config_dir, tmp_path):
    cache = tmp_path / "cache"
    first = run_lfw(lfw_tree, IMPLEMENTATION, config_dir, cache, workers=1, progress=False)
    log = cache / "templates.jsonl"
    kept = log.read_text().splitlines()[:3]
    log.write_text("\n".join(kept) + '\n{"id": "S0')  # killed while writing the fourth line
    said: list[str] = []
    again = run_lfw(lfw_tree, IMPLEMENTATION, config_dir, cache, workers=1, progress=False, say=said.append)
    assert f"resuming: 3 templates on disk, {first['n_images'] - 3} to make" in said
    for key in ("mean_accuracy", "std_accuracy", "fold_accuracies", "tar_at_far_1e-3", "n_images"):
        np.testing.assert_equal(again[key], first[key], err_msg=key)  # NaN equals NaN here
    said.clear()
    run_lfw(lfw_tree, IMPLEMENTATION, config_dir, cache, workers=1, progress=False, say=said.append)
    assert f"resuming: {first['n_images']} templates on disk, 0 to make" in said  # the cut line cost nothing


def test_all_images_makes_a_template_for_every_image(lfw_tree, config_dir, tmp_path):
    result = run_lfw(
        lfw_tree, IMPLEMENTATION, config_dir, tmp_path / "cache", workers=1, all_images=True, progress=False
    )
    assert result["n_images"] == 13
    assert len(list((tmp_path / "cache" / "templates" / "enroll").glob("*.tmpl"))) == 13


@pytest.fixture(scope="module")
def small_lfw(shared_data, default_config_dir, tmp_path_factory):
    """An LFW folder of 10 people x 2 images, a 10-fold pairs.txt (one matched and one mismatched
    pair per fold), and a template store of its images."""
    data = tmp_path_factory.mktemp("lfw")
    make_image_folder(shared_data / "lfw", data / "lfw-deepfunneled", per_person=2)
    two = [p for p in LFW_PEOPLE if len(list((data / "lfw-deepfunneled" / p).glob("*.jpg"))) >= 2]
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
        (data / "pairs.txt").read_text().replace(f"{LFW_PEOPLE[1]}\t1\t2", f"{LFW_PEOPLE[1]}\t1\t9")
    )
    with pytest.raises(ValueError, match=f"no template for 1 LFW images, e.g. '{LFW_PEOPLE[1]}_0009'"):
        run_lfw(other, store=store, progress=False)
    with pytest.raises(ValueError, match="not by mypkg:Other"):
        run_lfw(data, "mypkg:Other", store=store, progress=False)
