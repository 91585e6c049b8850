"""The contract types: NIST's numeric values, Image buffers, loading implementations by name."""

import numpy as np
import pytest

from frvt.contract import Image, ImageLabel, ReturnCode, TemplateRole, load_implementation


def test_nist_numeric_values():
    assert [ReturnCode(i).name for i in (0, 3, 8, 10, 14, 17)] == [
        "Success",
        "RefuseInput",
        "FaceDetectionError",
        "TemplateFormatError",
        "MatchError",
        "VendorError",
    ]
    assert len(ReturnCode) == 18
    assert (TemplateRole.Enrollment_11, TemplateRole.Verification_11, TemplateRole.Search_1N) == (0, 1, 3)
    assert ImageLabel.FaceMugshot == 2 and ImageLabel.FaceWild == 4


def test_image_round_trip_and_bad_buffers():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    img = Image.from_array(rgb)
    assert (img.width, img.height, img.depth) == (3, 2, 24) and np.array_equal(img.to_array(), rgb)
    grey = Image.from_array(rgb[:, :, 0])
    assert grey.depth == 8 and grey.to_array().shape == (2, 3)
    with pytest.raises(ValueError, match="expected 18"):
        Image(3, 2, 24, b"\0" * 17).to_array()
    with pytest.raises(ValueError, match="depth 16"):
        Image(3, 2, 16, b"\0" * 12).to_array()


def test_load_implementation_errors_name_the_problem():
    with pytest.raises(ValueError, match="module:attribute"):
        load_implementation("no_colon")
    with pytest.raises(ValueError, match="cannot import module 'nope_nope'"):
        load_implementation("nope_nope:X")
    with pytest.raises(ValueError, match="has no attribute 'Missing'"):
        load_implementation("reference_impls:Missing")
    with pytest.raises(ValueError, match="lacks"):
        load_implementation("reference_impls:Path")  # a class without the contract calls
    impl = load_implementation("reference_impls:PixelMatcher")
    assert impl.version
