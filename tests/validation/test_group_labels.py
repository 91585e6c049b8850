"""Demographic labels from a CSV: clear errors naming the file, the line and the value."""

from __future__ import annotations

import pytest

from validation.group_labels import LabelError, read_labels


def _labels_csv(tmp_path, rows, header="image,sex"):
    path = tmp_path / "labels.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_bad_labels(tmp_path):
    with pytest.raises(LabelError, match="no key column 'image'.*columns: name, sex"):
        read_labels(_labels_csv(tmp_path, ["a,F"], header="name,sex"), key="image")
    with pytest.raises(LabelError, match="labels file missing"):
        read_labels(tmp_path / "none.csv")
    with pytest.raises(LabelError, match="line 3.*expected 2 fields"):
        read_labels(_labels_csv(tmp_path, ["a.jpg,F", "b.jpg,F,extra"]))
    with pytest.raises(LabelError, match="no attribute column"):
        read_labels(_labels_csv(tmp_path, ["a.jpg"], header="image"))
