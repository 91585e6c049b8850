"""frvt report: the page from real result files, bad inputs as marked sections, and a real browser."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from frvt.cli.app import app
from frvt.report import SECTIONS, build_report

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"


def _validate_summary(tmp_path: Path, **extra) -> Path:
    """A validate run folder with the fields frvt validate writes (and whatever ``extra`` adds)."""
    d = tmp_path / "validate_run"
    d.mkdir()
    summary = {
        "schema": "frvt.validate/1",
        "created": "2026-12-01T10:00:00+0000",
        "implementation": "mine:Algo",
        "counts": {"enroll": 3, "verif": 3, "match": 9},
        "checks": [
            {"name": "log_lines", "status": "PASS", "detail": "rows = list", "evidence": {"enroll.log": [3, 3]}},
            {"name": "latency", "status": "FAIL", "detail": "median over budget <b>", "evidence": {"median_ms": 1200}},
            {"name": "crash", "status": "FAIL", "detail": "worker died", "severity": "fatal"},  # a newer field
        ],
        "verdict": "FAIL",
        "latency": {
            "n": 3,
            "median_ms": 1200.0,
            "p90_ms": 1300.0,
            "p99_ms": 1400.0,
            "max_ms": 1500.0,
            "budget_ms": 1000.0,
        },
        "template_failures": [
            {
                "list": "enroll",
                "id": "e1",
                "image": "a.jpg",
                "code": 8,
                "code_name": "FaceDetectionError",
                "info": "no face",
            }
        ],
        "machine": {"cpu_model": "Some CPU", "usable_cores": 2, "isa": {"avx2": True}, "versions": {"numpy": "2"}},
    }
    summary.update(extra)
    (d / "summary.json").write_text(json.dumps(summary))
    return d


def _demographics_run(tmp_path: Path) -> Path:
    """A score run with demographics, made by frvt score itself from a small labelled HDF5."""
    from validation.paired_comparisons import HDF5PairWriter

    rng = np.random.default_rng(0)
    templates = [f"p{s:02d}_{k:04d}" for s in range(30) for k in range(3)]
    ident = [t.rsplit("_", 1)[0] for t in templates]
    e, p = np.triu_indices(len(templates), 1)
    same = np.array([ident[i] == ident[j] for i, j in zip(e, p)])
    sim = np.where(same, rng.normal(0.8, 0.1, e.size), rng.normal(0.3, 0.1, e.size)).astype(np.float32)
    subj = np.array([int(ident[i][1:]) for i in e])
    h5 = tmp_path / "sys.h5"
    with HDF5PairWriter(h5, templates=templates, identities=ident) as w:
        for cls, m in (("genuine", same), ("impostor", ~same)):
            w.append(cls, sim[m], subj[m], e[m], p[m])
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "identity,sex,age\n"
        + "".join(f"p{s:02d},{'F' if s % 2 else 'M'},{'young' if s < 10 else 'old'}\n" for s in range(30))
    )
    out = tmp_path / "score_run"
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
            "40",
            "--fmr",
            "1e-3",
            "--fmr",
            "1e-2",
            "--no-plots",
        ],
    )
    assert r.exit_code == 0, r.output
    return out


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_report_from_every_kind_of_run(tmp_path):
    validate = _validate_summary(tmp_path)
    score = _demographics_run(tmp_path)
    out, runs = build_report(
        [validate, score, RESULTS / "lfw_all_pairs", RESULTS / "profile.json", RESULTS / "bench.json"],
        tmp_path / "r.html",
    )
    page = out.read_text()
    assert sorted({r.kind for r in runs.results}) == ["bench", "demographics", "profile", "score", "validate"]
    assert not runs.problems
    for sec in SECTIONS:
        assert f'<section id="{sec}">' in page
    assert "could not be drawn" not in page
    # self-contained: no external resource of any kind
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<script" not in page and "@import" not in page
    imgs = _images(page)
    assert len(imgs) >= 8 and all(i.startswith(b"\x89PNG\r\n\x1a\n") for i in imgs)
    # the newer check field is shown, the HTML in a detail is escaped
    assert "fatal" in page and "median over budget &lt;b&gt;" in page
    # demographics: both attributes, the cross-group heatmap and the summary measures
    assert "sex" in page and "age" in page and "Gini of FMR" in page and "GARBE" in page
    assert 'alt="cross-group FMR heatmap, sex, FMR 1e-02"' in page


def test_bad_inputs_are_marked_not_raised(tmp_path):
    wrong = tmp_path / "not_a_run"
    wrong.mkdir()
    (wrong / "notes.txt").write_text("hello")
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": "somebody.else/1"}))
    newer = _validate_summary(tmp_path, schema="frvt.validate/2", checks="not a list", latency=None)
    out, runs = build_report([wrong, broken, other, newer, tmp_path / "missing"], tmp_path / "r.html")
    page = out.read_text()
    reasons = {Path(p.path).name: p.reason for p in runs.problems}
    assert "no result of frvt validate" in reasons["not_a_run"]
    assert "not valid JSON (line 1" in reasons["broken.json"]
    assert "without a known frvt schema" in reasons["other.json"]
    assert reasons["missing"] == "no such file or folder"
    assert "newer than this report knows" in page
    assert "Traceback" not in page
    for sec in SECTIONS:
        assert f'<section id="{sec}">' in page
    # CLI: nothing usable -> exit 2 with the reasons; something usable -> 0
    r = CliRunner().invoke(app, ["report", str(wrong), "-o", str(tmp_path / "x.html")])
    assert r.exit_code == 2 and "no result of frvt validate" in r.output
    r = CliRunner().invoke(app, ["report", str(wrong), str(RESULTS / "profile.json"), "-o", str(tmp_path / "y.html")])
    assert r.exit_code == 0 and (tmp_path / "y.html").exists()


def test_report_in_a_real_browser(tmp_path):
    pytest.importorskip("selenium")
    from browser import find_browser, open_page, page_facts

    if find_browser() is None:
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    validate = _validate_summary(tmp_path)
    score = _demographics_run(tmp_path)
    out, _ = build_report(
        [
            validate,
            score,
            RESULTS / "validation_set_score",
            RESULTS / "profile.json",
            RESULTS / "bench.json",
            tmp_path / "missing",
        ],
        tmp_path / "r.html",
    )
    n_png = len(_images(out.read_text()))
    with open_page(out) as driver:
        facts = page_facts(driver)
    assert facts["sections"] == list(SECTIONS)
    assert facts["errors"] == []
    assert facts["external"] == []
    assert facts["n_images"] == n_png and n_png >= 8
    assert facts["undecoded"] == []
