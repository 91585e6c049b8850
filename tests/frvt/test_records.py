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
    assert (
        text[0]
        == "id image templateSizeBytes returnCode isLeftEyeAssigned isRightEyeAssigned xleft yleft xright yright"
    )
    assert text[1] == "e1 a/b.jpg 532 0 1 1 10 20 5 21"
    assert read_template_log(tmp_path / "enroll.log") == rows


def test_match_log_scores_as_cpp_streams_print_them_and_exactly_on_request(tmp_path):
    rows = [
        MatchRow("e1", "v1", 0.123456789, 0),
        MatchRow("e1", "v2", -1.0, 7),
        MatchRow("1.template", "2.template", 384.0, 0),
        MatchRow("3.template", "4.template", 1.5e-7, 0),
        MatchRow("3.template", "6.template", 1234567.0, 0),
    ]
    write_match_log(tmp_path / "match.log", rows)
    text = (tmp_path / "match.log").read_text().splitlines()
    assert text[0] == "enrollTempl verifTempl simScore returnCode"
    # std::ostream defaults: 6 significant digits, %g style
    assert text[1:] == [
        "e1 v1 0.123457 0",
        "e1 v2 -1 7",
        "1.template 2.template 384 0",
        "3.template 4.template 1.5e-07 0",
        "3.template 6.template 1.23457e+06 0",
    ]
    write_match_log(tmp_path / "exact.log", rows, exact=True)
    assert read_match_log(tmp_path / "exact.log") == rows


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


NIST_LISTS = {
    "enroll.txt": "1 ../common/images/face/S001-01-t10_01.ppm facemugshot\n3 ../common/images/face/S001-03-t10_01.ppm facemugshot\n",
    "verif.txt": "2 ../common/images/face/S001-02-t10_01.ppm facemugshot\n4 ../common/images/face/8bit.pgm faceunknown\n",
    "enroll_multiface.txt": (
        "1 ../common/images/face/S001-01-t10_01.ppm faceunknown ../common/images/face/S001-03-t10_01.ppm "
        "faceunknown ../common/images/face/S001-05-t10_01.ppm faceunknown\n"
        "3 ../common/images/face/S023-01-t10_01.ppm facewild ../common/images/face/S023-03-t10_01.ppm iriswild\n"
    ),
    "verif_multiperson.txt": "1 ../common/images/face/multi1.ppm facephotojournalism\n3 ../common/images/face/white.ppm faceunknown\n",
    "match.txt": "1.template 2.template\n3.template 4.template\n",
}
NIST_LOGS = {
    "enroll.log": (
        "id image templateSizeBytes returnCode isLeftEyeAssigned isRightEyeAssigned xleft yleft xright yright\n"
        "1 ../common/images/face/S001-01-t10_01.ppm 16 0 1 1 0 0 1 1\n"
        "3 ../common/images/face/S001-03-t10_01.ppm 520 8 0 0 0 0 0 0\n"
    ),
    "verif_multiperson.log": (
        "id image templateSizeBytes returnCode numDetections detectionIndex isLeftEyeAssigned "
        "isRightEyeAssigned xleft yleft xright yright\n"
        "1_0 ../common/images/face/multi1.ppm 520 0 2 0 1 1 310 120 250 121\n"
        "1_1 ../common/images/face/multi1.ppm 520 0 2 1 1 1 610 130 550 128\n"
    ),
    "match.log": "enrollTempl verifTempl simScore returnCode\n1.template 2.template 384 0\n3.template 4.template -1 7\n",
}


def test_nist_lists_and_logs_round_trip_byte_for_byte(tmp_path):
    from frvt.records import read_multiperson_log, write_image_list, write_match_list, write_multiperson_log

    input_dir = tmp_path / "input"
    input_dir.mkdir()
    for name, text in NIST_LISTS.items():
        (input_dir / name).write_text(text)
    for name in ("enroll.txt", "verif.txt", "enroll_multiface.txt", "verif_multiperson.txt"):
        entries = read_image_list(input_dir / name, single_image=name == "verif_multiperson.txt")
        write_image_list(tmp_path / name, entries)
        assert (tmp_path / name).read_bytes() == (input_dir / name).read_bytes(), name
    multi = read_image_list(input_dir / "enroll_multiface.txt")
    assert [len(e.images) for e in multi] == [3, 2] and multi[1].images[1].label == ImageLabel.IrisWild
    assert multi[0].path == (tmp_path / "common/images/face/S001-01-t10_01.ppm").resolve()  # NIST's working folder
    pairs = read_match_list(input_dir / "match.txt", {"1", "3"}, {"2", "4"})
    assert (pairs[0].enroll_id, pairs[0].verif_id) == ("1", "2")
    write_match_list(tmp_path / "match.txt", pairs)
    assert (tmp_path / "match.txt").read_bytes() == (input_dir / "match.txt").read_bytes()
    for name, text in NIST_LOGS.items():
        (input_dir / name).write_text(text)
    write_template_log(tmp_path / "enroll.log", read_template_log(input_dir / "enroll.log"))
    write_multiperson_log(tmp_path / "verif_multiperson.log", read_multiperson_log(input_dir / "verif_multiperson.log"))
    write_match_log(tmp_path / "match.log", read_match_log(input_dir / "match.log"))
    for name in NIST_LOGS:
        assert (tmp_path / name).read_bytes() == (input_dir / name).read_bytes(), name


def test_labels_nist_names_numbers_and_errors(tmp_path):
    p = tmp_path / "enroll.txt"
    p.write_text("a x.ppm facemugshot\nb y.ppm 7\nc z.ppm FaceWild\n")
    assert [e.label for e in read_image_list(p)] == [ImageLabel.FaceMugshot, ImageLabel.IrisWild, ImageLabel.FaceWild]
    p.write_text("a x.ppm facemugshot\nb y.ppm facevisa\n")
    with pytest.raises(ListFormatError, match="enroll.txt:2: unknown image label 'facevisa'"):
        read_image_list(p)
    p.write_text("a x.ppm facemugshot y.ppm\n")  # an identity column after one image: 4 tokens
    assert read_image_list(p)[0].identity == "y.ppm"
    p.write_text("a x.ppm facemugshot y.ppm facewild\n")
    with pytest.raises(ListFormatError, match="one image per line"):
        read_image_list(p, single_image=True)
