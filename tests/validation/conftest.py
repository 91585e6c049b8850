"""Fixtures of the validation tests."""

from __future__ import annotations

import warnings

import pytest

from validation.metrics import MetricWarning


@pytest.fixture
def quiet_metric_warnings():
    """MetricWarning (a target not estimable, an undefined rate) silenced for the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        yield
