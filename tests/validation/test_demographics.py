"""Demographic differentials checked against a brute-force oracle that loops over comparisons."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from validation.metrics import fmr_key
from validation.demographics import (
    DemographicCounter,
    demographic_differentials,
    format_demographics,
    gini,
    summarise,
)
from validation.group_labels import read_labels
from validation.paired_comparisons import PairedComparisons

from demographic_worlds import oracle, world


def _pairs(templates, identity, e, p, same, sim, sid, chunk=97):
    def gen(mask):
        def g():
            idx = np.flatnonzero(mask)
            for a in range(0, idx.size, chunk):
                j = idx[a : a + chunk]
                yield sim[j], e[j], p[j], sid[j]

        return g

    return PairedComparisons(templates, identity, len(set(identity)), gen(same), gen(~same))


def _labels_csv(tmp_path, rows, header="image,sex"):
    path = tmp_path / "labels.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_counts_and_rates_match_theoracle(tmp_path):
    templates, identity, sex, e, p, same, sim, sid = world()
    # image-keyed labels; one template unlabelled, one conflicting
    rows = [f"{t}.jpg,{sex[identity[i]]}" for i, t in enumerate(templates) if i != 5]
    rows.append(f"{templates[7]}.jpg,{'M' if sex[identity[7]] == 'F' else 'F'}")  # a second label: conflict
    rows.append("nobody_0001.jpg,F")  # not in the run
    rows.append("nobody_0002.jpg,X")  # not in the run: group X is empty
    labels = read_labels(_labels_csv(tmp_path, rows))
    assert labels.key_kind == "image" and labels.conflicts["sex"] == [templates[7]]
    imp = sim[~same]
    thresholds = [float(np.nanquantile(imp, 0.99)), float(np.nanquantile(imp, 0.9)), 5.0]  # 5.0: no impostor above
    fmrs = [1e-2, 1e-1, 1e-3]
    doc = demographic_differentials(
        _pairs(templates, identity, e, p, same, sim, sid), labels, thresholds, fmrs, n_resamples=50, seed=1
    )
    r = doc["attributes"]["sex"]
    assert r["groups"] == ["F", "M", "X"]
    assert r["labels"]["unlabelled_templates"] == 1 and r["labels"]["conflicting_templates"] == 1
    assert r["labels"]["keys_not_in_run"] == 2
    assert "X" in r["labels"]["empty_groups"]
    group = {}
    for i, t in enumerate(templates):
        group[i] = None if i in (5, 7) else sex[identity[i]]
    names = r["groups"]
    for thr, f in zip(thresholds, fmrs):
        fnm, ng, fm, ni = oracle(sim, e, p, same, group, thr)
        entry = r["fmr"][fmr_key(f)]
        for g in ("F", "M"):
            v = entry["groups"][g]
            assert v["n_genuine"] == ng[g] and v["false_non_matches"] == fnm[g]
            assert v["n_impostor"] == ni[(g, g)] and v["false_matches"] == fm[(g, g)]
            assert v["fnmr"] == pytest.approx(fnm[g] / ng[g])
            assert v["fmr"] == pytest.approx(fm[(g, g)] / ni[(g, g)])
        for a, ga in enumerate(names):
            for b, gb in enumerate(names):
                cell = entry["fmr_matrix"][a][b]
                assert cell["n_impostor"] == ni.get((ga, gb), 0)
                assert cell["false_matches"] == fm.get((ga, gb), 0)
        # overall: every comparison, labelled or not
        all_fm = int(np.sum(np.nan_to_num(imp, nan=-np.inf) >= thr))
        assert entry["overall"]["false_matches"] == all_fm
        assert entry["overall"]["n_impostor"] == imp.size
    hi = r["fmr"]["1e-03"]
    assert all(hi["groups"][g]["false_matches"] == 0 for g in ("F", "M"))
    assert any("no false match" in n for n in hi["groups"]["F"]["notes"])
    assert hi["summary"]["fmr_max_min"]["value"] is None  # 0/0
    low = r["fmr"]["1e-01"]
    assert low["groups"]["F"]["fmr"] > low["groups"]["M"]["fmr"]  # the built-in differential shows
    ff = low["groups"]["F"]
    assert ff["fmr_ci"][0] <= ff["fmr"] <= ff["fmr_ci"][1]
    text = format_demographics(doc)
    assert "F enrolled x M probe" in text and "Gini FMR" in text


def test_identity_keyed_labels_and_one_subject_group(tmp_path):
    templates, identity, sex, e, p, same, sim, sid = world(seed=2, n_subjects=12)
    rows = [f"{s},{'solo' if s == 's000' else g}" for s, g in sex.items()]
    labels = read_labels(_labels_csv(tmp_path, rows, header="identity,sex"))
    assert labels.key_kind == "identity"
    thr = float(np.nanquantile(sim[~same], 0.95))
    doc = demographic_differentials(
        _pairs(templates, identity, e, p, same, sim, sid), labels, [thr], [0.05], n_resamples=30
    )
    solo = doc["attributes"]["sex"]["fmr"]["5e-02"]["groups"]["solo"]
    assert solo["n_subjects"] == 1
    assert solo["n_impostor"] == 0  # one subject: no same-group impostor
    assert solo["n_genuine"] == 3  # 3 images: 3 genuine pairs
    assert any("one subject" in n for n in solo["notes"])
    assert any("genuine comparisons" in n for n in solo["notes"])


def test_bootstrap_interval_covers_the_point_and_is_seeded():
    rng = np.random.default_rng(0)
    S, G = 40, 2
    groups = np.repeat([0, 1], 40)  # template t belongs to subject t // 2, group t // 40
    c = DemographicCounter([0.5], groups, G, S)
    e = rng.integers(0, 80, 5000)
    p = rng.integers(0, 80, 5000)
    c.add_impostors(rng.random(5000) * (1 + 0.5 * (groups[e] == 1)), e, p, e // 2)
    c.add_genuine(rng.random(400) + 0.3, np.arange(400) % 80, np.arange(400) % 80, (np.arange(400) % 80) // 2)
    a = summarise(c, [0.1], ["A", "B"], n_resamples=200, seed=3).doc
    b = summarise(c, [0.1], ["A", "B"], n_resamples=200, seed=3).doc
    assert a == b
    s = a["fmr"]["1e-01"]["summary"]
    for k in ("fmr_max_min", "gini_fmr", "garbe"):
        assert s[k]["ci_low"] <= s[k]["value"] <= s[k]["ci_high"], k
    assert s["fmr_max_min"]["value"] > 1


def test_gini():
    assert gini(np.array([1.0, 1.0, 1.0])) == 0
    assert gini(np.array([0.0, 1.0])) == pytest.approx(1.0)
    assert gini(np.array([[1.0, 3.0], [2.0, 2.0]])).tolist() == pytest.approx([0.5, 0.0])
    assert math.isnan(float(gini(np.array([0.0, 0.0]))))
    assert math.isnan(float(gini(np.array([0.3]))))


def test_frvt_score_demographics_on_hdf5(tmp_path):
    """The CLI end to end: an HDF5 with template indices, labels with a missing and an unknown id."""
    import json

    from typer.testing import CliRunner

    from frvt.cli.app import app
    from validation.paired_comparisons import HDF5PairWriter

    templates, identity, sex, e, p, same, sim, sid = world(seed=4, n_subjects=40, per=4)
    h5 = tmp_path / "s.h5"
    with HDF5PairWriter(h5, templates=templates, identities=identity) as w:
        for cls, m in (("genuine", same), ("impostor", ~same)):
            s = sim[m].astype(np.float32)
            w.append(cls, np.nan_to_num(s, nan=-1.0), sid[m], e[m], p[m], failed=np.isnan(s))
    rows = [f"{t}.jpg,{sex[identity[i]]}" for i, t in enumerate(templates) if i != 0] + ["ghost_0001.jpg,M"]
    labels = _labels_csv(tmp_path, rows)
    out = tmp_path / "out"
    r = CliRunner().invoke(
        app,
        [
            "score",
            str(h5),
            "--demographics",
            str(labels),
            "-o",
            str(out),
            "--bootstrap",
            "50",
            "--fmr",
            "1e-3",
            "--fmr",
            "1e-2",
            "--no-plots",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "demographics of s" in r.output and "unlabelled 1" in r.output
    doc = json.loads((out / "demographics.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    d = doc["systems"][0]["attributes"]["sex"]
    assert d["labels"]["keys_not_in_run"] == 1
    for key in ("1e-03", "1e-02"):
        assert d["fmr"][key]["overall"]["false_matches"] == metrics["fnmr_at_fmr"][key]["false_matches"]
        assert d["fmr"][key]["overall"]["false_non_matches"] == metrics["fnmr_at_fmr"][key]["false_non_matches"]
        assert d["fmr"][key]["threshold"] == metrics["fnmr_at_fmr"][key]["threshold"]
    # bad input: a key column that is not there; plain score files
    r = CliRunner().invoke(
        app,
        ["score", str(h5), "--demographics", str(labels), "--demographics-key", "file", "-o", str(out), "--no-plots"],
    )
    assert r.exit_code == 2 and "no key column 'file'" in r.output and "Traceback" not in r.output
    plain = tmp_path / "plain.h5"
    from validation.score_sources import HDF5ScoreWriter

    with HDF5ScoreWriter(plain) as w:
        w.append("genuine", [0.9, 0.8])
        w.append("impostor", np.linspace(0, 0.5, 2000))
    r = CliRunner().invoke(app, ["score", str(plain), "--demographics", str(labels), "-o", str(out), "--no-plots"])
    assert r.exit_code == 0 and "not computed" in r.output and "datasets missing" in r.output


def test_block_reducer_equals_the_pairwise_one():
    """The all-vs-all path: blocks of a similarity matrix, counted where computed, merged."""
    templates, identity, sex, e, p, same, sim, sid = world(seed=5, n_subjects=25, per=3)
    n = len(templates)
    mat = np.full((n, n), np.nan)
    mat[e, p] = sim
    subj_names = sorted(set(identity))
    subject = np.array([subj_names.index(i) for i in identity])
    group = np.array([0 if sex[i] == "F" else 1 for i in identity])
    group[4] = -1
    thr = [0.5, 0.6]
    whole = DemographicCounter(thr, group, 2, len(subj_names))
    whole.add_genuine(sim[same], e[same], p[same], sid[same])
    whole.add_impostors(sim[~same], e[~same], p[~same], sid[~same])
    merged = DemographicCounter(thr, group, 2, len(subj_names))
    b = 16
    for r0 in range(0, n, b):
        for c0 in range(r0, n, b):
            rows, cols = np.arange(r0, min(n, r0 + b)), np.arange(c0, min(n, c0 + b))
            part = DemographicCounter(thr, group, 2, len(subj_names))
            part.add_block(mat[np.ix_(rows, cols)], rows, cols, subject, rows[:, None] < cols[None, :])
            merged.merge(part)
    for name in ("gen_n", "gen_fnm", "imp_n", "imp_fm"):
        np.testing.assert_array_equal(getattr(merged, name), getattr(whole, name))
    assert merged.imp_n.sum() == (~same).sum()


def test_frvt_score_demographics_on_a_validate_folder(tmp_path):
    """A validate output: identities from the lists, failures from the logs, labels by identity and by image."""
    import json

    from typer.testing import CliRunner

    from frvt.cli.app import app
    import importlib.util

    spec = importlib.util.spec_from_file_location("score_tests", Path(__file__).with_name("test_score.py"))
    score_tests = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(score_tests)
    make_validate_dir = score_tests.make_validate_dir

    d = tmp_path / "run"
    make_validate_dir(d, n_id=8)
    sex = {f"Person_{p}": "F" if p < 3 else "M" for p in range(8)}
    by_id = tmp_path / "by_identity.csv"
    by_id.write_text("identity,sex\n" + "".join(f"{k},{v}\n" for k, v in sex.items()))
    out = tmp_path / "out"
    r = CliRunner().invoke(
        app,
        [
            "score",
            str(d),
            "--demographics",
            str(by_id),
            "-o",
            str(out),
            "--fmr",
            "1e-1",
            "--bootstrap",
            "20",
            "--no-plots",
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "demographics.json").read_text())["systems"][0]["attributes"]["sex"]
    thr = doc["fmr"]["1e-01"]["threshold"]
    # oracle over match.log
    enroll = {
        ln.split()[0]: ln.split()[1].split("/")[-1].rsplit("_", 1)[0]
        for ln in (d / "lists" / "enroll.txt").read_text().splitlines()
    }
    verif = {
        ln.split()[0]: ln.split()[1].split("/")[-1].rsplit("_", 1)[0]
        for ln in (d / "lists" / "verif.txt").read_text().splitlines()
    }
    logs = {}
    for f in ("enroll.log", "verif.log"):
        for ln in (d / "validation" / f).read_text().splitlines()[1:]:
            logs[ln.split()[0]] = ln.split()[3]
    fm, ni = {}, {}
    fnm, ng = {}, {}
    for ln in (d / "validation" / "match.log").read_text().splitlines()[1:]:
        e, v, s, code = ln.split()
        ok = code == "0" and logs[e] == "0" and logs[v] == "0"
        match = ok and float(s) >= thr
        ge, gv = sex[enroll[e]], sex[verif[v]]
        if enroll[e] == verif[v]:
            ng[ge] = ng.get(ge, 0) + 1
            fnm[ge] = fnm.get(ge, 0) + (not match)
        else:
            ni[(ge, gv)] = ni.get((ge, gv), 0) + 1
            fm[(ge, gv)] = fm.get((ge, gv), 0) + match
    e1 = doc["fmr"]["1e-01"]
    for a, ga in enumerate(doc["groups"]):
        assert e1["groups"][ga]["n_genuine"] == ng[ga] and e1["groups"][ga]["false_non_matches"] == fnm[ga]
        for b, gb in enumerate(doc["groups"]):
            assert e1["fmr_matrix"][a][b]["n_impostor"] == ni[(ga, gb)]
            assert e1["fmr_matrix"][a][b]["false_matches"] == fm[(ga, gb)]
    # keyed by image file name: one image unlabelled
    by_image = tmp_path / "by_image.csv"
    rows = [f"images/x/{name}_e.jpg,{g}" for name, g in sex.items() if name != "Person_2"]
    rows += [f"{name}_{j}.jpg,{g}" for name, g in sex.items() for j in range(2)]
    by_image.write_text("image,sex\n" + "\n".join(rows) + "\n")
    r = CliRunner().invoke(
        app,
        [
            "score",
            str(d),
            "--demographics",
            str(by_image),
            "-o",
            str(out),
            "--fmr",
            "1e-1",
            "--bootstrap",
            "0",
            "--no-plots",
        ],
    )
    assert r.exit_code == 0, r.output
    lab = json.loads((out / "demographics.json").read_text())["systems"][0]["attributes"]["sex"]["labels"]
    assert lab["unlabelled_templates"] == 1 and lab["unlabelled_examples"] == ["Person_2_e"]
