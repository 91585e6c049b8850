"""frvt.driver: decoding as NIST's harness does, one outcome per list line (failures included),
template files, phase journals and resuming from them. Real images (the bundled set) and a real
small implementation (``reference_impls.PixelMatcher``) in real worker processes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

import reference_impls
from frvt.contract import ImageDescription, ImplementationSpec, ReturnCode, TemplateRole
from frvt.driver import (
    TEMPLATE_SUFFIX,
    DecodeError,
    Journal,
    _handle_match,
    _handle_template,
    _match_from_json,
    _template_from_json,
    decode_image,
    match_outcome,
    match_phase,
    template_outcome,
    template_phase,
)
from frvt.records import MatchEntry, read_image_list
from frvt.worker import CallFailure, WorkerLimits, WorkerPool

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "data" / "validation"
EDGE = BUNDLED / "images" / "edge"
MUGSHOT = BUNDLED / "images" / "meds" / "S001" / "S001-01-t10_01.jpg"


@pytest.fixture(scope="module")
def pixel_matcher(tmp_path_factory):
    impl = reference_impls.PixelMatcher()
    config = reference_impls.make_config_dir(tmp_path_factory.mktemp("pixel_config"))
    assert impl.initialize(str(config)).ok
    return impl


def payload(*paths: Path) -> dict:
    return {"id": "x", "images": [(str(p), int(ImageDescription.FaceMugshot)) for p in paths], "role": 1}


# --- decoding ------------------------------------------------------------------------------------


def test_colour_images_decode_to_rgb_and_grey_ones_to_depth_8():
    image = decode_image(MUGSHOT, ImageDescription.FaceMugshot)
    bgr = cv2.imread(str(MUGSHOT), cv2.IMREAD_COLOR)
    assert image.depth == 24 and (image.width, image.height) == (bgr.shape[1], bgr.shape[0])
    assert np.array_equal(image.to_array(), bgr[:, :, ::-1])
    assert image.description == ImageDescription.FaceMugshot
    grey = decode_image(EDGE / "grey8_S001.png")
    assert grey.depth == 8 and grey.to_array().ndim == 2


@pytest.mark.parametrize(
    "name, reason",
    [
        ("zero_bytes.jpg", "file is empty (0 bytes)"),
        ("text.jpg", "not a decodable image"),
        ("absent.jpg", "cannot read"),
    ],
)
def test_undecodable_files_are_errors_naming_the_file(name, reason):
    with pytest.raises(DecodeError, match=re.escape(reason)) as info:
        decode_image(EDGE / name)
    assert name in str(info.value)


# --- one request -> one reply -> one outcome -----------------------------------------------------


class CountingMatcher(reference_impls.PixelMatcher):
    """PixelMatcher that counts its create_face_template calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def create_face_template(self, images, role):
        self.calls += 1
        return super().create_face_template(images, role)


def test_an_undecodable_image_is_a_parse_error_and_the_implementation_is_not_called(tmp_path):
    impl = CountingMatcher()
    assert impl.initialize(str(reference_impls.make_config_dir(tmp_path / "config"))).ok
    reply = _handle_template(impl, payload(MUGSHOT, EDGE / "zero_bytes.jpg"))
    assert impl.calls == 0
    assert reply["code"] == ReturnCode.ParseError and "zero_bytes.jpg" in reply["decode_error"]
    assert reply["template"] == b"" and reply["elapsed_ms"] is None
    reply = _handle_template(impl, payload(MUGSHOT))
    assert impl.calls == 1 and reply["code"] == ReturnCode.Success and reply["elapsed_ms"] >= 0


def test_an_exception_crossing_the_contract_becomes_unknown_error_with_its_text(tmp_path):
    impl = reference_impls.Raises()
    assert impl.initialize(str(reference_impls.make_config_dir(tmp_path / "config"))).ok
    reply = _handle_template(impl, payload(EDGE / "all_white.png"))
    assert reply["code"] == ReturnCode.UnknownError
    assert "RuntimeError" in reply["exception"] and "flat image" in reply["exception"]
    match = _handle_match(impl, {"verif": b"", "enroll": b""})
    assert match["code"] != ReturnCode.Success and match["score"] == -1.0


def test_a_multi_image_line_gives_one_row_per_image_and_its_template_file(pixel_matcher, tmp_path):
    entry = next(e for e in read_image_list(BUNDLED / "enroll_multiface.txt") if len(e.images) > 1)
    reply = _handle_template(pixel_matcher, payload(*[r.path for r in entry.images]))
    outcome = template_outcome(entry, reply, tmp_path)
    assert [r.image for r in outcome.rows] == [r.image for r in entry.images]
    assert {r.size for r in outcome.rows} == {len(reply["template"])}
    assert outcome.rows[0].eyes.is_left_assigned  # PixelMatcher gives the first image's eyes only
    assert all(not r.eyes.is_left_assigned and r.eyes.xleft == 0 for r in outcome.rows[1:])
    assert (tmp_path / f"{entry.id}{TEMPLATE_SUFFIX}").read_bytes() == reply["template"]
    assert outcome.n_images == len(entry.images) and outcome.n_eyes == len(reply["eyes"])
    assert _template_from_json(json.loads(json.dumps(outcome.to_json()))) == outcome


