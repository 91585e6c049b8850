"""All-vs-all and gallery-vs-probe scoring of real template stores, against the materialised scores."""

from __future__ import annotations

import json
import math
import shutil
import struct
import zlib

import h5py
import numpy as np
import pytest
from scale_fixtures import make_image_folder

from frvt.enroll import enroll
from frvt.store import (
    StoreError,
    create_store,
    read_store_info,
    read_templates,
    write_results,
)
from validation.allvsall import GROUP_SIDE, BlockContext, block_groups, make_plan, materialise, score_stores
from validation.score import ScoreInput, score

SKIP = {"source", "failures", "created_by", "systems", "plots", "label"}


def _same_numbers(a: dict, b: dict) -> None:
    """Every field of two metrics.json documents but provenance, compared exactly (floats included)."""

    def strip(m: dict) -> dict:
        return {k: v for k, v in m.items() if k not in SKIP}

    assert strip(a) == strip(b)
    assert [strip(s) for s in a["systems"]] == [strip(s) for s in b["systems"]]


@pytest.fixture(scope="module")
def store(shared_data, default_config_dir, tmp_path_factory):
    folder = make_image_folder(shared_data / "lfw", tmp_path_factory.mktemp("images"))
    path = tmp_path_factory.mktemp("store") / "lfw.h5"
    enroll(folder, path, config_dir=default_config_dir, workers=1, progress=False)
    return path


@pytest.fixture(scope="module")
def materialised(store, tmp_path_factory):
    """The slow reference: match_templates for every pair, written to an HDF5 score file, then `frvt score`."""
    out = tmp_path_factory.mktemp("mat")
    counts = materialise(make_plan(store), out / "scores.h5")
    report = score([ScoreInput.from_path(out / "scores.h5", "lfw")], out / "score", n_resamples=200)
    return counts, report.metrics, report.systems[0].histogram


def _split(store, tmp_path):
    """Gallery (each person's first two images) and probe (the rest) stores with the same templates."""
    info = read_store_info(store)
    templates = read_templates(store, 0, info.n)
    first = np.zeros(info.n, bool)
    for person in np.unique(info.identities):
        first[np.flatnonzero(info.identities == person)[:2]] = True
    paths = []
    for name, rows in (("gallery", np.flatnonzero(first)), ("probe", np.flatnonzero(~first))):
        p = tmp_path / f"{name}.h5"
        create_store(
            p,
            info.ids[rows].tolist(),
            info.identities[rows].tolist(),
            info.images[rows].tolist(),
            implementation=info.implementation,
            implementation_version=info.implementation_version,
            config_dir=info.config_dir,
            role=info.role,
            header=info.header,
        )
        write_results(
            p,
            np.arange(rows.size),
            info.codes[rows],
            [templates[r] for r in rows],
            np.zeros(rows.size),
            [""] * rows.size,
        )
        paths.append(p)
    return paths


def test_vectorised_similarity_equals_match_templates_exactly(store, face_verifier):
    plan = make_plan(store, block=16)
    ctx = BlockContext(plan)
    templates = read_templates(store, 0, plan.gallery.n)
    s, _ = ctx.block_scores(0, 16, 16, 32)
    rng = np.random.default_rng(1)
    i, j = rng.integers(0, plan.gallery.n, size=(2, 400))
    pairs = ctx.pair_scores(i, j)
    checked = 0
    for k, (a, b) in enumerate(zip(i, j)):
        r = face_verifier.match_templates(templates[b], templates[a])
        if r.status.ok:
            assert np.float32(r.similarity) == pairs[k] and float(pairs[k]) == r.similarity
            checked += 1
        else:
            assert np.isnan(pairs[k])
    for a in range(16):
        for b in range(16):
            r = face_verifier.match_templates(templates[16 + b], templates[a])
            assert (r.similarity == s[a, b]) if r.status.ok else np.isnan(s[a, b])
    assert checked > 300


@pytest.mark.parametrize("block", [7, 2048])
def test_all_vs_all_equals_frvt_score_on_the_materialised_scores(store, materialised, tmp_path, block):
    counts, expected, _ = materialised
    report, timings = score_stores(store, None, tmp_path, label="lfw", workers=0, block=block, n_resamples=200)
    got = report.metrics
    assert (got["n_genuine"], got["n_impostor"]) == (counts["genuine"], counts["impostor"])
    assert got["n_impostor_failed"] > 0 and got["n_genuine_failed"] > 0  # the unreadable image's comparisons
    _same_numbers(expected, got)
    edges, genuine, impostor = report.systems[0].histogram
    assert [edges.tolist(), genuine.tolist(), impostor.tolist()] == [x.tolist() for x in materialised[2]]
    w = edges[1] - edges[0]  # a power of two, the edges its multiples: every key bin in one histogram bin
    assert w == 2.0 ** round(math.log2(w)) and np.array_equal(
        edges, w * np.arange(edges[0] / w, edges[0] / w + edges.size)
    )
    assert impostor.sum() == got["n_impostor"] - got["n_impostor_failed"]
    passes = [t["pass"] for t in timings]
    # a sample guesses the bins of the order statistics and the EER; one pass over every comparison
    # finds them, the key bins give the plot histogram, and only the bootstrap's counts take another
    assert passes == ["sample: TopBinPass", "FineBinsPass", "SubjectEdgePass"]
    sample = timings[0]["comparisons"]
    assert 0 < sample < got["n_impostor"] / 8


