"""NIST lists and logs: round trips and errors that name file, line and value."""

import pytest

from frvt.contract import EyePair, ImageLabel
from frvt.records import (
    ListFormatError,
    MatchRow,
    TemplateRow,
    read_image_list,
    read_match_list,
    read_match_log,
    read_template_log,
    write_match_log,
    write_template_log,
)


def test_template_log_round_trip(tmp_path):
    rows = [
        TemplateRow("e1", "a/b.jpg", 532, 0, EyePair(True, True, 10, 20, 5, 21)),
        TemplateRow("e2", "c.jpg", 20, 8, EyePair()),
    ]
    write_template_log(tmp_path / "enroll.log", rows)
    text = (tmp_path / "enroll.log").read_text().splitlines()
    assert text[0] == "id image templateSizeBytes returnCode isLeftAssigned isRightAssigned xleft yleft xright yright"
    assert text[1] == "e1 a/b.jpg 532 0 1 1 10 20 5 21"
    assert read_template_log(tmp_path / "enroll.log") == rows


def test_match_log_round_trip_keeps_scores(tmp_path):
    rows = [MatchRow("e1", "v1", 0.123456789, 0), MatchRow("e1", "v2", -1.0, 7)]
    write_match_log(tmp_path / "match.log", rows)
    assert (tmp_path / "match.log").read_text().splitlines()[0] == "enrollTempl verifTempl simScore returnCode"
    back = read_match_log(tmp_path / "match.log")
    assert back[1] == rows[1] and back[0].score == pytest.approx(rows[0].score, rel=1e-8)


@pytest.mark.parametrize(
    "body, where, what",
    [
        ("e1 v1 0.5 0\ne2 v1 abc 0\n", ":3", "'abc'"),
        ("e1 v1 0.5 0\ne2 v1 nan 0\n", ":3", "not finite"),
        ("e1 v1 0.5\n", ":2", "4 columns"),
        ("e1 v1 0.5 x\n", ":2", "returnCode 'x'"),
    ],
)
def test_bad_match_log_lines_are_named(tmp_path, body, where, what):
    p = tmp_path / "match.log"
    p.write_text("enrollTempl verifTempl simScore returnCode\n" + body)
    with pytest.raises(ListFormatError, match=what) as err:
        read_match_log(p)
    assert f"match.log{where}" in str(err.value)


def test_image_list_identity_label_and_errors(tmp_path):
    (tmp_path / "S9").mkdir()
    (tmp_path / "enroll.txt").write_text("# comment\ne1 S9/a.jpg FaceMugshot\ne2 other/b.jpg 4 Alice\n")
    entries = read_image_list(tmp_path / "enroll.txt")
    assert [e.identity for e in entries] == ["S9", "Alice"]
    assert entries[0].label == ImageLabel.FaceMugshot and entries[1].label == ImageLabel.FaceWild
    assert entries[0].path == (tmp_path / "S9" / "a.jpg").resolve() and entries[0].line_no == 2
    (tmp_path / "bad.txt").write_text("e1 a.jpg 2\ne1 b.jpg 2\n")
    with pytest.raises(ListFormatError, match=r"bad.txt:2: duplicate id 'e1'"):
        read_image_list(tmp_path / "bad.txt")
    (tmp_path / "bad2.txt").write_text("e1 a.jpg Selfish\n")
    with pytest.raises(ListFormatError, match=r"bad2.txt:1: unknown image label 'Selfish'"):
        read_image_list(tmp_path / "bad2.txt")


def test_match_list_unknown_ids(tmp_path):
    (tmp_path / "match.txt").write_text("e1 v1\ne1 v9\n")
    with pytest.raises(ListFormatError, match=r"match.txt:2: verification template 'v9'"):
        read_match_list(tmp_path / "match.txt", {"e1"}, {"v1"})
