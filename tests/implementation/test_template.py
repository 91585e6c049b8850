"""Template byte layout: round trip, the no-face template, rejection of corrupted and foreign bytes."""

import numpy as np
import pytest

from implementation import template as tpl

FP = bytes.fromhex("3f8b079a")


def unit(seed, d=128):
    v = np.random.default_rng(seed).normal(size=d).astype(np.float32)
    return v / np.linalg.norm(v)


def test_round_trip_is_exact_and_size_is_documented():
    v = unit(0)
    data = tpl.encode(v, FP, n_faces=2)
    assert len(data) == 16 + 4 * 128 + 4 == 532
    t = tpl.decode(data, FP)
    assert t.has_face and t.n_faces == 2 and np.array_equal(t.embedding, v)


def test_no_face_template_is_non_empty_and_decodes_as_such():
    data = tpl.encode(None, FP)
    assert len(data) == 20
    t = tpl.decode(data, FP)
    assert not t.has_face and t.embedding is None


@pytest.mark.parametrize("position", [0, 5, 11, 14, 40, 300, 531])
def test_any_flipped_bit_is_rejected(position):
    data = bytearray(tpl.encode(unit(1), FP))
    data[position] ^= 0x10
    with pytest.raises(tpl.TemplateFormatError):
        tpl.decode(bytes(data), FP)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "shorter"),
        (b"NOPE" + bytes(40), "magic"),
        (tpl.encode(unit(2), FP)[:-10], "bytes"),
    ],
)
def test_truncated_or_foreign_bytes_are_rejected(data, message):
    with pytest.raises(tpl.TemplateFormatError, match=message):
        tpl.decode(data, FP)


def test_other_version_and_other_model_are_rejected():
    data = bytearray(tpl.encode(unit(3), FP))
    data[4] = 2  # format version 2
    import struct
    import zlib

    body = bytes(data[:-4])
    with pytest.raises(tpl.TemplateFormatError, match="version 2"):
        tpl.decode(body + struct.pack("<I", zlib.crc32(body)), FP)
    with pytest.raises(tpl.TemplateFormatError, match="another model"):
        tpl.decode(tpl.encode(unit(3), FP), b"\x00\x01\x02\x03")


def test_similarity_range_symmetry_and_relation_to_distance():
    rng = np.random.default_rng(4)
    for _ in range(50):
        a, b = unit(rng.integers(1e9)), unit(rng.integers(1e9))
        s = tpl.similarity(a, b)
        assert 0.0 <= s <= 1.0 and s == tpl.similarity(b, a)
        d = np.linalg.norm(a.astype(np.float64) - b)
        assert s == pytest.approx(1 - d**2 / 4, abs=1e-6)
    a = unit(5)
    assert tpl.similarity(a, a) == pytest.approx(1.0) and tpl.similarity(a, -a) == pytest.approx(0.0)


def test_non_finite_embedding_is_refused_at_encode():
    v = unit(6)
    v[3] = np.nan
    with pytest.raises(ValueError):
        tpl.encode(v, FP)


def test_vectors_of_many_templates_equal_decoding_each_and_name_a_bad_one():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    fp = b"abcd"
    data = [tpl.encode(None if i % 17 == 0 else v, fp, n_faces=1 + i % 3) for i, v in enumerate(x)]
    form = tpl.VectorForm(fp, 8)
    q, ok = form.vectors(data)
    for i, d in enumerate(data):
        t = tpl.decode(d, fp)
        assert ok[i] == t.has_face
        if t.has_face:
            assert np.array_equal(q[i], tpl.quantise(t.embedding[None].astype(np.float64))[0])
        else:
            assert not q[i].any()
    for position in (0, 5, 7, 12, 20, len(data[1]) - 1):  # magic, version, flags, fingerprint, value, CRC
        bad = list(data)
        t = bytearray(bad[41])
        t[position] ^= 0x10
        bad[41] = bytes(t)
        with pytest.raises(tpl.TemplateFormatError, match="template 41"):
            form.vectors(bad)