@pytest.mark.parametrize("block", [9, 3])
def test_a_local_dask_cluster_of_two_workers_gives_the_same_numbers(store, materialised, tmp_path, block):
    _, expected, _ = materialised
    plan = make_plan(store, block=block)
    groups = block_groups(plan.blocks(), block, 2)
    assert (max(map(len, groups)) > 1) == (block == 3)  # small blocks: a task takes a group of them
    report, _ = score_stores(store, None, tmp_path, label="lfw", workers=2, block=block, n_resamples=200)
    _same_numbers(expected, report.metrics)


def test_block_groups_cover_every_block_once_in_squares_of_neighbours():
    plan_blocks = [(r, r + 4, c, c + 4) for r in range(0, 400, 4) for c in range(r, 400, 4)]
    for workers in (1, 2, 8, 1000):
        groups = block_groups(plan_blocks, 4, workers)
        flat = [b for g in groups for b in g]
        assert sorted(flat) == sorted(plan_blocks)
        side = max(len({b[0] for b in g}) for g in groups)
        assert side <= GROUP_SIDE and all(len({b[2] for b in g}) <= side for g in groups)
        assert len(groups) >= min(len(plan_blocks), 8 * workers) or side == 1
        for g in groups:  # rows first, then columns: the row panel reused along the group
            assert g == sorted(g)


def test_match_templates_fallback_gives_the_same_numbers(store, materialised, tmp_path):
    _, expected, _ = materialised
    report, _ = score_stores(
        store, None, tmp_path, label="lfw", workers=0, block=13, n_resamples=200, force_pairwise=True
    )
    _same_numbers(expected, report.metrics)


def test_gallery_vs_probe_equals_materialised(store, tmp_path):
    gallery, probe = _split(store, tmp_path)
    plan = make_plan(gallery, probe)
    counts = materialise(plan, tmp_path / "gp.h5")
    expected = score([ScoreInput.from_path(tmp_path / "gp.h5", "gp")], tmp_path / "a", n_resamples=100).metrics
    got, _ = score_stores(gallery, probe, tmp_path / "b", label="gp", workers=0, block=5, n_resamples=100)
    assert got.metrics["n_impostor"] + got.metrics["n_genuine"] == plan.gallery.n * plan.probe.n
    assert got.metrics["n_genuine"] == counts["genuine"]
    _same_numbers(expected, got.metrics)


def test_stores_of_another_model_are_refused(store, tmp_path):
    gallery, probe = _split(store, tmp_path)
    with h5py.File(probe, "r+") as f:
        header = json.loads(f.attrs["header"])
        header["model_fingerprint"] = "00000000"
        f.attrs["header"] = json.dumps(header, sort_keys=True)
    with pytest.raises(StoreError, match="model_fingerprint.*00000000"):
        make_plan(gallery, probe)


@pytest.mark.parametrize("workers", [0, 2])  # on a cluster the workers' plan holds no names: read then
def test_a_template_of_another_version_is_named(store, tmp_path, workers):
    copy = tmp_path / "mixed.h5"
    shutil.copy(store, copy)
    info = read_store_info(copy)
    k = int(np.flatnonzero(info.codes == 0)[3])
    t = bytearray(read_templates(copy, k, k + 1)[0])
    t[4:6] = struct.pack("<H", 2)
    t[-4:] = struct.pack("<I", zlib.crc32(bytes(t[:-4])))
    with h5py.File(copy, "r+") as f:
        f["template"][k] = np.frombuffer(bytes(t), np.uint8)
    with pytest.raises(StoreError, match=f"{info.ids[k]}.*format version 2"):
        score_stores(copy, None, tmp_path / "out", workers=workers, n_resamples=0, plots=False)


def test_a_corrupt_or_incomplete_store_is_named(store, tmp_path):
    broken = tmp_path / "broken.h5"
    data = bytearray(store.read_bytes())
    data[:512] = b"\0" * 512
    broken.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="broken.h5"):
        make_plan(broken)
    partial = tmp_path / "partial.h5"
    shutil.copy(store, partial)
    with h5py.File(partial, "r+") as f:
        code = f["code"][:]
        code[2] = -1
        f["code"][:] = code
    with pytest.raises(StoreError, match="1 of .* still to make"):
        make_plan(partial)
    assert read_store_info(store).complete  # the stores scored are never written