def test_a_lost_call_keeps_its_line_with_the_cause(tmp_path):
    entry = read_image_list(BUNDLED / "enroll.txt")[0]
    outcome = template_outcome(entry, CallFailure("timeout", "did not return within 5 s"), tmp_path)
    assert outcome.row.code == ReturnCode.UnknownError and outcome.elapsed_ms is None
    assert outcome.failure == {"cause": "timeout", "detail": "did not return within 5 s"}
    assert (tmp_path / f"{entry.id}{TEMPLATE_SUFFIX}").read_bytes() == b""  # a template file all the same
    match = match_outcome(MatchEntry("e1", "v1", 1), CallFailure("crash", "killed by SIGSEGV"))
    assert match.row.score == -1.0 and match.failure["cause"] == "crash"
    assert _match_from_json(json.loads(json.dumps(match.to_json()))) == match
    exact = match_outcome(MatchEntry("e1", "v1", 1), {"code": 0, "score": 0.1 + 0.2, "elapsed_ms": 1.5})
    assert _match_from_json(json.loads(json.dumps(exact.to_json()))).row.score == 0.1 + 0.2  # every digit kept


# --- journals ------------------------------------------------------------------------------------


def test_journal_keeps_finished_inputs_and_drops_a_line_cut_by_a_kill(tmp_path):
    path = tmp_path / "phase.jsonl"
    journal = Journal(path)
    journal.append(0, {"a": 1})
    journal.append(2, {"a": 3})
    journal.close()
    with open(path, "ab") as fh:
        fh.write(b'{"key": 1, "outc')  # the process was killed mid-write
    journal = Journal(path)
    assert journal.records == {0: {"a": 1}, 2: {"a": 3}} and not journal.done
    journal.append(1, {"a": 2})
    journal.finish()
    journal.close()
    again = Journal(path)
    again.close()
    assert again.records == {0: {"a": 1}, 1: {"a": 2}, 2: {"a": 3}} and again.done


# --- phases in worker processes ------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    config = reference_impls.make_config_dir(tmp_path_factory.mktemp("pool_config"))
    pool = WorkerPool(ImplementationSpec("reference_impls:PixelMatcher"), str(config), WorkerLimits(20.0, 60.0))
    yield pool
    pool.close()


def test_a_phase_resumed_from_its_journal_runs_only_the_rest_and_equals_a_full_run(pool, tmp_path):
    entries = [e for e in read_image_list(BUNDLED / "enroll.txt") if not e.id.startswith("e_edge")][:4]
    full = template_phase(pool, tmp_path / "full.jsonl", entries, TemplateRole.Enrollment_11, tmp_path / "t1", 1)
    assert full.resumed == 0 and [o.id for o in full.outcomes] == [e.id for e in entries]
    lines = (tmp_path / "full.jsonl").read_text().splitlines()
    assert json.loads(lines[-1]) == {"done": True} and len(lines) == len(entries) + 1
    (tmp_path / "cut.jsonl").write_text("\n".join(lines[:2]) + "\n")  # killed after two inputs
    resumed = template_phase(pool, tmp_path / "cut.jsonl", entries, TemplateRole.Enrollment_11, tmp_path / "t2", 1)
    assert resumed.resumed == 2
    assert [o.template_sha256 for o in resumed.outcomes] == [o.template_sha256 for o in full.outcomes]
    assert sorted(p.name for p in (tmp_path / "t2").iterdir()) == sorted(f"{e.id}.template" for e in entries[2:])


def test_match_phase_reads_the_template_files_and_a_missing_one_fails_the_comparison(pool, tmp_path):
    entries = [e for e in read_image_list(BUNDLED / "enroll.txt") if not e.id.startswith("e_edge")][:2]
    templates = tmp_path / "templates"
    template_phase(pool, tmp_path / "enroll.jsonl", entries, TemplateRole.Enrollment_11, templates, 1)
    a, b = (e.id for e in entries)
    pairs = [MatchEntry(a, a, 1), MatchEntry(a, b, 2), MatchEntry(a, "absent", 3)]
    result = match_phase(pool, tmp_path / "match.jsonl", pairs, templates, 1)
    same, other, missing = (o.row for o in result.outcomes)
    assert same.code == ReturnCode.Success and same.score == pytest.approx(1.0, abs=1e-5)
    assert other.code == ReturnCode.Success and other.score < same.score
    assert missing.code != ReturnCode.Success and missing.score == -1.0
