"""The contract types: NIST's numeric values, Image buffers, loading implementations by name."""

import numpy as np
import pytest

from frvt.contract import Image, ImageLabel, ImplementationSpec, ReturnCode, TemplateRole, load_implementation


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


def test_structs_3_1_enums_defaults_and_versions():
    from frvt import contract as c

    assert (c.API_MAJOR_VERSION, c.API_MINOR_VERSION, c.FRVT_STRUCTS_MAJOR_VERSION, c.FRVT_STRUCTS_MINOR_VERSION) == (
        6,
        0,
        3,
        1,
    )
    assert [d.name for d in c.ImageDescription] == [
        "FaceUnknown",
        "FaceIso",
        "FaceMugshot",
        "FacePhotojournalism",
        "FaceWild",
        "IrisUnknown",
        "IrisNIR",
        "IrisWild",
    ]
    assert [(i.name, int(i)) for i in c.Illuminant][-1] == ("LWIR", 5) and len(c.Illuminant) == 6
    assert (c.IrisLR.Unspecified, c.IrisLR.RightIris, c.IrisLR.LeftIris) == (0, 1, 2)
    img = c.Image()
    assert (img.width, img.height, img.depth, img.description, img.illuminant, img.iris_lr) == (
        0,
        0,
        24,
        c.ImageDescription.FaceUnknown,
        c.Illuminant.Unspecified,
        c.IrisLR.Unspecified,
    )
    assert c.ReturnStatus().code == c.ReturnCode.UnknownError  # NIST's default
    assert c.EyePair() == c.EyePair(False, False, 0, 0, 0, 0)
    assert c.IrisAnnulus() == c.IrisAnnulus(0, 0, 0, 0)


def test_implementation_spec_carries_factory_arguments():
    import pickle

    spec = ImplementationSpec.parse("reference_impls:PixelMatcher")
    assert pickle.loads(pickle.dumps(spec)) == spec and str(spec) == "reference_impls:PixelMatcher"
    with_args = ImplementationSpec.parse("pathlib:PurePosixPath")
    assert load_implementation is not None and with_args.kwargs == ()
    assert str(ImplementationSpec.parse(spec, library="/x/libfrvt_11_a_001.so")) == (
        "reference_impls:PixelMatcher(library='/x/libfrvt_11_a_001.so')"
    )