def test_cli_scores_a_store_and_names_a_bad_one(store, tmp_path):
    from typer.testing import CliRunner

    from frvt.cli import app

    r = CliRunner().invoke(
        app,
        [
            "score",
            "--all-vs-all",
            str(store),
            "--workers",
            "0",
            "--bootstrap",
            "20",
            "--no-plots",
            "-o",
            str(tmp_path / "out"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "1e-08" in r.output and "pass FineBinsPass" in r.output
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["source"]["kind"] == "templates"
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    r = CliRunner().invoke(app, ["score", "--all-vs-all", str(bad), "--workers", "0", "-o", str(tmp_path / "b")])
    assert r.exit_code == 2 and "bad.h5" in r.output


def _sex_labels(info, path):
    """Labels by image: two women, one image without a label, one with two, an id not in the run."""
    women = {"AJ_Cook", "Amelie_Mauresmo"}
    stems = [str(i).rsplit("/", 1)[-1] for i in info.ids]
    rows = [f"{s}.jpg,{'F' if str(ident) in women else 'M'}" for s, ident in zip(stems, info.identities)]
    rows[3] = ""  # unlabelled
    rows.append(f"{stems[8]}.jpg,F" if rows[8].endswith(",M") else f"{stems[8]}.jpg,M")  # conflicting
    rows.append("Nobody_0001.jpg,F")
    path.write_text("image,sex\n" + "\n".join(rows) + "\n")
    return path


def _demographics(out):
    doc = json.loads((out / "demographics.json").read_text())["systems"][0]
    doc.pop("label")
    return doc


@pytest.mark.parametrize("workers,block", [(0, 7), (2, 9)])
def test_demographics_on_a_store_equal_those_of_the_materialised_scores(store, tmp_path, workers, block):
    """`frvt score --all-vs-all STORE --demographics` (a block pass, no score written) against
    `frvt score SCORES.h5 --demographics` on every comparison written by match_templates."""
    from typer.testing import CliRunner

    from frvt.cli import app

    labels = _sex_labels(read_store_info(store), tmp_path / "sex.csv")
    materialise(make_plan(store), tmp_path / "pairs.h5", with_templates=True)
    common = ["--demographics", str(labels), "--bootstrap", "50", "--no-plots"]
    common += ["--fmr", "1e-3", "--fmr", "1e-2", "--fmr", "1e-1"]
    r = CliRunner().invoke(app, ["score", str(tmp_path / "pairs.h5"), "-o", str(tmp_path / "a"), *common])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(
        app,
        ["score", "--all-vs-all", str(store), "--workers", str(workers), "--block", str(block)]
        + ["-o", str(tmp_path / "b"), *common],
    )
    assert r.exit_code == 0, r.output
    assert "pass DemographicPass" in r.output and "demographics of" in r.output
    expected, got = _demographics(tmp_path / "a"), _demographics(tmp_path / "b")
    assert got == expected
    sex = got["attributes"]["sex"]
    assert sex["labels"]["unlabelled_templates"] == 1 and sex["labels"]["conflicting_templates"] == 1
    assert sex["labels"]["keys_not_in_run"] == 1
    point = sex["fmr"]["1e-01"]
    assert point["groups"]["F"]["n_impostor"] > 0 and point["groups"]["M"]["false_matches"] > 0
    assert point["fmr_matrix"][0][1]["n_impostor"] > 0
    assert sex["bootstrap"]["n_resamples"] == 50


def test_demographics_gallery_vs_probe_equal_those_of_the_materialised_scores(store, tmp_path):
    from validation.demographics import score_demographics
    from validation.group_labels import read_labels

    gallery, probe = _split(store, tmp_path)
    labels = read_labels(_sex_labels(read_store_info(store), tmp_path / "sex.csv"))
    materialise(make_plan(gallery, probe), tmp_path / "gp.h5", with_templates=True)
    a = score([ScoreInput.from_path(tmp_path / "gp.h5", "gp")], tmp_path / "a", fmr_targets=(1e-2, 1e-1), plots=False)
    expected, _ = score_demographics(a, labels, tmp_path / "a", n_resamples=40)
    found = {}
    score_stores(
        gallery,
        probe,
        tmp_path / "b",
        label="gp",
        workers=0,
        block=6,
        fmr_targets=(1e-2, 1e-1),
        plots=False,
        after_scoring=lambda rep: found.update(doc=score_demographics(rep, labels, tmp_path / "b", n_resamples=40)[0]),
    )
    assert found["doc"] == expected
    assert found["doc"]["systems"][0]["attributes"]["sex"]["fmr"]["1e-01"]["overall"]["n_impostor"] > 0


def test_bad_labels_stop_a_store_run_before_any_pass(store, tmp_path):
    from typer.testing import CliRunner

    from frvt.cli import app

    bad = tmp_path / "bad.csv"
    bad.write_text("file,sex\nx.jpg,F\n")
    for args, message in (
        (["--demographics", str(tmp_path / "none.csv")], "labels file missing"),
        (["--demographics", str(bad), "--demographics-key", "image"], "no key column 'image'"),
    ):
        r = CliRunner().invoke(
            app, ["score", "--all-vs-all", str(store), "--workers", "0", "-o", str(tmp_path / "o")] + args
        )
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
        assert (
            "pass sample" not in r.output
            and "pass FineBinsPass" not in r.output
            and not (tmp_path / "o" / "metrics.json").exists()
        )
