"""validation.score and ``frvt score``: the readers, metrics.json, the table, errors -> exit 2."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from frvt.cli.app import app
from validation import metrics as M
from validation import score as SC
from validation import score_sources

runner = CliRunner()
KEYS = ["1e-06", "1e-05", "1e-04", "1e-03", "1e-02", "1e-01"]
LOG_HEADER = "id image templateSizeBytes returnCode isLeftAssigned isRightAssigned xleft yleft xright yright"


def make_validate_dir(root: Path, seed: int = 0, n_id: int = 8, suffix: str = "") -> dict:
    """A small `frvt validate` output: lists, logs, failures; returns what a reader should find."""
    rng = np.random.default_rng(seed)
    (root / "lists").mkdir(parents=True)
    (root / "validation").mkdir()
    enroll, verif = [], []
    for p in range(n_id):
        name = f"Person_{p}"
        # identity from the 4th column for even people, from the parent folder for odd ones
        extra = f" {name}" if p % 2 == 0 else ""
        folder = "misc" if p % 2 == 0 else name
        enroll.append((f"e{p:04d}", f"../images/{folder}/{name}_e.jpg 2{extra}", name))
        for j in range(2):
            verif.append((f"v{2 * p + j:04d}", f"../images/{folder}/{name}_{j}.jpg 2{extra}", name))
    (root / "lists" / "enroll.txt").write_text("".join(f"{i} {rest}\n" for i, rest, _ in enroll))
    (root / "lists" / "verif.txt").write_text("".join(f"{i} {rest}\n" for i, rest, _ in verif))
    enroll_fail = {"e0003"}
    verif_fail = {"v0005"}
    for fname, rows, fails in (("enroll.log", enroll, enroll_fail), ("verif.log", verif, verif_fail)):
        lines = [LOG_HEADER]
        for i, _, _ in rows:
            code = 8 if i in fails else 0
            lines.append(f"{i} img.jpg {0 if code else 512} {code} 1 1 10 20 30 20")
        (root / "validation" / fname).write_text("\n".join(lines) + "\n")
    lines = ["enrollTempl verifTempl simScore returnCode"]
    scores, same, failed = [], [], []
    for e, _, eid in enroll:
        for v, _, vid in verif:
            g = eid == vid
            s = float(np.round(rng.normal(0.7 if g else 0.2, 0.15), 6))
            code = 0
            if e in enroll_fail or v in verif_fail:
                s, code = -1.0, 14
            elif (e, v) == ("e0001", "v0007"):
                s, code = -1.0, 1  # a failed comparison between good templates
            lines.append(f"{e}{suffix} {v}{suffix} {s} {code}")
            scores.append(s)
            same.append(g)
            failed.append(code != 0)
    (root / "validation" / "match.log").write_text("\n".join(lines) + "\n")
    s, g, f = np.array(scores), np.array(same), np.array(failed)
    return {
        "genuine": s[g],
        "genuine_failed": f[g],
        "impostor": s[~g],
        "impostor_failed": f[~g],
        "n_enroll": len(enroll),
        "n_verif": len(verif),
        "n_match": len(scores),
    }


def test_read_validate_output(tmp_path):
    want = make_validate_dir(tmp_path / "run", suffix=".template")
    got = SC.read_validate_output(tmp_path / "run")
    assert np.array_equal(got.genuine, want["genuine"])
    assert np.array_equal(got.genuine_failed, want["genuine_failed"])
    imp = np.concatenate([c for _, c in got.impostor.chunks()])
    assert np.array_equal(np.isnan(imp), want["impostor_failed"])
    assert np.array_equal(imp[~want["impostor_failed"]], want["impostor"][~want["impostor_failed"]])
    assert got.failures["enroll"] == M.FailureCount(1, want["n_enroll"])
    assert got.failures["verif"] == M.FailureCount(1, want["n_verif"])
    assert got.failures["match"].n_failed == 1 + 16 + 7 and got.failures["match"].n_attempts == want["n_match"]
    assert set(got.genuine_subject) == {f"Person_{p}" for p in range(8)}


def test_score_validate_dir_metrics_match_library(tmp_path):
    want = make_validate_dir(tmp_path / "run")
    rep = SC.score([SC.ScoreInput.from_path(tmp_path / "run", "sys")], tmp_path / "out", n_resamples=50, plots=False)
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["schema"] == "frvt.metrics/1" and m == rep.metrics
    assert m["n_genuine"] == want["genuine"].size and m["n_impostor"] == want["impostor"].size
    assert m["n_genuine_failed"] == want["genuine_failed"].sum()
    assert m["failures"]["enroll"] == {"n_failed": 1, "n_attempts": 8, "rate": 1 / 8}
    assert list(m["fnmr_at_fmr"]) == KEYS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = M.fnmr_at_fmr(
            want["genuine"],
            want["impostor"],
            M.FMR_TARGETS,
            genuine_failed=want["genuine_failed"],
            impostor_failed=want["impostor_failed"],
        )
        ref_eer = M.eer(
            want["genuine"],
            want["impostor"],
            genuine_failed=want["genuine_failed"],
            impostor_failed=want["impostor_failed"],
        )
    for key, f in zip(KEYS, M.FMR_TARGETS):
        e, r = m["fnmr_at_fmr"][key], ref[f]
        if r.estimable:
            assert (e["fnmr"], e["threshold"], e["false_matches"]) == (r.fnmr, r.threshold, r.false_matches)
            assert e["ci_low"] <= e["fnmr"] <= e["ci_high"] and "bootstrap" in e["ci_method"]
        else:
            assert e["fnmr"] is None and e["threshold"] is None and e["ci_low"] is None and e["ci_high"] is None
            assert "short by" in e["reason"]
    assert m["eer"] == ref_eer.eer
    assert m["bootstrap"]["n_resamples"] == 50 and m["bootstrap"]["seed"] == 0
    assert any("short by" in w for w in m["warnings"])
    assert m["systems"][0]["fnmr_at_fmr"] == m["fnmr_at_fmr"]


def test_cli_compares_three_systems_and_writes_plots(tmp_path):
    make_validate_dir(tmp_path / "run")
    rng = np.random.default_rng(1)
    g_txt, i_txt = tmp_path / "g.txt", tmp_path / "i.txt"
    np.savetxt(g_txt, rng.normal(3, 1, 300))
    np.savetxt(i_txt, rng.normal(0, 1, 20_000))
    h5 = tmp_path / "d.h5"
    with score_sources.HDF5ScoreWriter(h5, with_subjects=True, direction="distance") as w:
        w.append("genuine", rng.normal(0.4, 0.1, 500), subjects=rng.integers(0, 50, 500))
        w.append("impostor", rng.normal(0.9, 0.1, 30_000), subjects=rng.integers(0, 50, 30_000))
    out = tmp_path / "out"
    r = runner.invoke(
        app,
        [
            "score",
            str(tmp_path / "run"),
            str(h5),
            "--genuine",
            str(g_txt),
            "--impostor",
            str(i_txt),
            "--label",
            "validate",
            "--label",
            "hdf5",
            "--label",
            "text",
            "-o",
            str(out),
            "--bootstrap",
            "20",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "not estimable" in r.output and "FMR" in r.output and "EER" in r.output
    m = json.loads((out / "metrics.json").read_text())
    assert [s["label"] for s in m["systems"]] == ["validate", "hdf5", "text"]
    assert m["systems"][1]["direction"] == "distance"
    assert m["systems"][2]["bootstrap"] is None
    assert "clopper-pearson" in m["systems"][2]["fnmr_at_fmr"]["1e-03"]["ci_method"]
    for name in ("det.png", "det.svg", "hist_validate.png", "hist_hdf5.svg", "hist_text.png"):
        assert (out / name).stat().st_size > 1000, name
    # the distance file: thresholds are distances and the accept rule flips
    e = m["systems"][1]["fnmr_at_fmr"]["1e-03"]
    assert m["systems"][1]["decision_rule"] == "match if distance <= threshold" and e["threshold"] > 0.5


def test_binary_impostor_file_is_streamed(tmp_path):
    rng = np.random.default_rng(2)
    g = rng.normal(3, 1, 200).astype(np.float32)
    i = rng.normal(0, 1, 100_000).astype(np.float32)
    np.save(tmp_path / "g.npy", g)
    i.tofile(tmp_path / "i.f32")
    inp = SC.ScoreInput.from_files(tmp_path / "g.npy", tmp_path / "i.f32")
    loaded = SC.load_input(inp)
    assert isinstance(loaded.impostor, score_sources.RawScores)
    rep = SC.score([inp], tmp_path / "out", plots=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = M.fnmr_at_fmr(g, i, (1e-5, 1e-3))
    assert rep.metrics["fnmr_at_fmr"]["1e-03"]["fnmr"] == ref[1e-3].fnmr
    assert rep.metrics["fnmr_at_fmr"]["1e-05"]["threshold"] == ref[1e-5].threshold
    assert "FNMR" in SC.format_report(rep)


@pytest.mark.parametrize(
    "content,line,value",
    [
        ("0.5\n0.25\nabc\n", 3, "abc"),
        ("0.5\nnan\n", 2, "nan"),
        ("0.5\n-inf\n", 2, "-inf"),
        ("0.5\n\n0.4\n", 2, ""),
        ("0.5 0.7\n", 1, "0.5 0.7"),
    ],
)
def test_text_score_errors_name_file_line_value(tmp_path, content, line, value):
    p = tmp_path / "s.txt"
    p.write_text(content)
    with pytest.raises(SC.ScoreFileError) as e:
        SC.read_score_text(p)
    assert (e.value.source, e.value.position, e.value.value) == (str(p), line, value)
    assert f"line {line}" in str(e.value)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (
            lambda d: _replace(d / "validation" / "match.log", "e0002 v0004", "e0099 v0004"),
            r"match.log, line \d+.*e0099",
        ),
        (
            lambda d: _replace(d / "validation" / "match.log", "e0002 v0004", "e0002 vXXXX"),
            r"unknown verification.*vXXXX",
        ),
        (lambda d: _replace_score(d, "nan"), r"match.log, line 2: simScore 'nan' is not finite"),
        (lambda d: _replace_score(d, "0,5"), r"match.log, line 2: simScore '0,5' is not a number"),
        (lambda d: _replace_score(d, ""), r"match.log, line 2: expected 4 columns, got 3: 'e0000 v0000 0'"),
        (
            lambda d: _replace(d / "validation" / "match.log", "simScore", "score"),
            r"match.log, line 1: expected header",
        ),
        (
            lambda d: _replace(d / "validation" / "enroll.log", "e0002 img.jpg 512 0", "e0002 img.jpg 512 x"),
            r"enroll.log, line \d+: returnCode 'x' is not an integer",
        ),
        (lambda d: (d / "lists" / "verif.txt").unlink(), r"verif.txt: file missing"),
        (
            lambda d: _replace(d / "lists" / "enroll.txt", "e0002 ../images/misc/Person_2_e.jpg 2 Person_2", "e0002"),
            r"enroll.txt, line 3: expected .*, got 1 fields: 'e0002'",
        ),
    ],
)
def test_validate_dir_errors_and_cli_exit_2(tmp_path, mutate, match):
    d = tmp_path / "run"
    make_validate_dir(d)
    mutate(d)
    with pytest.raises(SC.ScoreFileError, match=match):
        SC.read_validate_output(d)
    r = runner.invoke(app, ["score", str(d), "-o", str(tmp_path / "out"), "--no-plots"])
    assert r.exit_code == 2
    assert "error:" in r.output


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _replace_score(d: Path, value: str) -> None:
    p = d / "validation" / "match.log"
    lines = p.read_text().splitlines()
    cols = lines[1].split()
    cols[2] = value
    lines[1] = " ".join(c for c in cols if c != "")
    p.write_text("\n".join(lines) + "\n")


def test_hdf5_errors(tmp_path):
    import h5py

    p = tmp_path / "x.h5"
    with h5py.File(p, "w") as f:
        f["genuine"] = [0.9]
    with pytest.raises(SC.ScoreFileError, match="dataset missing: .impostor."):
        SC.load_input(SC.ScoreInput.from_path(p))
    with h5py.File(p, "a") as f:
        f["impostor"] = [0.1, 0.2]
        f["genuine_subject"] = [1]
    with pytest.raises(SC.ScoreFileError, match="both subject datasets"):
        SC.load_input(SC.ScoreInput.from_path(p))
    with h5py.File(p, "a") as f:
        del f["genuine_subject"]
        f.attrs["direction"] = "similarity"
    with pytest.raises(SC.ScoreFileError, match="contradicts"):
        SC.load_input(SC.ScoreInput.from_path(p), higher_is_better=False)
    r = runner.invoke(app, ["score", str(p), "--distance", "-o", str(tmp_path / "o")])
    assert r.exit_code == 2 and "contradicts" in r.output


def test_cli_usage_errors_exit_2(tmp_path):
    r = runner.invoke(app, ["score", "--genuine", "a.txt", "-o", str(tmp_path)])
    assert r.exit_code == 2 and "pairs" in r.output
    r = runner.invoke(app, ["score", str(tmp_path / "missing.h5"), "-o", str(tmp_path)])
    assert r.exit_code == 2
    r = runner.invoke(app, ["score", "-o", str(tmp_path)])
    assert r.exit_code == 2 and "nothing to score" in r.output
    r = runner.invoke(app, ["score", "--help"])
    assert r.exit_code == 0 and "--distance" in r.output


def test_metrics_json_has_no_nan_and_nulls_where_not_estimable(tmp_path):
    rng = np.random.default_rng(5)
    np.savetxt(tmp_path / "g.txt", rng.normal(2, 1, 50))
    np.savetxt(tmp_path / "i.txt", rng.normal(0, 1, 5000))
    rep = SC.score([SC.ScoreInput.from_files(tmp_path / "g.txt", tmp_path / "i.txt")], tmp_path / "o", plots=False)
    text = rep.metrics_path.read_text()

    def no_constants(name):
        raise AssertionError(f"metrics.json holds {name}, which is not JSON")

    m = json.loads(text, parse_constant=no_constants)
    assert [m["fnmr_at_fmr"][k]["fnmr"] is None for k in KEYS] == [True, True, True, False, False, False]
    assert m["fnmr_at_fmr"]["1e-04"]["required_impostors"] == 10_000
    assert isinstance(m["eer"], float) and not math.isnan(m["eer"])
